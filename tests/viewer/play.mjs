// Opens reel's /viewer in headless Chromium, enters credentials, picks a stream, plays it in
// the given mode and reports whether the video advanced. Prints one JSON line.
// Env: VIEWER_URL, KEY_ID, SECRET, REGION, STREAM, MODE (LIVE|ON_DEMAND), START_MS, END_MS,
// SCREENSHOT (path), CHROMIUM (executable, default /usr/bin/chromium).
import { chromium } from "playwright-core";

const env = process.env;
const browser = await chromium.launch({
  executablePath: env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--autoplay-policy=no-user-gesture-required"],
});
const result = { ok: false };
try {
  const page = await browser.newPage();
  const logs = [];
  page.on("console", (m) => logs.push(m.text()));
  await page.goto(env.VIEWER_URL);
  await page.fill("#region", env.REGION);
  await page.fill("#akid", env.KEY_ID);
  await page.fill("#secret", env.SECRET);
  await page.click("#load");
  await page.waitForFunction((s) => [...document.querySelectorAll("#stream option")].some((o) => o.value === s), env.STREAM, { timeout: 10000 });
  await page.selectOption("#stream", env.STREAM);
  if (env.MODE === "ON_DEMAND") {
    await page.check("input[name=mode][value=ON_DEMAND]");
    // Chromium shows a whole minute without its ":00" seconds and Playwright's fill() rejects
    // a value the input does not echo back ("Malformed value"), so whole minutes drop them.
    const local = (ms) => { const d = new Date(Number(ms)); return new Date(d - d.getTimezoneOffset() * 60000).toISOString().slice(0, 19).replace(/:00$/, ""); };
    await page.fill("#start", local(env.START_MS));
    await page.fill("#end", local(Number(env.END_MS) + 1000));
  }
  await page.click("#play");
  const started = Date.now();
  let state = {};
  while (Date.now() - started < 30000) {
    state = await page.evaluate(() => ({ t: document.querySelector("video").currentTime, w: document.querySelector("video").videoWidth,
      err: document.querySelector("#err").textContent, fragments: document.querySelectorAll("#timeline div").length }));
    if (state.t >= 3 && state.w > 0) break;
    if (state.err) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  Object.assign(result, state, { ok: state.t >= 3 && state.w > 0, logs: logs.slice(-10) });
  if (env.SCREENSHOT) await page.screenshot({ path: env.SCREENSHOT });
} catch (e) {
  result.error = String(e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
