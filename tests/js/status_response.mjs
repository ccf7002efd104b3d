// Scenario 2: STATUS_RESPONSE for refused messages that carry a correlationId, and silence for
// refused ones without it or for delivered ones with it. Responses come back on the sender's
// own connection in request order, so once the last expected one is in, no other can follow.
import { END, Peer, Role, candidate, run, sdp } from './lib.mjs';

run(async () => {
  const master = await Peer.open(Role.MASTER);
  const viewer = await Peer.open(Role.VIEWER, 'v1');
  // An SDP whose base64 payload is over the 10 KB messagePayload limit.
  const huge = sdp('offer', 'x'.repeat(12_000));

  viewer.client.sendSdpOffer(sdp('offer', 'fine'), undefined, 'offer-ok');
  viewer.client.sendSdpOffer(huge); // refused, uncorrelated: no answer
  viewer.client.sendSdpOffer(huge, undefined, 'offer-too-big');
  await viewer.until((p) => p.statusResponses.length >= 1, 'the STATUS_RESPONSE to offer-too-big');
  viewer.client.sendIceCandidate(END);
  await master.untilEndFrom('v1');

  // A master message without recipientClientId has nowhere to go (no storage session).
  master.client.sendIceCandidate(candidate('norecipient')); // refused, uncorrelated
  master.client.sendSdpAnswer(sdp('answer', 'nobody'), undefined, 'answer-no-recipient');
  master.client.sendSdpAnswer(sdp('answer', 'for-v1'), 'v1', 'answer-ok');
  master.client.sendIceCandidate(candidate('norecipient'), undefined, 'ice-no-recipient');
  await master.until((p) => p.statusResponses.length >= 2, 'the STATUS_RESPONSEs to the recipient-less messages');
  master.client.sendIceCandidate(END, 'v1');
  await viewer.untilEndFrom(null);

  const result = { master: master.summary(), v1: viewer.summary() };
  master.close();
  viewer.close();
  return result;
});
