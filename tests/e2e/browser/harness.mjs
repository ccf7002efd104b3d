// Shared plumbing of the browser runners (run.mjs: the master; viewers.mjs: storage-session
// viewers): bundle a page script with esbuild (in memory), serve it with its HTML from a tiny
// static server on 127.0.0.1:0, launch the system Chromium (playwright-core) with a fake
// camera and microphone, and turn the page's `REEL {...}` console lines into JSON events.

import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { chromium } from 'playwright-core';

export const here = dirname(fileURLToPath(import.meta.url));

/** Writes one JSON line to stdout. */
export const emit = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

/** An environment variable, or `fallback`; exits with an `error` event when neither exists. */
export function env(name, fallback) {
  const v = process.env[name] ?? fallback;
  if (v === undefined) {
    emit({ event: 'error', error: `environment variable ${name} is not set` });
    process.exit(1);
  }
  return v;
}

/** Bundles `entry` (a file beside this one) for the browser and returns the code. */
export async function bundle(entry) {
  const out = await esbuild.build({
    entryPoints: [join(here, entry)],
    bundle: true,
    write: false,
    format: 'iife',
    platform: 'browser',
    target: 'chrome120',
    define: { global: 'globalThis' },
    // Some SDK modules read `process.env` (Node) at load time.
    banner: { js: 'var process = globalThis.process || { env: {} };' },
    logLevel: 'warning',
  });
  return out.outputFiles[0].contents;
}

/**
 * Serves `routes` ({path: [body or file name beside this one, content type]}) on
 * 127.0.0.1:0; returns the server and its base URL.
 */
export async function serve(routes) {
  const server = createServer(async (req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    const entry = routes[path];
    if (!entry) {
      res.writeHead(404).end();
      return;
    }
    const [body, type] = entry;
    res.writeHead(200, { 'content-type': type }).end(typeof body === 'string' ? await readFile(join(here, body)) : body);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { server, base: `http://127.0.0.1:${server.address().port}` };
}

/** Headless Chromium (CHROMIUM, default /usr/bin/chromium) with fake media devices. */
export function launch() {
  return chromium.launch({
    executablePath: env('CHROMIUM', '/usr/bin/chromium'),
    headless: true,
    args: [
      '--no-sandbox',
      '--use-fake-ui-for-media-stream',
      '--use-fake-device-for-media-stream',
      '--autoplay-policy=no-user-gesture-required',
      '--ignore-certificate-errors',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      // No --disable-web-security: the page (served from 127.0.0.1) calls reel's HTTPS APIs
      // on another origin, so reel's CORS answers are checked by the browser itself.
    ],
  });
}

/**
 * Forwards a page's console: `REEL {...}` lines go to `onEvent` as objects, other errors and
 * warnings as {"event":"console",...}; an uncaught page error as {"event":"error",...}.
 */
export function watchConsole(page, onEvent) {
  page.on('console', (msg) => {
    const text = msg.text();
    if (text.startsWith('REEL ')) {
      let obj;
      try {
        obj = JSON.parse(text.slice(5));
      } catch {
        obj = { event: 'console', text };
      }
      onEvent(obj);
    } else if (msg.type() === 'error' || msg.type() === 'warning') {
      onEvent({ event: 'console', type: msg.type(), text: text.slice(0, 500) });
    }
  });
  page.on('pageerror', (e) => onEvent({ event: 'error', error: `uncaught page error: ${e}` }));
}
