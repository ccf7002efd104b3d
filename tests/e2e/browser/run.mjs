// Drives the browser master for tests/ingest_browser.rs: bundles page.js with esbuild into
// dist/page.js, serves index.html + the bundle from a tiny static server on 127.0.0.1:0, and
// opens it in headless Chromium (system /usr/bin/chromium through playwright-core) with a
// fake camera and microphone.
//
// Configuration: environment REEL_ENDPOINT (control-plane URL), REEL_CHANNEL_NAME,
// AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, REEL_STREAM_SECONDS (default 10),
// REEL_OFFER_TIMEOUT_MS (default 30000), CHROMIUM (default /usr/bin/chromium).
// Output: every `REEL {...}` console line of the page as a JSON line on stdout, other
// console/page errors as {"event":"console",...}; exit 0 after `done`, 1 after `error` or a
// timeout.

import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const emit = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

function env(name, fallback) {
  const v = process.env[name] ?? fallback;
  if (v === undefined) {
    emit({ event: 'error', error: `environment variable ${name} is not set` });
    process.exit(1);
  }
  return v;
}

const seconds = Number(env('REEL_STREAM_SECONDS', '10'));
const offerTimeoutMs = Number(env('REEL_OFFER_TIMEOUT_MS', '30000'));
const overallMs = offerTimeoutMs + seconds * 1000 + 60_000;

await esbuild.build({
  entryPoints: [join(here, 'page.js')],
  bundle: true,
  format: 'iife',
  platform: 'browser',
  target: 'chrome120',
  outfile: join(here, 'dist', 'page.js'),
  define: { global: 'globalThis' },
  // Some SDK modules read `process.env` (Node) at load time.
  banner: { js: 'var process = globalThis.process || { env: {} };' },
  logLevel: 'warning',
});
emit({ event: 'bundled' });

const files = {
  '/': ['index.html', 'text/html'],
  '/favicon.ico': ['index.html', 'text/plain'],
  '/page.js': [join('dist', 'page.js'), 'text/javascript'],
};
const server = createServer(async (req, res) => {
  const path = new URL(req.url, 'http://x').pathname;
  const entry = files[path];
  if (!entry) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { 'content-type': entry[1] }).end(await readFile(join(here, entry[0])));
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const pageUrl = new URL(`http://127.0.0.1:${server.address().port}/`);
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

const browser = await chromium.launch({
  executablePath: env('CHROMIUM', '/usr/bin/chromium'),
  headless: true,
  args: [
    '--no-sandbox',
    '--use-fake-ui-for-media-stream',
    '--use-fake-device-for-media-stream',
    '--ignore-certificate-errors',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
    // The page (served from 127.0.0.1) calls reel's HTTPS APIs on another origin and reel
    // sends no CORS headers.
    '--disable-web-security',
  ],
});

let outcome = null;
const finished = new Promise((resolve) => {
  const timer = setTimeout(() => resolve({ event: 'error', error: `page did not finish within ${overallMs} ms` }), overallMs);
  browser.on('disconnected', () => resolve({ event: 'error', error: 'browser disconnected' }));
  (async () => {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await context.newPage();
    page.on('console', (msg) => {
      const text = msg.text();
      if (text.startsWith('REEL ')) {
        let obj;
        try {
          obj = JSON.parse(text.slice(5));
        } catch {
          obj = { event: 'console', text };
        }
        if (obj.event === 'done' || obj.event === 'error') {
          clearTimeout(timer);
          resolve(obj);
        } else {
          emit(obj);
        }
      } else if (msg.type() === 'error' || msg.type() === 'warning') {
        emit({ event: 'console', type: msg.type(), text: text.slice(0, 500) });
      }
    });
    page.on('pageerror', (e) => {
      clearTimeout(timer);
      resolve({ event: 'error', error: `uncaught page error: ${e}` });
    });
    await page.goto(pageUrl.href);
  })().catch((e) => resolve({ event: 'error', error: String(e?.stack ?? e) }));
});
outcome = await finished;
emit(outcome);
await browser.close().catch(() => {});
server.close();
process.exit(outcome.event === 'done' ? 0 : 1);
