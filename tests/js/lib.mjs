// Shared helpers for the signaling scenarios that tests/signaling_js.rs runs against the real
// `reel` binary with the official KVS WebRTC JS SDK (`amazon-kinesis-video-streams-webrtc`).
//
// Contract with the Rust side: configuration comes from the environment (REEL_WSS_ENDPOINT,
// REEL_CHANNEL_ARN, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY; TLS trust through
// NODE_EXTRA_CA_CERTS), and the script prints exactly one JSON result line as its last stdout
// line: `{"ok":true,...}` with exit status 0, or `{"ok":false,"error":"..."}` with status 1.
// Scripts wait on events, never on sleeps; every wait has a timeout with a message naming it.

import WebSocket from 'ws';

// Node 20 has no global WebSocket; the SDK opens its socket with the global one.
globalThis.WebSocket ??= WebSocket;
const sdk = (await import('amazon-kinesis-video-streams-webrtc')).default;
export const { Role, SignalingClient, SigV4RequestSigner } = sdk;

/** How long any single awaited event may take before the scenario fails. */
export const WAIT_MS = 15_000;

function env(name) {
  const value = process.env[name];
  if (!value) fail(`environment variable ${name} is not set`);
  return value;
}

/** Connection settings handed over by the Rust test. */
export const config = {
  endpoint: env('REEL_WSS_ENDPOINT'),
  channelARN: env('REEL_CHANNEL_ARN'),
  region: env('AWS_REGION'),
  credentials: { accessKeyId: env('AWS_ACCESS_KEY_ID'), secretAccessKey: env('AWS_SECRET_ACCESS_KEY') },
};

