// Live (WebRTC) viewing of a channel's storage session, shared by the console's media viewer
// and /viewer: the KVS flow for multi-viewer storage sessions with the embedded KVS JS SDK
// (kvs-webrtc.min.js): GetSignalingChannelEndpoint(WSS, HTTPS, WEBRTC; VIEWER) → the SDK's
// SignalingClient as VIEWER with a random client id (one per tab) → on open, JoinStorageSessionAsViewer
// {channelArn, clientId} (SigV4-signed by the caller's `call`, again every 6 s until the
// storage session's offer arrives, as the SDK's master sample does for JoinStorageSession) →
// answer the offer (it has no sender; ICE candidates may come first: the SDK buffers them)
// and trickle candidates with no recipient → play the remote tracks in `video`.

const JOIN_RETRY_MS = 6000;
const SDK = "/console/kvs-webrtc.min.js";

function loadSdk() {
  if (window.KVSWebRTC) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const s = document.createElement("script");
    s.src = SDK;
    s.onload = () => resolve();
    s.onerror = () => reject(new Error(`cannot load ${SDK}`));
    document.head.append(s);
  });
}

const CLIENT_ID_KEY = "reel-live-viewer-client-id";

/** A random viewer client id (KVS: [a-zA-Z0-9_.-]{1,256}). */
export function randomClientId() {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return `viewer-${[...bytes].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/**
 * This tab's viewer client id: random, made once per tab (sessionStorage). Playing again
 * after Stop rejoins with it, so it takes back its own seat (reel holds a left viewer's seat
 * for a while; a new id each time would use up the session's viewer cap).
 */
export function tabClientId() {
  let id = null;
  try { id = sessionStorage.getItem(CLIENT_ID_KEY); } catch { /* storage disabled */ }
  if (!id) {
    id = randomClientId();
    try { sessionStorage.setItem(CLIENT_ID_KEY, id); } catch { /* storage disabled */ }
  }
  return id;
}

/** Tries of a join refused with a 400 (other than the viewer cap) before giving up. */
const JOIN_400_TRIES = 3;

/**
 * Whether an API error ends the join loop: the viewer cap, 403/404, or a 400 on the last of
 * JOIN_400_TRIES (a 400 may be a rate limit, or the service not having registered the
 * signaling connection yet, as the SDK's master sample assumes for JoinStorageSession).
 * Network trouble and 5xx are retried.
 */
function final(e, attempt) {
  if (!e || !e.status || e.status >= 500) return false;
  if (e.name === "ClientLimitExceededException" && /maximum number of viewers/.test(e.message || "")) return true;
  return e.status > 400 || attempt >= JOIN_400_TRIES;
}

/**
 * Starts watching the storage session of `channelArn` live in `video`.
 *
 * `call(path, body, base)` makes a SigV4-signed KVS API call and throws errors with the KVS
 * `name`, `message` and HTTP `status`; `credentials` is {region, accessKeyId,
 * secretAccessKey, sessionToken?}; `onState(text)` hears the connection state; `onError(e)`
 * hears failures (KVS errors keep their name). Resolves to {clientId, stop()} once
 * signaling is being opened.
 */
export async function watchLive({ call, credentials, channelArn, video, onState = () => {}, onError = () => {} }) {
  await loadSdk();
  const { SignalingClient, Role } = window.KVSWebRTC;
  const ep = await call("/getSignalingChannelEndpoint", {
    ChannelARN: channelArn,
    SingleMasterChannelEndpointConfiguration: { Protocols: ["WSS", "HTTPS", "WEBRTC"], Role: "VIEWER" },
  });
  const endpoints = Object.fromEntries((ep.ResourceEndpointList || []).map((e) => [e.Protocol, e.ResourceEndpoint]));
  if (!endpoints.WSS || !endpoints.WEBRTC) throw new Error("The channel has no WSS or WEBRTC endpoint (is media storage enabled?).");
  const clientId = tabClientId();
  const signaling = new SignalingClient({
    channelARN: channelArn, channelEndpoint: endpoints.WSS, clientId, role: Role.VIEWER, region: credentials.region,
    credentials: { accessKeyId: credentials.accessKeyId, secretAccessKey: credentials.secretAccessKey, sessionToken: credentials.sessionToken },
    systemClockOffset: 0, enableEarlyIceCandidateBuffering: true,
  });
  let pc = null, stopped = false, offered = false;
  const state = (s) => { if (!stopped) onState(s); };
  const fail = (e) => { if (!stopped) onError(e); };

  async function join() {
    for (let attempt = 1; !offered && !stopped; attempt++) {
      try {
        await call("/joinStorageSessionAsViewer", { channelArn, clientId }, endpoints.WEBRTC);
        if (!offered) state("joined: waiting for the storage session's offer");
      } catch (e) {
        if (final(e, attempt)) { fail(e); stop(); return; }
        state(`JoinStorageSessionAsViewer failed (${e.name}: ${e.message}), retrying`);
      }
      const until = Date.now() + JOIN_RETRY_MS;
      while (!offered && !stopped && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    }
  }

  const ufrag = (sdp) => (/a=ice-ufrag:(\S+)/.exec(sdp || "") || [])[1];
  signaling.on("open", () => { state("signaling connected: joining the storage session"); join(); });
  signaling.on("error", () => fail(new Error("The signaling connection failed.")));
  signaling.on("close", () => { if (!stopped) { state("signaling closed"); stop(); } });
  signaling.on("statusResponse", (s) => fail(Object.assign(new Error(s.description || "signaling error"), { name: s.errorType || "StatusResponse" })));
  signaling.on("iceCandidate", (candidate) => { if (pc) pc.addIceCandidate(candidate).catch(() => {}); });
  signaling.on("sdpOffer", async (offer, remoteClientId) => {
    offered = true;
    try {
      // The same ICE ufrag renegotiates the session; a new one is a new session.
      if (!pc || !pc.remoteDescription || ufrag(pc.remoteDescription.sdp) !== ufrag(offer.sdp)) {
        if (pc) pc.close();
        const current = new RTCPeerConnection({ iceServers: [], bundlePolicy: "max-bundle" });
        pc = current;
        // One stream for both tracks: the storage session may give each its own stream id.
        const remote = new MediaStream();
        current.ontrack = ({ track }) => {
          remote.addTrack(track);
          if (video.srcObject !== remote) video.srcObject = remote;
          video.play().catch(() => {});
        };
        current.onicecandidate = ({ candidate }) => { if (candidate && current === pc && !stopped) signaling.sendIceCandidate(candidate); };
        current.onconnectionstatechange = () => {
          if (current !== pc) return;
          state(current.connectionState);
          if (current.connectionState === "failed") fail(new Error("The WebRTC connection to the storage session failed."));
        };
      }
      await pc.setRemoteDescription(offer);
      signaling.drainPendingIceCandidates(remoteClientId);
      await pc.setLocalDescription(await pc.createAnswer());
      // Before sending: the connection's own states (connected…) come after it.
      if (pc.connectionState !== "connected") state("answered: connecting");
      signaling.sendSdpAnswer(pc.localDescription);
    } catch (e) { fail(e); }
  });

  function stop() {
    if (stopped) return;
    stopped = true;
    if (pc) pc.close();
    pc = null;
    try { signaling.close(); } catch { /* already closed */ }
    video.srcObject = null;
    onState("stopped");
  }
  state("connecting signaling");
  signaling.open();
  return { clientId, stop };
}
