// Drives reel's console (/) in headless Chromium through the seed's flows and prints one JSON
// line: sign in; create a channel and a stream through the forms; enable media storage; see
// the sessions dashboard; delete both; sign in with a key whose policy denies CreateStream
// and see the AccessDenied message in the form. Fails (ok: false) on any browser console
// error. Env: CONSOLE_URL, KEY_ID, SECRET, LIMITED_KEY_ID, LIMITED_SECRET, REGION, SHOTS
// (directory for 1280×800 screenshots), CHROMIUM (default /usr/bin/chromium).
import { chromium } from "playwright-core";

const env = process.env;
const browser = await chromium.launch({
  executablePath: env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run"],
});
const result = { ok: false, steps: [], consoleErrors: [], timings: {} };
const step = (name) => result.steps.push(name);
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on("console", (m) => { if (m.type() === "error") result.consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => result.consoleErrors.push(String(e)));
  result.failedRequests = [];
  page.on("response", async (r) => {
    if (r.status() >= 400) result.failedRequests.push(`${r.status()} ${new URL(r.url()).pathname} ${(await r.text().catch(() => "")).slice(0, 200)}`);
  });
  page.on("dialog", (d) => d.accept());
  const shot = async (name) => { if (env.SHOTS) await page.screenshot({ path: `${env.SHOTS}/${name}.png` }); };
  const rendered = async (route) => {
    await page.waitForFunction((r) => (document.body.dataset.rendered || "").startsWith(`${r}:`), route, { timeout: 10000 });
    const ms = Number((await page.evaluate(() => document.body.dataset.rendered)).split(":").pop());
    result.timings[route] = ms;
  };
  const signIn = async (key, secret) => {
    await page.evaluate(() => sessionStorage.clear());
    await page.goto(`${env.CONSOLE_URL}/#/signin`);
    await page.fill("#endpoint", env.CONSOLE_URL);
    await page.fill("#region", env.REGION);
    await page.fill("#akid", key);
    await page.fill("#secret", secret);
  };

  await page.goto(`${env.CONSOLE_URL}/`);
  await page.waitForSelector("#signin");
  await signIn(env.KEY_ID, env.SECRET);
  await shot("sign-in");
  await page.click("#signin button[type=submit]");
  await rendered("channels");
  step("signed in");

  await page.click("#new-channel");
  await page.waitForSelector("#create-channel");
  await page.fill("#channel-name", "console-cam");
  await shot("create-channel");
  await page.click("#create-channel button[type=submit]");
  await rendered("channels/console-cam");
  result.channelArn = await page.textContent("#channel-arn");
  step("channel created");

  await page.goto(`${env.CONSOLE_URL}/#/streams/new`);
  await page.waitForSelector("#create-stream");
  await page.fill("#stream-name", "console-stream");
  await page.fill("#stream-retention", "2");
  await shot("create-stream");
  await page.click("#create-stream button[type=submit]");
  await rendered("streams/console-stream");
  result.streamArn = await page.textContent("#stream-arn");
  await shot("stream-details");
  step("stream created");

  await page.goto(`${env.CONSOLE_URL}/#/channels/console-cam`);
  await rendered("channels/console-cam");
  await page.selectOption("#storage-stream", result.streamArn);
  await page.check("#storage-enabled");
  await page.click("#media-storage button[type=submit]");
  await page.waitForFunction(() => document.querySelector("#storage-status")?.textContent.includes("ENABLED"), null, { timeout: 10000 });
  result.storage = await page.textContent("#storage-status");
  await shot("channel-details");
  step("media storage enabled");

  await page.goto(`${env.CONSOLE_URL}/#/channels`);
  await rendered("channels");
  result.channelsListed = await page.locator("#channels tbody tr").count();
  await shot("channels");
  await page.goto(`${env.CONSOLE_URL}/#/streams`);
  await rendered("streams");
  await shot("streams");
  await page.goto(`${env.CONSOLE_URL}/#/sessions`);
  await rendered("sessions");
  result.sessionsNode = await page.textContent("#sessions-node");
  await shot("sessions");
  step("lists and dashboard");

  await page.goto(`${env.CONSOLE_URL}/#/channels/console-cam`);
  await rendered("channels/console-cam");
  await page.click("#delete-channel");
  await rendered("channels");
  await page.goto(`${env.CONSOLE_URL}/#/streams/console-stream`);
  await rendered("streams/console-stream");
  await page.click("#delete-stream");
  await rendered("streams");
  step("both deleted");

  // The refused request below is the one failure the browser may log.
  const errorsBefore = result.consoleErrors.length;
  await signIn(env.LIMITED_KEY_ID, env.LIMITED_SECRET);
  await page.click("#signin button[type=submit]");
  await rendered("channels");
  await page.goto(`${env.CONSOLE_URL}/#/streams/new`);
  await page.waitForSelector("#create-stream");
  await page.fill("#stream-name", "denied-stream");
  await page.click("#create-stream button[type=submit]");
  await page.waitForFunction(() => document.querySelector("#error").textContent.length > 0, null, { timeout: 10000 });
  result.deniedMessage = await page.textContent("#error");
  await shot("access-denied");
  const refused = result.consoleErrors.splice(errorsBefore).filter((e) => !/status of 40[13] /.test(e));
  result.consoleErrors.push(...refused);
  step("access denied shown");
  result.ok = true;
} catch (e) {
  result.error = String(e?.stack || e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
