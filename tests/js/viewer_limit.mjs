// Scenario 3: ten viewers connect; the 11th is refused. The SDK only reports the refusal as an
// 'error' then 'close'; a raw `ws` upgrade on an SDK-presigned URL shows the HTTP status and
// the KVS error body. A reconnect under an existing clientId is still accepted and replaces
// the older connection (the limit counts distinct viewers).
import { Peer, RawSocket, Role, presign, run } from './lib.mjs';

run(async () => {
  const ids = Array.from({ length: 10 }, (_, i) => `v${i}`);
  const viewers = await Promise.all(ids.map((id) => Peer.open(Role.VIEWER, id)));

  const eleventh = new Peer(Role.VIEWER, 'v10');
  eleventh.client.open();
  await eleventh.until((p) => p.closed, 'the 11th viewer to be closed');

  const raw = new RawSocket(await presign('v10'), 'raw v10');
  await raw.until((r) => r.refusal || r.opened, 'the raw 11th viewer upgrade to be answered');

  const again = await Peer.open(Role.VIEWER, 'v0');
  await viewers[0].until((p) => p.closed, 'the replaced v0 to be closed');

  const result = {
    opened: viewers.filter((v) => v.opened).length,
    eleventh: { opened: eleventh.opened, closed: eleventh.closed, errors: eleventh.errors },
    raw: { opened: raw.opened, refusal: raw.refusal },
    rejoin: { opened: again.opened, replacedClosed: viewers[0].closed },
  };
  for (const p of [...viewers, again]) p.close();
  return result;
});
