// Browser KVS *viewer* of a storage session, bundled by viewers.mjs with esbuild and loaded in
// headless Chromium. The flow KVS documents for multi-viewer storage sessions (and the JS
// SDK's examples/joinStorageSessionAsViewer.js): DescribeSignalingChannel →
// GetSignalingChannelEndpoint(WSS, HTTPS, WEBRTC; VIEWER) → SignalingClient (VIEWER, with
// this page's clientId) → on open, JoinStorageSessionAsViewer {channelArn, clientId} (again
// every `retryMs` until an offer arrives) → the storage session's SDP_OFFER (no sender: the
// SDK keys it "MASTER"), its ICE candidates possibly earlier (the SDK's early-candidate
// buffer) → answer and trickle with no recipient → play the remote tracks and watch them
// with getStats().
//
// Configuration is the query string: endpoint, channelName, region, accessKeyId,
// secretAccessKey, clientId, sendAudio (1: send the fake microphone as talk-back audio),
// retryMs (default 6000), offerTimeoutMs (default 120000).
// Progress goes out as console lines `REEL {"event":…}`. The runner reads the statistics
// with `window.reelReport()` and ends the viewer with `window.reelStop()`.
// A refused join (e.g. ClientLimitExceededException) is reported as `join_refused` with the
// KVS error name and message, and the page stops.

import { Role, SignalingClient } from 'amazon-kinesis-video-streams-webrtc';
import {
  JoinStorageSessionAsViewerCommand,
  KinesisVideoWebRTCStorageClient,
} from '@aws-sdk/client-kinesis-video-webrtc-storage';
import { channelArn, channelEndpoints, kinesisVideo, signing } from './channel.js';

const cfg = Object.fromEntries(new URLSearchParams(location.search));
const retryMs = Number(cfg.retryMs || 6000);
const offerTimeoutMs = Number(cfg.offerTimeoutMs || 120000);
const SAMPLE_MS = 100;
const t0 = performance.now();
const now = () => Math.round(performance.now() - t0) / 1000;

function emit(event, fields = {}) {
  console.log(`REEL ${JSON.stringify({ event, t: now(), clientId: cfg.clientId, ...fields })}`);
}

let stopped = false;
let signaling = null;
let pc = null;
let offers = 0;
let offerReceived = false;
let connectedAt = null;
let candidatesSent = 0;
let candidatesReceived = 0;
const videoEl = document.getElementById('video');
const audioEl = document.getElementById('audio');

// What getStats() showed, sampled every SAMPLE_MS once the PeerConnection exists.
const watch = {
  firstFrameAt: null, // page time (s) of the first decoded frame
  frames: 0, // video framesDecoded
  keyFrames: 0,
  framesDropped: 0,
  width: 0,
  height: 0,
  lastAdvanceMs: null, // performance.now() of the last sample where framesDecoded grew
  longestStallMs: 0, // longest span between two samples that saw framesDecoded grow (after the first frame)
  maxSampleGapMs: 0, // longest span between two samples (a late timer shows here)
  received: 0, // video framesReceived (assembled from the network, before decoding)
  lastReceiveMs: null,
  longestReceiveStallMs: 0, // like longestStallMs, for framesReceived: the network side
  freezeCount: 0, // Chromium's own freeze statistics (inbound-rtp), video
  totalFreezesDuration: 0,
  audioPackets: 0,
  audioSamples: 0,
  audioConcealed: 0,
  audioLevelMax: 0,
  outboundAudioPackets: 0, // talk-back sent
  timeline: [], // [t, framesDecoded, audioPackets] once a second
  lastSampleMs: null,
  lastTimelineAt: -1,
};