/** Print a progress line (not JSON-result shaped) the Rust side may wait for. */
export function emitLine(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

/** Print the failure line and exit 1. */
export function fail(error) {
  emitLine({ ok: false, error: String(error?.stack ?? error) });
  process.exit(1);
}

/** Run a scenario: its resolved value is merged into the `{"ok":true}` result line. */
export function run(scenario, { overallMs = 60_000 } = {}) {
  const watchdog = setTimeout(() => fail(`scenario did not finish within ${overallMs} ms`), overallMs);
  scenario().then(
    (result) => {
      clearTimeout(watchdog);
      emitLine({ ok: true, ...result });
      process.exit(0);
    },
    (err) => fail(err),
  );
}

/** Resolve when `check()` returns a truthy value, re-checked whenever `emitter` fires `events`. */
function waitUntil(emitter, events, check, what, ms = WAIT_MS) {
  return new Promise((resolve, reject) => {
    const done = (fn, value) => {
      clearTimeout(timer);
      for (const e of events) emitter.off(e, poll);
      fn(value);
    };
    const poll = () => {
      const value = check();
      if (value) done(resolve, value);
    };
    const timer = setTimeout(() => done(reject, new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    for (const e of events) emitter.on(e, poll);
    poll();
  });
}

/** A plain session description, as `RTCSessionDescription.toJSON()` would give. */
export function sdp(type, label) {
  return { type, sdp: `v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=${label}\r\nt=0 0\r\n` };
}

/** A plain ICE candidate, as `RTCIceCandidate.toJSON()` would give; '' = end of candidates. */
export function candidate(label) {
  const line = label === '' ? '' : `candidate:${label} 1 udp 2122260223 192.0.2.1 50000 typ host`;
  return { candidate: line, sdpMid: '0', sdpMLineIndex: 0 };
}

/** The end-of-candidates marker the scenarios use as an in-order "nothing more follows". */
export const END = candidate('');
export const isEnd = (e) => e.type === 'ICE_CANDIDATE' && e.payload.candidate === '';

/**
 * An SDK SignalingClient plus everything it emitted, in order: `events` holds
 * `{type, sender, payload}` for SDP_OFFER / SDP_ANSWER / ICE_CANDIDATE, `statusResponses` the
 * STATUS_RESPONSE bodies, `errors` the messages of 'error' events; `opened`/`closed` flags.
 */
export class Peer {
  constructor(role, clientId) {
    this.name = clientId ?? 'master';
    this.events = [];
    this.statusResponses = [];
    this.errors = [];
    this.opened = false;
    this.closed = false;
    this.client = new SignalingClient({
      channelARN: config.channelARN,
      channelEndpoint: config.endpoint,
      role,
      clientId,
      region: config.region,
      credentials: config.credentials,
    });
    const record = (type) => (payload, sender) => this.events.push({ type, sender: sender ?? null, payload });
    this.client.on('sdpOffer', record('SDP_OFFER'));
    this.client.on('sdpAnswer', record('SDP_ANSWER'));
    this.client.on('iceCandidate', record('ICE_CANDIDATE'));
    this.client.on('statusResponse', (s) => this.statusResponses.push(s));
    this.client.on('error', (e) => this.errors.push(String(e?.message ?? e?.error?.message ?? e)));
    this.client.on('open', () => (this.opened = true));
    this.client.on('close', () => (this.closed = true));
  }

  /** Open a master (no clientId) or viewer connection and wait until it is open. */
  static async open(role, clientId) {
    const peer = new Peer(role, clientId);
    peer.client.open();
    await peer.until(() => peer.opened || peer.closed, `${peer.name} to open`);
    if (!peer.opened) throw new Error(`${peer.name} closed before opening: ${peer.errors.join('; ')}`);
    return peer;
  }

  /** Wait until `check(this)` holds (re-checked on every SDK event). */
  until(check, what) {
    const events = ['sdpOffer', 'sdpAnswer', 'iceCandidate', 'statusResponse', 'error', 'open', 'close'];
    return waitUntil(this.client, events, () => check(this), `${what} (at ${this.name})`).catch((e) => {
      throw new Error(`${e.message}; SDK errors so far: ${JSON.stringify(this.errors)}`);
    });
  }

  /** Wait for the end-of-candidates marker from `sender` (null = from the master). */
  untilEndFrom(sender) {
    return this.until((p) => p.events.some((e) => isEnd(e) && e.sender === sender), `end of candidates from ${sender ?? 'the master'}`);
  }

  /** What the Rust side asserts on. */
  summary() {
    return { events: this.events, statusResponses: this.statusResponses, errors: this.errors, closed: this.closed };
  }

  close() {
    this.client.close();
  }
}

/** A ConnectAsMaster (no clientId) / ConnectAsViewer URL presigned by the SDK's own signer. */
export function presign(clientId) {
  const query = { 'X-Amz-ChannelARN': config.channelARN };
  if (clientId) query['X-Amz-ClientId'] = clientId;
  return new SigV4RequestSigner(config.region, config.credentials).getSignedURL(config.endpoint, query, new Date());
}

/**
 * A raw `ws` connection on an SDK-presigned URL that records every text frame (parsed JSON),
 * the close code/reason, and a refused upgrade's HTTP status and JSON body.
 */
export class RawSocket {
  constructor(url, name) {
    this.name = name;
    this.frames = [];
    this.opened = false;
    this.close = null; // {code, reason} once closed
    this.refusal = null; // {status, body} when the upgrade was answered with an HTTP error
    this.errors = [];
    this.ws = new WebSocket(url);
    this.ws.on('open', () => (this.opened = true));
    this.ws.on('message', (data, isBinary) => {
      this.frames.push(isBinary ? { binary: data.length } : JSON.parse(data.toString()));
    });
    this.ws.on('close', (code, reason) => (this.close = { code, reason: reason.toString() }));
    this.ws.on('error', (e) => this.errors.push(e.message));
    this.ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => (body += chunk));
      res.on('end', () => {
        let json = null;
        try {
          json = JSON.parse(body);
        } catch {
          json = { unparsed: body };
        }
        this.refusal = { status: res.statusCode, body: json };
        this.ws.emit('refused');
        this.ws.terminate();
      });
    });
  }

  static async open(clientId) {
    const raw = new RawSocket(await presign(clientId), clientId ?? 'raw master');
    await raw.until(() => raw.opened || raw.close || raw.refusal, 'the raw socket to open');
    if (!raw.opened) throw new Error(`raw ${raw.name} did not open: ${JSON.stringify(raw.refusal ?? raw.errors)}`);
    return raw;
  }

  until(check, what) {
    return waitUntil(this.ws, ['open', 'message', 'close', 'error', 'refused'], () => check(this), `${what} (at ${this.name})`);
  }
}
