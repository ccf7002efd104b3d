// Drives storage-session viewers for tests/storage_viewers_browser.rs: one headless Chromium
// (harness.mjs), one tab per viewer running viewer.js (the KVS JS SDK as VIEWER +
// JoinStorageSessionAsViewer), steered by commands on stdin so the test decides when each
// viewer joins, leaves and reports.
//
// Configuration: environment REEL_ENDPOINT (control-plane URL), REEL_CHANNEL_NAME,
// AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, CHROMIUM (default /usr/bin/chromium),
// REEL_OFFER_TIMEOUT_MS (default 120000), REEL_JOIN_RETRY_MS (default 6000).
//
// Commands (one JSON object per stdin line):
//   {"cmd":"join","viewer":"a","clientId":"viewer-a","sendAudio":true}  open a viewer tab
//   {"cmd":"report","viewer":"a"}   → {"event":"report","viewer":"a",...statistics}
//   {"cmd":"leave","viewer":"a"}    stop the viewer (PeerConnection and signaling) and close its tab
//   {"cmd":"quit"}                  close the browser and exit 0
// Output: JSON lines on stdout: {"event":"ready"} once Chromium runs, every page event with
// its "viewer" added, {"event":"ack","cmd":…,"viewer":…} after each command, and
// {"event":"command_failed",…} when one fails. EOF on stdin quits too.

import { createInterface } from 'node:readline';
import { bundle, emit, env, launch, serve, watchConsole } from './harness.mjs';

const code = await bundle('viewer.js');
const { server, base } = await serve({
  '/': ['viewer.html', 'text/html'],
  '/favicon.ico': ['viewer.html', 'text/plain'],
  '/viewer.js': [code, 'text/javascript'],
});
const common = {
  endpoint: env('REEL_ENDPOINT'),
  channelName: env('REEL_CHANNEL_NAME'),
  region: env('AWS_REGION'),
  accessKeyId: env('AWS_ACCESS_KEY_ID'),
  secretAccessKey: env('AWS_SECRET_ACCESS_KEY'),
  offerTimeoutMs: env('REEL_OFFER_TIMEOUT_MS', '120000'),
  retryMs: env('REEL_JOIN_RETRY_MS', '6000'),
};

const browser = await launch();
let quitting = false;
browser.on('disconnected', () => {
  if (quitting) return;
  emit({ event: 'error', error: 'browser disconnected' });
  process.exit(1);
});
const context = await browser.newContext({ ignoreHTTPSErrors: true });
const pages = new Map();

async function join({ viewer, clientId, sendAudio }) {
  if (pages.has(viewer)) throw new Error(`viewer ${viewer} is already open`);
  const url = new URL(`${base}/`);
  for (const [k, v] of Object.entries({ ...common, clientId: clientId ?? viewer, sendAudio: sendAudio ? '1' : '0' })) {
    url.searchParams.set(k, v);
  }
  const page = await context.newPage();
  pages.set(viewer, page);
  watchConsole(page, (obj) => emit({ ...obj, viewer }));
  await page.goto(url.href);
}

async function report({ viewer }) {
  const page = pages.get(viewer);
  if (!page) throw new Error(`no viewer ${viewer}`);
  emit({ event: 'report', viewer, ...(await page.evaluate(() => window.reelReport())) });
}

async function leave({ viewer }) {
  const page = pages.get(viewer);
  if (!page) throw new Error(`no viewer ${viewer}`);
  pages.delete(viewer);
  await page.evaluate(() => window.reelStop()).catch(() => {});
  await page.close();
}

async function quit() {
  quitting = true;
  for (const viewer of [...pages.keys()]) await leave({ viewer }).catch(() => {});
  await browser.close().catch(() => {});
  server.close();
  emit({ event: 'ack', cmd: 'quit' });
  process.exit(0);
}

emit({ event: 'ready' });
// Commands run one after another, in order.
let queue = Promise.resolve();
const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  if (!line.trim()) return;
  queue = queue.then(async () => {
    let cmd;
    try {
      cmd = JSON.parse(line);
      const run = { join, report, leave, quit }[cmd.cmd];
      if (!run) throw new Error(`unknown command ${cmd.cmd}`);
      await run(cmd);
      emit({ event: 'ack', cmd: cmd.cmd, viewer: cmd.viewer });
    } catch (e) {
      emit({ event: 'command_failed', command: line, error: String(e?.stack ?? e) });
    }
  });
});
lines.on('close', () => {
  queue = queue.then(quit);
});
