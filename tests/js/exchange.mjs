// Scenario 1: the SDK as master and two viewers (v1, v2) exchanging offers, answers and
// candidates through reel. Each viewer ends its traffic with an end-of-candidates marker;
// the master answers every offer (to its sender only) and, once both markers arrived, sends
// each viewer its own marker. As every connection's events arrive in order, a viewer that has
// its marker has received everything reel ever routed to it — the Rust side checks exact lists.
import { END, Peer, Role, candidate, run, sdp } from './lib.mjs';

run(async () => {
  const master = await Peer.open(Role.MASTER);
  const viewers = [await Peer.open(Role.VIEWER, 'v1'), await Peer.open(Role.VIEWER, 'v2')];

  master.client.on('sdpOffer', (_offer, sender) => {
    master.client.sendSdpAnswer(sdp('answer', `answer-for-${sender}`), sender, `answer-${sender}`);
    master.client.sendIceCandidate(candidate(`masterfor${sender}`), sender);
  });

  for (const v of viewers) {
    v.client.sendSdpOffer(sdp('offer', `offer-from-${v.name}`), undefined, `offer-${v.name}`);
    v.client.sendIceCandidate(candidate(`${v.name}a`));
    v.client.sendIceCandidate(candidate(`${v.name}b`));
    v.client.sendIceCandidate(END);
  }
  await master.untilEndFrom('v1');
  await master.untilEndFrom('v2');
  for (const v of viewers) master.client.sendIceCandidate(END, v.name);
  for (const v of viewers) await v.untilEndFrom(null);

  const result = { master: master.summary(), v1: viewers[0].summary(), v2: viewers[1].summary() };
  for (const p of [master, ...viewers]) p.close();
  return result;
});