async function sample() {
  if (!pc || stopped) return;
  let stats;
  try {
    stats = await pc.getStats();
  } catch {
    return;
  }
  const at = performance.now();
  if (watch.lastSampleMs !== null) watch.maxSampleGapMs = Math.max(watch.maxSampleGapMs, at - watch.lastSampleMs);
  watch.lastSampleMs = at;
  stats.forEach((r) => {
    if (r.type === 'inbound-rtp' && r.kind === 'video') {
      const frames = r.framesDecoded || 0;
      if (frames > watch.frames) {
        if (watch.firstFrameAt === null) {
          watch.firstFrameAt = now();
          emit('first_frame', { width: r.frameWidth, height: r.frameHeight, keyFrames: r.keyFramesDecoded });
        } else if (watch.lastAdvanceMs !== null) {
          watch.longestStallMs = Math.max(watch.longestStallMs, at - watch.lastAdvanceMs);
        }
        watch.lastAdvanceMs = at;
      }
      watch.frames = frames;
      const received = r.framesReceived || 0;
      if (received > watch.received) {
        if (watch.lastReceiveMs !== null) watch.longestReceiveStallMs = Math.max(watch.longestReceiveStallMs, at - watch.lastReceiveMs);
        watch.lastReceiveMs = at;
      }
      watch.received = received;
      watch.keyFrames = r.keyFramesDecoded || 0;
      watch.framesDropped = r.framesDropped || 0;
      watch.width = r.frameWidth || watch.width;
      watch.height = r.frameHeight || watch.height;
      watch.freezeCount = r.freezeCount || 0;
      watch.totalFreezesDuration = r.totalFreezesDuration || 0;
    } else if (r.type === 'inbound-rtp' && r.kind === 'audio') {
      watch.audioPackets = r.packetsReceived || 0;
      watch.audioSamples = r.totalSamplesReceived || 0;
      watch.audioConcealed = r.concealedSamples || 0;
      watch.audioLevelMax = Math.max(watch.audioLevelMax, r.audioLevel || 0);
    } else if (r.type === 'outbound-rtp' && r.kind === 'audio') {
      watch.outboundAudioPackets = r.packetsSent || 0;
    }
  });
  const second = Math.floor(now());
  if (second !== watch.lastTimelineAt) {
    watch.lastTimelineAt = second;
    watch.timeline.push([now(), watch.frames, watch.audioPackets]);
  }
}

/** The statistics so far (what the runner's `report` command returns). */
window.reelReport = async () => {
  await sample();
  // A stall still going on counts too.
  const ongoingStallMs = watch.lastAdvanceMs === null ? null : performance.now() - watch.lastAdvanceMs;
  return {
    offers,
    connectionState: pc?.connectionState ?? null,
    connectedAt,
    candidatesSent,
    candidatesReceived,
    firstFrameAt: watch.firstFrameAt,
    framesDecoded: watch.frames,
    keyFramesDecoded: watch.keyFrames,
    framesDropped: watch.framesDropped,
    width: watch.width,
    height: watch.height,
    longestFreezeMs: Math.round(Math.max(watch.longestStallMs, ongoingStallMs ?? 0)),
    maxSampleGapMs: Math.round(watch.maxSampleGapMs),
    framesReceived: watch.received,
    longestReceiveStallMs: Math.round(watch.longestReceiveStallMs),
    freezeCount: watch.freezeCount,
    totalFreezesDuration: watch.totalFreezesDuration,
    audioPacketsReceived: watch.audioPackets,
    audioSamplesReceived: watch.audioSamples,
    audioConcealedSamples: watch.audioConcealed,
    audioLevelMax: watch.audioLevelMax,
    talkbackPacketsSent: watch.outboundAudioPackets,
    videoCurrentTime: videoEl.currentTime,
    timeline: watch.timeline.slice(-120),
  };
};

