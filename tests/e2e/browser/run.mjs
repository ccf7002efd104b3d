// Drives the browser master for tests/ingest_browser.rs (and the master of
// tests/storage_viewers_browser.rs): bundles page.js with esbuild, serves index.html + the
// bundle from a tiny static server on 127.0.0.1:0, and opens it in headless Chromium (system
// /usr/bin/chromium through playwright-core) with a fake camera and microphone
// (harness.mjs).
//
// Configuration: environment REEL_ENDPOINT (control-plane URL), REEL_CHANNEL_NAME,
// AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, REEL_STREAM_SECONDS (default 10),
// REEL_OFFER_TIMEOUT_MS (default 30000), CHROMIUM (default /usr/bin/chromium).
// Output: every `REEL {...}` console line of the page as a JSON line on stdout, other
// console/page errors as {"event":"console",...}; exit 0 after `done`, 1 after `error` or a
// timeout.

import { bundle, emit, env, launch, serve, watchConsole } from './harness.mjs';

const seconds = Number(env('REEL_STREAM_SECONDS', '10'));
const offerTimeoutMs = Number(env('REEL_OFFER_TIMEOUT_MS', '30000'));
const overallMs = offerTimeoutMs + seconds * 1000 + 60_000;

const code = await bundle('page.js');
emit({ event: 'bundled' });

const { server, base } = await serve({
  '/': ['index.html', 'text/html'],
  '/favicon.ico': ['index.html', 'text/plain'],
  '/page.js': [code, 'text/javascript'],
});
const pageUrl = new URL(`${base}/`);
for (const [k, v] of Object.entries({
  endpoint: env('REEL_ENDPOINT'),
  channelName: env('REEL_CHANNEL_NAME'),
  region: env('AWS_REGION'),
  accessKeyId: env('AWS_ACCESS_KEY_ID'),
  secretAccessKey: env('AWS_SECRET_ACCESS_KEY'),
  seconds: String(seconds),
  offerTimeoutMs: String(offerTimeoutMs),
})) {
  pageUrl.searchParams.set(k, v);
}

const browser = await launch();

const finished = new Promise((resolve) => {
  const timer = setTimeout(() => resolve({ event: 'error', error: `page did not finish within ${overallMs} ms` }), overallMs);
  browser.on('disconnected', () => resolve({ event: 'error', error: 'browser disconnected' }));
  (async () => {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await context.newPage();
    watchConsole(page, (obj) => {
      if (obj.event === 'done' || obj.event === 'error') {
        clearTimeout(timer);
        resolve(obj);
      } else {
        emit(obj);
      }
    });
    await page.goto(pageUrl.href);
  })().catch((e) => resolve({ event: 'error', error: String(e?.stack ?? e) }));
});
const outcome = await finished;
emit(outcome);
await browser.close().catch(() => {});
server.close();
process.exit(outcome.event === 'done' ? 0 : 1);
