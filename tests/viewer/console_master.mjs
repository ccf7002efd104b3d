// The console's live flow in headless Chromium with a fake camera and microphone: tab 1 runs
// the Master page ("ingest and storage") on CHANNEL; tab 2 sees the session in the Sessions
// dashboard, then plays STREAM live in the viewer over HLS and over WebRTC (Live (WebRTC):
// JoinStorageSessionAsViewer; each time the <video> advances), counts the stored fragments in
// the timeline and downloads a clip to CLIP_PATH. Prints one JSON line.
// Env: CONSOLE_URL (https), KEY_ID, SECRET, REGION, CHANNEL, STREAM, CLIP_PATH, SHOTS, CHROMIUM.
import { chromium } from "playwright-core";

const env = process.env;
const browser = await chromium.launch({
  executablePath: env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    "--ignore-certificate-errors", "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--autoplay-policy=no-user-gesture-required"],
});
const result = { ok: false, steps: [], consoleErrors: [] };
const step = (s) => result.steps.push(s);
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 }, acceptDownloads: true });
  const open = async () => {
    const page = await context.newPage();
    page.on("console", (m) => { if (m.type() === "error") result.consoleErrors.push(m.text()); });
    page.on("pageerror", (e) => result.consoleErrors.push(String(e)));
    // Chromium may report the namespace's just-configured links as a network change on
    // its first navigation (net::ERR_NETWORK_CHANGED): that navigation is retried.
    for (let attempt = 1; ; attempt++) {
      try {
        await page.goto(`${env.CONSOLE_URL}/#/signin`);
        break;
      } catch (e) {
        if (attempt >= 3 || !String(e).includes("ERR_NETWORK_CHANGED")) throw e;
        result.networkChangedRetries = attempt;
        await new Promise((r) => setTimeout(r, 500));
      }
    }
    await page.fill("#region", env.REGION);
    await page.fill("#akid", env.KEY_ID);
    await page.fill("#secret", env.SECRET);
    await page.click("#signin button[type=submit]");
    await page.waitForFunction(() => (document.body.dataset.rendered || "").startsWith("channels:"), null, { timeout: 15000 });
    return page;
  };
  const shot = async (page, name) => { if (env.SHOTS) await page.screenshot({ path: `${env.SHOTS}/${name}.png` }); };

  const master = await open();
  await master.goto(`${env.CONSOLE_URL}/#/master?channel=${encodeURIComponent(env.CHANNEL)}`);
  await master.waitForSelector("#start-master");
  await master.click("#start-master");
  await master.waitForFunction(() => document.querySelector("#master-state")?.textContent === "connected", null, { timeout: 45000 });
  step("master connected");
  await master.waitForFunction(() => /[1-9]/.test(document.querySelector("#master-outbound-bitrate")?.textContent || ""), null, { timeout: 15000 });
  result.masterBitrate = await master.textContent("#master-outbound-bitrate");
  await shot(master, "master");

  const watcher = await open();
  await watcher.goto(`${env.CONSOLE_URL}/#/sessions`);
  await watcher.waitForFunction((ch) => {
    const row = document.querySelector(`#sessions tr[data-channel="${ch}"]`);
    return row && Number(row.querySelector(".fragments").textContent) >= 1;
  }, env.CHANNEL, { timeout: 30000 });
  result.sessionRow = await watcher.textContent(`#sessions tr[data-channel="${env.CHANNEL}"]`);
  await shot(watcher, "sessions-live");
  step("session in the dashboard");

  // Let a few fragments be stored, then watch live.
  await new Promise((r) => setTimeout(r, 6000));
  await watcher.goto(`${env.CONSOLE_URL}/#/viewer?stream=${encodeURIComponent(env.STREAM)}`);
  await watcher.waitForSelector("#viewer-play");
  await watcher.click("#viewer-play");
  await watcher.waitForFunction(() => Number(document.querySelector("#timeline").dataset.fragments || 0) > 0, null, { timeout: 15000 });
  const t0 = await watcher.evaluate(() => document.querySelector("#viewer-video").currentTime);
  await watcher.waitForFunction((t) => document.querySelector("#viewer-video").currentTime >= t + 2, t0, { timeout: 30000 });
  result.liveAdvanced = (await watcher.evaluate(() => document.querySelector("#viewer-video").currentTime)) - t0;
  result.timelineFragments = Number(await watcher.getAttribute("#timeline", "data-fragments"));
  await shot(watcher, "viewer-live");
  step("live playback advanced");

  // Live (WebRTC): the viewer joins the channel's storage session (JoinStorageSessionAsViewer)
  // and plays its tracks; the <video> element's currentTime advances.
  await watcher.check("#mode-webrtc");
  await watcher.click("#viewer-play");
  await watcher.waitForFunction(() => document.querySelector("#viewer-video").dataset.webrtc === "connected", null, { timeout: 45000 })
    .catch(async (e) => {
      throw new Error(`${e.message}; status: ${await watcher.textContent("#viewer-status")}; error: ${await watcher.textContent("#error")}`);
    });
  // Pictures, not just time: the element knows the video's size once frames render.
  await watcher.waitForFunction(() => document.querySelector("#viewer-video").videoWidth > 0, null, { timeout: 30000 });
  const w0 = await watcher.evaluate(() => document.querySelector("#viewer-video").currentTime);
  await watcher.waitForFunction((t) => document.querySelector("#viewer-video").currentTime >= t + 2, w0, { timeout: 30000 });
  result.webrtcAdvanced = (await watcher.evaluate(() => document.querySelector("#viewer-video").currentTime)) - w0;
  result.webrtcStatus = await watcher.textContent("#viewer-status");
  result.webrtcSize = await watcher.evaluate(() => [document.querySelector("#viewer-video").videoWidth, document.querySelector("#viewer-video").videoHeight]);
  await shot(watcher, "viewer-webrtc");
  // The dashboard counts the live viewer (ListStorageSessions' Viewers).
  const dash = await open();
  await dash.goto(`${env.CONSOLE_URL}/#/sessions`);
  await dash.waitForFunction((ch) => Number(document.querySelector(`#sessions tr[data-channel="${ch}"] .viewers`)?.textContent) >= 1,
    env.CHANNEL, { timeout: 15000 });
  result.dashboardViewers = Number(await dash.textContent(`#sessions tr[data-channel="${env.CHANNEL}"] .viewers`));
  await dash.close();
  await watcher.click("#viewer-stop");
  await watcher.waitForFunction(() => document.querySelector("#viewer-status").textContent === "Stopped", null, { timeout: 10000 });
  step("live WebRTC playback advanced");

  // The standalone /viewer page's Live (WebRTC) mode (the same live-webrtc.js module).
  const standalone = await context.newPage();
  result.viewerPageErrors = [];
  standalone.on("console", (m) => { if (m.type() === "error") result.viewerPageErrors.push(m.text()); });
  standalone.on("pageerror", (e) => result.viewerPageErrors.push(String(e)));
  standalone.on("response", (r) => { if (r.status() >= 400) result.viewerPageErrors.push(`HTTP ${r.status()} ${r.request().method()} ${r.url()}`); });
  await standalone.goto(`${env.CONSOLE_URL}/viewer`);
  await standalone.fill("#region", env.REGION);
  await standalone.fill("#akid", env.KEY_ID);
  await standalone.fill("#secret", env.SECRET);
  await standalone.click("#load");
  await standalone.waitForFunction((s) => [...document.querySelector("#stream").options].some((o) => o.value === s), env.STREAM, { timeout: 15000 });
  await standalone.selectOption("#stream", env.STREAM);
  await standalone.check("#mode-webrtc");
  await standalone.click("#play");
  await standalone.waitForFunction(() => document.querySelector("#video").videoWidth > 0, null, { timeout: 45000 })
    .catch(async (e) => {
      throw new Error(`/viewer: ${e.message}; status: ${await standalone.textContent("#status")}; error: ${await standalone.textContent("#err")}`);
    });
  const v0 = await standalone.evaluate(() => document.querySelector("#video").currentTime);
  await standalone.waitForFunction((t) => document.querySelector("#video").currentTime >= t + 2, v0, { timeout: 30000 });
  result.viewerPageAdvanced = (await standalone.evaluate(() => document.querySelector("#video").currentTime)) - v0;
  result.viewerPageStatus = await standalone.textContent("#status");
  await standalone.click("#stop");
  await standalone.close();
  step("/viewer live WebRTC playback advanced");

  const [download] = await Promise.all([watcher.waitForEvent("download", { timeout: 30000 }), watcher.click("#viewer-clip")]);
  await download.saveAs(env.CLIP_PATH);
  step("clip downloaded");

  await master.click("#stop-master");
  await master.waitForFunction(() => document.querySelector("#master-state")?.textContent === "stopped", null, { timeout: 10000 });
  step("master stopped");
  result.ok = true;
} catch (e) {
  result.error = String(e?.stack || e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
