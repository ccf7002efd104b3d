// Scenario 4: the newest master wins. A second ConnectAsMaster closes the first connection;
// the viewer's offer then reaches the new master, whose answer reaches the viewer.
import { Peer, Role, run, sdp } from './lib.mjs';

run(async () => {
  const first = await Peer.open(Role.MASTER);
  const viewer = await Peer.open(Role.VIEWER, 'v1');
  const second = await Peer.open(Role.MASTER);
  await first.until((p) => p.closed, 'the first master to be closed');

  second.client.on('sdpOffer', (_offer, sender) => second.client.sendSdpAnswer(sdp('answer', 'from-second'), sender));
  viewer.client.sendSdpOffer(sdp('offer', 'to-newest'));
  await viewer.until((p) => p.events.length > 0, 'the answer of the second master');

  const result = { first: first.summary(), second: second.summary(), viewer: viewer.summary() };
  second.close();
  viewer.close();
  return result;
});
