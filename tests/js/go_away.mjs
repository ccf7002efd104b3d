// Scenario 5: GO_AWAY on shutdown. The SDK ignores GO_AWAY, so a raw master and a raw viewer
// (SDK-presigned `ws` connections) read the frames; an SDK viewer shows the SDK sees the close.
// Prints {"ready":true} once everyone is connected; the Rust side then sends SIGTERM to reel.
import { Peer, RawSocket, Role, emitLine, run } from './lib.mjs';

run(async () => {
  const master = await RawSocket.open(undefined);
  const viewer = await RawSocket.open('raw-viewer');
  const sdkViewer = await Peer.open(Role.VIEWER, 'sdk-viewer');
  emitLine({ ready: true });

  const closedAfterGoAway = (r) => r.close && r.frames.some((f) => f.messageType === 'GO_AWAY');
  await master.until(closedAfterGoAway, 'GO_AWAY then the close');
  await viewer.until(closedAfterGoAway, 'GO_AWAY then the close');
  await sdkViewer.until((p) => p.closed, 'the SDK viewer to be closed');

  const raw = (r) => ({ frames: r.frames, close: r.close });
  return { master: raw(master), viewer: raw(viewer), sdkViewer: sdkViewer.summary() };
});