/** Ends the viewer: closes the PeerConnection and the signaling connection. */
window.reelStop = () => {
  if (stopped) return;
  stopped = true;
  pc?.close();
  signaling?.close();
  emit('stopped');
};

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const { region, credentials } = signing(cfg);
  const kvs = kinesisVideo(cfg);
  const channelARN = await channelArn(kvs, cfg);
  const endpoints = await channelEndpoints(kvs, channelARN, Role.VIEWER);
  emit('endpoints', endpoints);

  // Talk-back: viewers may send Opus audio to the master.
  const mic = cfg.sendAudio === '1' ? await navigator.mediaDevices.getUserMedia({ audio: true }) : null;

  signaling = new SignalingClient({
    channelARN,
    channelEndpoint: endpoints.WSS,
    clientId: cfg.clientId,
    role: Role.VIEWER,
    region,
    credentials,
    systemClockOffset: 0,
    enableEarlyIceCandidateBuffering: true,
  });
  const storage = new KinesisVideoWebRTCStorageClient({ region, endpoint: endpoints.WEBRTC, credentials, maxAttempts: 1 });

  async function joinLoop() {
    const deadline = Date.now() + offerTimeoutMs;
    for (let attempt = 1; !offerReceived && !stopped; attempt++) {
      try {
        await storage.send(new JoinStorageSessionAsViewerCommand({ channelArn: channelARN, clientId: cfg.clientId }));
        emit('join_storage_session_as_viewer', { attempt, status: 200 });
      } catch (e) {
        const status = e?.$metadata?.httpStatusCode;
        emit('join_storage_session_as_viewer', { attempt, status, name: e?.name, message: e?.message });
        // Like the SDK's master sample for JoinStorageSession: a 400 is retried (e.g. the
        // service has not registered the signaling connection yet; ClientLimitExceeded as a
        // rate limit) unless it is the viewer cap; 403/404 are final.
        const viewerCap = e?.name === 'ClientLimitExceededException' && /maximum number of viewers/.test(e?.message ?? '');
        if (viewerCap || (status && status > 400 && status < 500)) {
          emit('join_refused', { status, name: e?.name, message: e?.message });
          window.reelStop();
          return;
        }
      }
      const waitUntil = Date.now() + retryMs;
      while (!offerReceived && !stopped && Date.now() < waitUntil) await sleep(100);
      if (!offerReceived && Date.now() > deadline) {
        emit('error', { error: `no SDP_OFFER within ${offerTimeoutMs} ms after ${attempt} JoinStorageSessionAsViewer call(s)` });
        return;
      }
    }
  }

  signaling.on('open', () => {
    emit('signaling_connected');
    joinLoop();
  });
  signaling.on('error', (e) => emit('signaling_error', { error: String(e?.message ?? e) }));
  signaling.on('close', () => {
    if (!stopped) emit('signaling_closed');
  });
  signaling.on('statusResponse', (s) => emit('status_response', { status: s }));
  // Candidates since the last offer: a new session's candidates may come before its offer
  // (after the SDK's buffer already opened for the first one); they are applied to it too.
  let sinceOffer = [];
  signaling.on('iceCandidate', async (candidate) => {
    candidatesReceived++;
    sinceOffer.push(candidate);
    if (!pc) return;
    try {
      await pc.addIceCandidate(candidate);
    } catch (e) {
      emit('add_ice_candidate_failed', { error: String(e), candidate });
    }
  });

  const ufrag = (sdp) => /a=ice-ufrag:(\S+)/.exec(sdp)?.[1];
  signaling.on('sdpOffer', async (offer, remoteClientId) => {
    offers++;
    offerReceived = true;
    // A new ICE ufrag is a new session (the old one was replaced); the same one renegotiates.
    const renegotiation = pc && pc.remoteDescription && ufrag(pc.remoteDescription.sdp) === ufrag(offer.sdp);
    emit('sdp_offer', { sender: remoteClientId ?? null, chars: offer.sdp.length, n: offers, renegotiation: !!renegotiation });
    try {
      if (!renegotiation) {
        pc?.close();
        pc = new RTCPeerConnection({ iceServers: [], bundlePolicy: 'max-bundle' });
        const current = pc;
        mic?.getTracks().forEach((track) => current.addTrack(track, mic));
        current.ontrack = ({ track, streams }) => {
          emit('track', { kind: track.kind });
          const el = track.kind === 'video' ? videoEl : audioEl;
          el.srcObject = streams[0] ?? new MediaStream([track]);
          el.play().catch((e) => emit('play_failed', { kind: track.kind, error: String(e) }));
        };
        current.onicecandidate = ({ candidate }) => {
          if (!candidate || current !== pc) return;
          candidatesSent++;
          signaling.sendIceCandidate(candidate); // no recipient: it goes to the storage session
        };
        current.onconnectionstatechange = () => {
          if (current !== pc) return;
          emit('connection_state', { state: current.connectionState });
          if (current.connectionState === 'connected' && connectedAt === null) connectedAt = now();
        };
      }
      const early = renegotiation || offers === 1 ? [] : sinceOffer;
      sinceOffer = [];
      await pc.setRemoteDescription(offer);
      signaling.drainPendingIceCandidates(remoteClientId);
      for (const c of early) pc.addIceCandidate(c).catch(() => {});
      await pc.setLocalDescription(await pc.createAnswer());
      signaling.sendSdpAnswer(pc.localDescription); // no recipient
      emit('sdp_answer_sent', { chars: pc.localDescription.sdp.length });
    } catch (e) {
      emit('error', { error: `answering the storage offer failed: ${e}` });
    }
  });

  signaling.open();
  setInterval(sample, SAMPLE_MS);
}

main().catch((e) => emit('error', { error: String(e?.stack ?? e) }));
