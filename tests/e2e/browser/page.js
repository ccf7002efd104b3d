// Browser KVS *master* for WebRTC ingestion, bundled by run.mjs with esbuild and loaded in
// headless Chromium. It follows the official JS SDK example (examples/master.js,
// `connectToMediaServer`): DescribeSignalingChannel → DescribeMediaStorageConfiguration →
// GetSignalingChannelEndpoint(WSS, HTTPS, WEBRTC; MASTER) → getUserMedia → SignalingClient
// (MASTER) → on open, JoinStorageSession (retried every 6 s until an offer arrives) → on the
// storage peer's SDP_OFFER (no sender: the SDK keys it "MASTER") answer and trickle candidates
// with no recipient → stream for `seconds` after the PeerConnection is connected.
//
// Configuration comes from the page's query string; progress is reported as console lines
// `REEL {"event":…}`, the last one `done` or `error`.

import { Role, SignalingClient } from 'amazon-kinesis-video-streams-webrtc';
import { DescribeMediaStorageConfigurationCommand } from '@aws-sdk/client-kinesis-video';
import { JoinStorageSessionCommand, KinesisVideoWebRTCStorageClient } from '@aws-sdk/client-kinesis-video-webrtc-storage';
import { channelArn, channelEndpoints, kinesisVideo, signing } from './channel.js';

const JOIN_RETRY_MS = 6000;
const cfg = Object.fromEntries(new URLSearchParams(location.search));
const seconds = Number(cfg.seconds || 10);
const offerTimeoutMs = Number(cfg.offerTimeoutMs || 30000);
const t0 = performance.now();

function emit(event, fields = {}) {
  console.log(`REEL ${JSON.stringify({ event, t: Math.round(performance.now() - t0) / 1000, ...fields })}`);
}

let finished = false;
function finish(event, fields) {
  if (finished) return;
  finished = true;
  emit(event, fields);
}

async function main() {
  const { region, credentials } = signing(cfg);
  const kvs = kinesisVideo(cfg);
  const channelARN = await channelArn(kvs, cfg);
  const storage = await kvs.send(new DescribeMediaStorageConfigurationCommand({ ChannelARN: channelARN }));
  emit('media_storage', { status: storage.MediaStorageConfiguration?.Status, streamARN: storage.MediaStorageConfiguration?.StreamARN });
  if (storage.MediaStorageConfiguration?.Status !== 'ENABLED') throw new Error('media storage is not enabled');
  const endpoints = await channelEndpoints(kvs, channelARN, Role.MASTER);
  emit('endpoints', endpoints);

  const localStream = await navigator.mediaDevices.getUserMedia({
    video: { width: { ideal: 640 }, height: { ideal: 480 } },
    audio: true,
  });
  emit('local_media', { tracks: localStream.getTracks().map((t) => t.kind) });

  const signaling = new SignalingClient({
    channelARN,
    channelEndpoint: endpoints.WSS,
    role: Role.MASTER,
    region,
    credentials,
    systemClockOffset: 0,
    enableEarlyIceCandidateBuffering: true,
  });
  const storageClient = new KinesisVideoWebRTCStorageClient({
    region,
    endpoint: endpoints.WEBRTC,
    credentials,
    maxAttempts: 1,
  });

  let pc = null;
  let offerReceived = false;
  let candidatesSent = 0;
  let candidatesReceived = 0;

  async function joinLoop() {
    const deadline = Date.now() + offerTimeoutMs;
    for (let attempt = 1; !offerReceived && !finished; attempt++) {
      try {
        await storageClient.send(new JoinStorageSessionCommand({ channelArn: channelARN }));
        emit('join_storage_session', { attempt, status: 200 });
      } catch (e) {
        const status = e?.$metadata?.httpStatusCode;
        emit('join_storage_session', { attempt, status, error: `${e?.name}: ${e?.message}` });
        if (status && status !== 400 && status < 500) {
          finish('error', { error: `JoinStorageSession failed: HTTP ${status} ${e?.name}: ${e?.message}` });
          return;
        }
      }
      const waitUntil = Date.now() + JOIN_RETRY_MS;
      while (!offerReceived && Date.now() < waitUntil) await new Promise((r) => setTimeout(r, 100));
      if (!offerReceived && Date.now() > deadline) {
        finish('error', { error: `no SDP_OFFER received within ${offerTimeoutMs} ms after ${attempt} JoinStorageSession call(s)` });
        return;
      }
    }
  }

  signaling.on('open', () => {
    emit('signaling_connected');
    joinLoop();
  });
  signaling.on('error', (e) => emit('signaling_error', { error: String(e?.message ?? e) }));
  signaling.on('close', () => finish('error', { error: 'signaling closed' }));
  signaling.on('statusResponse', (s) => emit('status_response', { status: s }));

  signaling.on('sdpOffer', async (offer, remoteClientId) => {
    if (offerReceived) {
      emit('extra_offer_ignored', { sender: remoteClientId ?? null });
      return;
    }
    offerReceived = true;
    emit('sdp_offer', { sender: remoteClientId ?? null, chars: offer.sdp.length });
    pc = new RTCPeerConnection({ iceServers: [], bundlePolicy: 'max-bundle' });
    // A camera keeps its resolution: under CPU load Chromium would otherwise scale the picture
    // down, which changes the SPS (a new fragment header) mid-test. 'detail' maps to
    // maintain-resolution degradation.
    localStream.getVideoTracks().forEach((track) => { track.contentHint = 'detail'; });
    localStream.getTracks().forEach((track) => pc.addTrack(track, localStream));
    pc.onicecandidate = ({ candidate }) => {
      if (!candidate) return;
      candidatesSent++;
      signaling.sendIceCandidate(candidate); // no recipient: it goes to the storage session
    };
    pc.oniceconnectionstatechange = () => emit('ice_connection_state', { state: pc.iceConnectionState });
    pc.onconnectionstatechange = () => {
      emit('connection_state', { state: pc.connectionState });
      if (pc.connectionState === 'connected') {
        const connectedAt = performance.now();
        setTimeout(async () => {
          const stats = [];
          const inbound = [];
          (await pc.getStats()).forEach((r) => {
            if (r.type === 'outbound-rtp') stats.push({ kind: r.kind, packetsSent: r.packetsSent, bytesSent: r.bytesSent, framesEncoded: r.framesEncoded });
            // Talk-back audio from the storage session's viewers.
            if (r.type === 'inbound-rtp') inbound.push({ kind: r.kind, packetsReceived: r.packetsReceived });
          });
          const streamed = (performance.now() - connectedAt) / 1000;
          pc.close();
          signaling.close();
          finish('done', { streamed_s: Math.round(streamed * 1000) / 1000, candidatesSent, candidatesReceived, outbound: stats, inbound });
        }, seconds * 1000);
      } else if (pc.connectionState === 'failed') {
        finish('error', { error: 'peer connection failed' });
      }
    };
    try {
      await pc.setRemoteDescription(offer);
      signaling.on('iceCandidate', async (candidate) => {
        candidatesReceived++;
        try {
          await pc.addIceCandidate(candidate);
        } catch (e) {
          emit('add_ice_candidate_failed', { error: String(e), candidate });
        }
      });
      signaling.drainPendingIceCandidates(remoteClientId);
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      signaling.sendSdpAnswer(pc.localDescription); // no recipient
      emit('sdp_answer_sent', { chars: pc.localDescription.sdp.length });
    } catch (e) {
      finish('error', { error: `answering the storage offer failed: ${e}` });
    }
  });

  signaling.open();
}

main().catch((e) => finish('error', { error: String(e?.stack ?? e) }));
