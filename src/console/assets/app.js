// The reel console: a small single-page app over the KVS APIs (signed in the browser, see
// sigv4.js). Routes are URL fragments: #/channels, #/channels/new, #/channels/<name>,
// #/streams, #/streams/new, #/streams/<name>, #/master, #/sessions, #/viewer, #/signin.
import { KvsError, call, callBlob, credentials, signIn, signOut } from "/console/sigv4.js";
import { watchLive } from "/console/live-webrtc.js";

const main = document.getElementById("main");
const errorBox = document.getElementById("error");
const PAGE_SIZE = 50;

/** Builds an element: h("a", {href: "#"}, "text", child…). Text is never parsed as HTML. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    // Through the CSSOM: the page's CSP allows no inline style attributes.
    else if (k === "style") Object.assign(el.style, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  return el;
}

function show(...nodes) {
  main.replaceChildren(...nodes);
}

function say(e) {
  if (!e) { errorBox.textContent = ""; return; }
  errorBox.textContent = e instanceof KvsError ? `${e.name}: ${e.message}` : String(e.message || e);
}

/** Every item of a paged listing (for pickers): follows NextToken to the end. */
async function listAll(path, key) {
  const items = [];
  let token = null;
  do {
    const out = await call(path, { MaxResults: 1000, ...(token ? { NextToken: token } : {}) });
    items.push(...(out[key] || []));
    token = out.NextToken || null;
  } while (token);
  return items;
}

const when = (secs) => (secs ? new Date(secs * 1000).toLocaleString() : "—");
const field = (label, input) => h("label", {}, h("span", {}, label), input);
const dl = (pairs) => h("dl", {}, pairs.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v ?? "—")]));

// ---- sign-in ---------------------------------------------------------------------------

function signInPage() {
  const c = credentials() || {};
  const endpoint = h("input", { type: "text", id: "endpoint", value: c.endpoint || location.origin, required: true });
  const region = h("input", { type: "text", id: "region", value: c.region || "us-west-2", required: true });
  const akid = h("input", { type: "text", id: "akid", autocomplete: "username", value: c.accessKeyId || "", required: true });
  const secret = h("input", { type: "password", id: "secret", autocomplete: "current-password", required: true });
  const token = h("input", { type: "text", id: "stoken", placeholder: "optional" });
  const form = h("form", { class: "card", id: "signin" },
    field("Endpoint", endpoint), field("Region", region), field("Access key ID", akid),
    field("Secret access key", secret), field("Session token", token),
    h("p", { class: "muted" }, "Credentials stay in this tab (sessionStorage) and sign every request here, so your key's policy applies as it does to the AWS CLI."),
    h("button", { type: "submit" }, "Sign in"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    signIn({ endpoint: endpoint.value.trim(), region: region.value.trim(), accessKeyId: akid.value.trim(),
      secretAccessKey: secret.value, sessionToken: token.value.trim() || undefined });
    try {
      await call("/listSignalingChannels", { MaxResults: 1 });
      location.hash = "#/channels";
    } catch (e) {
      if (e instanceof KvsError && (e.name === "UnrecognizedClientException" || e.name === "InvalidSignatureException"
        || e.name === "NetworkError")) signOut();
      say(e);
      route();
    }
  });
  show(h("h1", {}, "Sign in"), form);
  akid.focus();
}

// ---- listings ----------------------------------------------------------------------------

/** A paged table: `load(token)` returns {rows, next}; `columns` are [title, row => node]. */
async function pagedTable(id, columns, load) {
  const body = h("tbody");
  const table = h("table", { id }, h("thead", {}, h("tr", {}, columns.map(([t]) => h("th", { scope: "col" }, t)))), body);
  const more = h("button", { class: "secondary", type: "button", id: `${id}-more` }, "Load more");
  const count = h("span", { class: "muted", id: `${id}-count` });
  let token = null;
  let shown = 0;
  async function page() {
    more.disabled = true;
    const { rows, next } = await load(token);
    for (const r of rows) body.append(h("tr", {}, columns.map(([, cell]) => h("td", {}, cell(r)))));
    shown += rows.length;
    token = next || null;
    count.textContent = `${shown} shown${token ? ", more available" : ""}`;
    more.hidden = !token;
    more.disabled = false;
  }
  more.addEventListener("click", () => page().catch(say));
  await page();
  return h("div", {}, table, h("div", { class: "toolbar" }, more, count));
}

async function channelsPage() {
  const table = await pagedTable("channels", [
    ["Name", (c) => h("a", { href: `#/channels/${encodeURIComponent(c.ChannelName)}` }, c.ChannelName)],
    ["Type", (c) => c.ChannelType],
    ["Status", (c) => c.ChannelStatus],
    ["Created", (c) => when(c.CreationTime)],
  ], async (token) => {
    const out = await call("/listSignalingChannels", { MaxResults: PAGE_SIZE, ...(token ? { NextToken: token } : {}) });
    return { rows: out.ChannelInfoList || [], next: out.NextToken };
  });
  show(h("h1", {}, "Signaling channels"),
    h("div", { class: "toolbar" }, h("a", { href: "#/channels/new" }, h("button", { type: "button", id: "new-channel" }, "Create signaling channel"))),
    table);
}

async function streamsPage() {
  const table = await pagedTable("streams", [
    ["Name", (s) => h("a", { href: `#/streams/${encodeURIComponent(s.StreamName)}` }, s.StreamName)],
    ["Status", (s) => s.Status],
    ["Retention (hours)", (s) => String(s.DataRetentionInHours)],
    ["Media type", (s) => s.MediaType || "—"],
    ["Created", (s) => when(s.CreationTime)],
  ], async (token) => {
    const out = await call("/listStreams", { MaxResults: PAGE_SIZE, ...(token ? { NextToken: token } : {}) });
    return { rows: out.StreamInfoList || [], next: out.NextToken };
  });
  show(h("h1", {}, "Video streams"),
    h("div", { class: "toolbar" }, h("a", { href: "#/streams/new" }, h("button", { type: "button", id: "new-stream" }, "Create video stream"))),
    table);
}

// ---- create forms ------------------------------------------------------------------------

function createChannelPage() {
  const name = h("input", { type: "text", id: "channel-name", required: true, maxlength: 256, pattern: "[a-zA-Z0-9_.\\-]+" });
  const ttl = h("input", { type: "number", id: "channel-ttl", value: 60, min: 5, max: 120, required: true });
  const form = h("form", { class: "card", id: "create-channel" },
    field("Signaling channel name", name), field("Time-to-live of messages (seconds)", ttl),
    h("p", { class: "muted" }, "Type: SINGLE_MASTER (one master, up to 10 viewers)."),
    h("button", { type: "submit" }, "Create signaling channel"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    say(null);
    try {
      await call("/createSignalingChannel", { ChannelName: name.value.trim(), ChannelType: "SINGLE_MASTER",
        SingleMasterConfiguration: { MessageTtlSeconds: Number(ttl.value) } });
      location.hash = `#/channels/${encodeURIComponent(name.value.trim())}`;
    } catch (e) { say(e); }
  });
  show(h("h1", {}, "Create signaling channel"), form);
  name.focus();
}

function createStreamPage() {
  const name = h("input", { type: "text", id: "stream-name", required: true, maxlength: 256, pattern: "[a-zA-Z0-9_.\\-]+" });
  const retention = h("input", { type: "number", id: "stream-retention", value: 24, min: 0, max: 87600, required: true });
  const media = h("input", { type: "text", id: "stream-media-type", value: "video/h264,audio/opus" });
  const kms = h("input", { type: "text", id: "stream-kms", placeholder: "default: the service-managed key" });
  const form = h("form", { class: "card", id: "create-stream" },
    field("Video stream name", name), field("Data retention (hours; 0 keeps nothing)", retention),
    field("Media type", media), field("KMS key ID", kms),
    h("button", { type: "submit" }, "Create video stream"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    say(null);
    const body = { StreamName: name.value.trim(), DataRetentionInHours: Number(retention.value) };
    if (media.value.trim()) body.MediaType = media.value.trim();
    if (kms.value.trim()) body.KmsKeyId = kms.value.trim();
    try {
      await call("/createStream", body);
      location.hash = `#/streams/${encodeURIComponent(body.StreamName)}`;
    } catch (e) { say(e); }
  });
  show(h("h1", {}, "Create video stream"), form);
  name.focus();
}

// ---- details -----------------------------------------------------------------------------

async function endpointsOf(arn, role, storageEnabled) {
  // WEBRTC (JoinStorageSession's endpoint) exists only for channels with media storage.
  const protocols = storageEnabled ? ["WSS", "HTTPS", "WEBRTC"] : ["WSS", "HTTPS"];
  try {
    const out = await call("/getSignalingChannelEndpoint", { ChannelARN: arn,
      SingleMasterChannelEndpointConfiguration: { Protocols: protocols, Role: role } });
    return (out.ResourceEndpointList || []).map((e) => `${e.Protocol}: ${e.ResourceEndpoint}`).join("\n");
  } catch (e) { return e instanceof KvsError ? `${e.name}: ${e.message}` : String(e); }
}

async function channelPage(name) {
  const { ChannelInfo: c } = await call("/describeSignalingChannel", { ChannelName: name });
  const storage = (await call("/describeMediaStorageConfiguration", { ChannelARN: c.ChannelARN })).MediaStorageConfiguration || {};
  const enabled = storage.Status === "ENABLED";
  const [tags, master, viewer] = await Promise.all([
    call("/ListTagsForResource", { ResourceARN: c.ChannelARN }).then((t) => t.Tags || {}, () => ({})),
    endpointsOf(c.ChannelARN, "MASTER", enabled),
    endpointsOf(c.ChannelARN, "VIEWER", enabled),
  ]);
  const picker = h("select", { id: "storage-stream" }, h("option", { value: "" }, "(choose a stream)"));
  const streams = await listAll("/listStreams", "StreamInfoList").catch(() => []);
  for (const s of streams) picker.append(h("option", { value: s.StreamARN, selected: s.StreamARN === storage.StreamARN }, s.StreamName));
  const toggle = h("input", { type: "checkbox", id: "storage-enabled", checked: enabled });
  const storageForm = h("form", { class: "card", id: "media-storage" },
    h("label", {}, toggle, " Ingest and store media from this channel's master (media storage)"),
    field("Video stream", picker),
    h("button", { type: "submit" }, "Save media storage configuration"));
  storageForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    say(null);
    try {
      const cfg = { Status: toggle.checked ? "ENABLED" : "DISABLED" };
      if (picker.value) cfg.StreamARN = picker.value;
      await call("/updateMediaStorageConfiguration", { ChannelARN: c.ChannelARN, MediaStorageConfiguration: cfg });
      await channelPage(name);
      document.getElementById("storage-status").textContent = `Saved: ${cfg.Status}`;
    } catch (e) { say(e); }
  });
  const del = h("button", { type: "button", class: "danger", id: "delete-channel" }, "Delete signaling channel");
  del.addEventListener("click", async () => {
    if (!confirm(`Delete the signaling channel ${c.ChannelName}? Masters and viewers connected to it are disconnected.`)) return;
    try {
      await call("/deleteSignalingChannel", { ChannelARN: c.ChannelARN, CurrentVersion: c.Version });
      location.hash = "#/channels";
    } catch (e) { say(e); }
  });
  show(h("h1", {}, `Signaling channel: ${c.ChannelName}`),
    dl([["ARN", h("code", { id: "channel-arn" }, c.ChannelARN)], ["Type", c.ChannelType], ["Status", c.ChannelStatus],
      ["Version", c.Version], ["Created", when(c.CreationTime)],
      ["Message TTL (s)", String(c.SingleMasterConfiguration?.MessageTtlSeconds ?? "—")],
      ["Tags", Object.entries(tags).map(([k, v]) => `${k}=${v}`).join(", ") || "none"],
      ["Endpoints (MASTER)", h("pre", {}, master)], ["Endpoints (VIEWER)", h("pre", {}, viewer)],
      ["Media storage", h("span", { id: "storage-status" }, `${storage.Status || "DISABLED"}${storage.StreamARN ? ` → ${storage.StreamARN}` : ""}`)]]),
    h("h2", {}, "Media storage"), storageForm,
    h("div", { class: "toolbar" }, h("a", { href: `#/master?channel=${encodeURIComponent(c.ChannelName)}` }, "Start a master on this channel"),
      enabled && storage.StreamARN
        ? h("a", { id: "watch-live", href: `#/viewer?stream=${encodeURIComponent(storage.StreamARN.split("/")[1] || "")}&mode=webrtc` }, "Watch live (WebRTC)")
        : null,
      del));
}

async function streamPage(name) {
  const { StreamInfo: s } = await call("/describeStream", { StreamName: name });
  const hours = h("input", { type: "number", id: "retention-hours", value: s.DataRetentionInHours, min: 0, max: 87600 });
  const form = h("form", { class: "card", id: "retention" }, field("Data retention (hours)", hours),
    h("button", { type: "submit" }, "Update data retention"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    say(null);
    const want = Number(hours.value), have = s.DataRetentionInHours;
    if (want === have) return;
    try {
      await call("/updateDataRetention", { StreamARN: s.StreamARN, CurrentVersion: s.Version,
        Operation: want > have ? "INCREASE_DATA_RETENTION" : "DECREASE_DATA_RETENTION",
        DataRetentionChangeInHours: Math.abs(want - have) });
      await streamPage(name);
    } catch (e) { say(e); }
  });
  const del = h("button", { type: "button", class: "danger", id: "delete-stream" }, "Delete video stream");
  del.addEventListener("click", async () => {
    if (!confirm(`Delete the video stream ${s.StreamName} and all its stored media?`)) return;
    try {
      await call("/deleteStream", { StreamARN: s.StreamARN, CurrentVersion: s.Version });
      location.hash = "#/streams";
    } catch (e) { say(e); }
  });
  show(h("h1", {}, `Video stream: ${s.StreamName}`),
    dl([["ARN", h("code", { id: "stream-arn" }, s.StreamARN)], ["Status", s.Status], ["Version", s.Version],
      ["Created", when(s.CreationTime)], ["Data retention (hours)", String(s.DataRetentionInHours)],
      ["Media type", s.MediaType], ["KMS key ID", s.KmsKeyId], ["Device name", s.DeviceName]]),
    h("h2", {}, "Data retention"), form,
    h("div", { class: "toolbar" }, h("a", { href: `#/viewer?stream=${encodeURIComponent(s.StreamName)}` }, "Watch in the media viewer"), del));
}

// ---- sessions dashboard --------------------------------------------------------------------

let sessionsTimer = null;
async function sessionsPage() {
  const body = h("tbody");
  const node = h("span", { class: "muted", id: "sessions-node" });
  const table = h("table", { id: "sessions" },
    h("thead", {}, h("tr", {}, ["Channel", "Stream", "Master", "Viewers", "Duration", "Bitrate", "Loss", "Jitter", "Fragments", "NACKs", "PLIs"]
      .map((t) => h("th", { scope: "col" }, t)))), body);
  const last = new Map();
  async function refresh() {
    const out = await call("/listStorageSessions", {});
    node.textContent = `Node ${out.Node}, refreshed ${new Date().toLocaleTimeString()}`;
    const rows = (out.Sessions || []).map((s) => {
      const prev = last.get(s.Id);
      const kbps = prev && s.DurationMs > prev.DurationMs ? ((s.Bytes - prev.Bytes) * 8) / (s.DurationMs - prev.DurationMs) : (s.Bytes * 8) / Math.max(1, s.DurationMs);
      last.set(s.Id, s);
      const name = (arn) => arn.split("/")[1] || arn;
      return h("tr", { "data-channel": name(s.ChannelARN) },
        h("td", {}, name(s.ChannelARN)), h("td", {}, name(s.StreamARN)), h("td", {}, s.Master || "—"),
        h("td", { class: "viewers" }, s.Viewers == null ? "—" : String(s.Viewers)),
        h("td", {}, `${Math.round(s.DurationMs / 1000)} s`), h("td", {}, `${Math.round(kbps)} kbit/s`),
        h("td", {}, s.Loss == null ? "—" : `${(s.Loss * 100).toFixed(1)} %`),
        h("td", {}, s.JitterMs == null ? "—" : `${s.JitterMs.toFixed(1)} ms`),
        h("td", { class: "fragments" }, String(s.Fragments)), h("td", {}, String(s.Nacks)), h("td", {}, String(s.Plis)));
    });
    body.replaceChildren(...(rows.length ? rows : [h("tr", {}, h("td", { colspan: 11, class: "muted" }, "No storage sessions on this node."))]));
  }
  await refresh();
  show(h("h1", {}, "Storage sessions"), h("p", {}, node), table);
  sessionsTimer = setInterval(() => refresh().catch(say), 3000);
}

// ---- master ----------------------------------------------------------------------------

let stopMaster = null;
async function masterPage(params) {
  const channels = await listAll("/listSignalingChannels", "ChannelInfoList");
  const pick = h("select", { id: "master-channel" }, channels.map((c) =>
    h("option", { value: c.ChannelName, selected: c.ChannelName === params.get("channel") }, c.ChannelName)));
  const sendVideo = h("input", { type: "checkbox", id: "send-video", checked: true });
  const sendAudio = h("input", { type: "checkbox", id: "send-audio", checked: true });
  const start = h("button", { type: "button", id: "start-master" }, "Start master");
  const stop = h("button", { type: "button", class: "secondary", id: "stop-master", disabled: true }, "Stop");
  const preview = h("video", { id: "preview", autoplay: true, muted: true, playsinline: true });
  const state = h("dl", {});
  const status = (pairs) => state.replaceChildren(...pairs.flatMap(([k, v]) => [h("dt", {}, k), h("dd", { id: `master-${k.toLowerCase().replace(/\W+/g, "-")}` }, v)]));
  status([["State", "stopped"]]);
  start.addEventListener("click", () => {
    say(null);
    start.disabled = true;
    stop.disabled = false;
    runMaster(pick.value, sendVideo.checked, sendAudio.checked, preview, status)
      .then((stopper) => { stopMaster = stopper; })
      .catch((e) => { say(e); start.disabled = false; stop.disabled = true; });
  });
  stop.addEventListener("click", () => { if (stopMaster) stopMaster(); stopMaster = null; start.disabled = false; stop.disabled = true; });
  show(h("h1", {}, "Master: ingest and storage"),
    h("div", { class: "card" }, field("Signaling channel", pick),
      h("label", {}, sendVideo, " Send video"), h("label", {}, sendAudio, " Send audio"),
      h("p", { class: "muted" }, "Connects as the channel's master; with media storage enabled it calls JoinStorageSession and reel's storage peer joins, ingests and stores."),
      h("div", { class: "toolbar" }, start, stop)),
    preview, state);
}

/** The JS SDK's master flow with storage (the SDK sample's `connectToMediaServer`). */
async function runMaster(channelName, video, audio, preview, status) {
  await loadScript("/console/kvs-webrtc.min.js");
  const c = credentials();
  const { ChannelInfo: ch } = await call("/describeSignalingChannel", { ChannelName: channelName });
  const storage = (await call("/describeMediaStorageConfiguration", { ChannelARN: ch.ChannelARN })).MediaStorageConfiguration || {};
  const storageOn = storage.Status === "ENABLED";
  const ep = await call("/getSignalingChannelEndpoint", { ChannelARN: ch.ChannelARN,
    SingleMasterChannelEndpointConfiguration: { Protocols: storageOn ? ["WSS", "HTTPS", "WEBRTC"] : ["WSS", "HTTPS"], Role: "MASTER" } });
  const endpoints = Object.fromEntries((ep.ResourceEndpointList || []).map((e) => [e.Protocol, e.ResourceEndpoint]));
  const media = await navigator.mediaDevices.getUserMedia({ video, audio });
  // A camera keeps its resolution ("detail": degrade frame rate, not size), so the stored
  // stream does not change its track header mid-session when the browser is busy.
  media.getVideoTracks().forEach((t) => { t.contentHint = "detail"; });
  preview.srcObject = media;
  const signaling = new window.KVSWebRTC.SignalingClient({
    channelARN: ch.ChannelARN, channelEndpoint: endpoints.WSS, role: window.KVSWebRTC.Role.MASTER, region: c.region,
    credentials: { accessKeyId: c.accessKeyId, secretAccessKey: c.secretAccessKey, sessionToken: c.sessionToken },
    systemClockOffset: 0 });
  let pc = null, timer = null, joined = false, stopped = false, prev = null;
  status([["State", "connecting signaling"], ["Storage", storageOn ? `enabled → ${storage.StreamARN}` : "disabled"]]);
  async function join() {
    while (storageOn && !joined && !stopped) {
      try { await call("/joinStorageSession", { channelArn: ch.ChannelARN }, endpoints.WEBRTC); }
      catch (e) { say(e); if (e.status && e.status < 500 && e.status !== 400) return; }
      await new Promise((r) => setTimeout(r, 6000));
    }
  }
  signaling.on("open", () => { status([["State", "signaling connected"], ["Storage", storageOn ? "joining" : "disabled"]]); join(); });
  signaling.on("sdpOffer", async (offer, remoteClientId) => {
    joined = true;
    if (pc) pc.close();
    pc = new RTCPeerConnection({ iceServers: [] });
    media.getTracks().forEach((t) => pc.addTrack(t, media));
    pc.onicecandidate = ({ candidate }) => { if (candidate) signaling.sendIceCandidate(candidate, remoteClientId); };
    signaling.on("iceCandidate", (cand) => pc && pc.addIceCandidate(cand).catch(() => {}));
    pc.onconnectionstatechange = () => status([["State", pc.connectionState], ["Storage", storageOn ? "storage peer joined" : "disabled"]]);
    await pc.setRemoteDescription(offer);
    await pc.setLocalDescription(await pc.createAnswer());
    signaling.sendSdpAnswer(pc.localDescription, remoteClientId);
    timer = setInterval(async () => {
      if (!pc) return;
      let bytes = 0, lost = 0, packets = 0;
      (await pc.getStats()).forEach((r) => {
        if (r.type === "outbound-rtp") { bytes += r.bytesSent || 0; packets += r.packetsSent || 0; }
        if (r.type === "remote-inbound-rtp") lost += r.packetsLost || 0;
      });
      const now = performance.now();
      const kbps = prev ? ((bytes - prev.bytes) * 8) / (now - prev.t) : 0;
      prev = { bytes, t: now };
      status([["State", pc.connectionState], ["Outbound bitrate", `${Math.round(kbps)} kbit/s`],
        ["Packets sent", String(packets)], ["Packets lost", String(lost)]]);
    }, 1000);
  });
  signaling.on("close", () => { if (!stopped) status([["State", "signaling closed"]]); });
  signaling.on("error", (e) => say(e));
  signaling.open();
  return () => {
    stopped = true;
    clearInterval(timer);
    if (pc) pc.close();
    signaling.close();
    media.getTracks().forEach((t) => t.stop());
    status([["State", "stopped"]]);
  };
}

function loadScript(src) {
  if (document.querySelector(`script[src="${src}"]`)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const s = h("script", { src });
    s.onload = resolve;
    s.onerror = () => reject(new Error(`cannot load ${src}`));
    document.head.append(s);
  });
}

// ---- viewer ------------------------------------------------------------------------------

let hls = null;
/** The live WebRTC viewer playing in the media viewer ({stop}), if any. */
let live = null;
function stopPlayback() {
  if (hls) { hls.destroy(); hls = null; }
  if (live) { live.stop(); live = null; }
}
const localInput = (ms) => { const d = new Date(ms); return new Date(d - d.getTimezoneOffset() * 60000).toISOString().slice(0, 19); };

async function viewerPage(params) {
  const streams = await listAll("/listStreams", "StreamInfoList");
  const pick = h("select", { id: "viewer-stream" }, streams.map((s) =>
    h("option", { value: s.StreamName, selected: s.StreamName === params.get("stream") }, s.StreamName)));
  const liveHls = h("input", { type: "radio", name: "mode", value: "LIVE", id: "mode-live", checked: params.get("mode") !== "webrtc" });
  const onDemand = h("input", { type: "radio", name: "mode", value: "ON_DEMAND", id: "mode-on-demand" });
  const liveRtc = h("input", { type: "radio", name: "mode", value: "WEBRTC", id: "mode-webrtc", checked: params.get("mode") === "webrtc" });
  const now = Date.now();
  const from = h("input", { type: "datetime-local", step: 1, id: "viewer-from", value: localInput(now - 10 * 60000) });
  const to = h("input", { type: "datetime-local", step: 1, id: "viewer-to", value: localInput(now) });
  const play = h("button", { type: "button", id: "viewer-play" }, "Play");
  const stop = h("button", { type: "button", class: "secondary", id: "viewer-stop" }, "Stop");
  const clip = h("button", { type: "button", class: "secondary", id: "viewer-clip" }, "Download clip (MP4)");
  const video = h("video", { id: "viewer-video", controls: true, muted: true, playsinline: true });
  const bar = h("div", { id: "timeline", class: "timeline", role: "list", "aria-label": "Stored fragments" });
  const stills = h("div", { id: "stills", class: "stills", role: "list", "aria-label": "Stills of the stored video" });
  const info = h("p", { class: "muted", id: "viewer-status", "aria-live": "polite" });
  const link = h("a", { id: "clip-link", hidden: true }, "clip.mp4");
  const range = () => {
    if (!onDemand.checked) return [Date.now() - 120000, Date.now()];
    return [new Date(from.value).getTime(), new Date(to.value).getTime()];
  };
  async function start(mode, startMs, endMs) {
    say(null);
    const body = { StreamName: pick.value, PlaybackMode: mode, ContainerFormat: "FRAGMENTED_MP4", Expires: 3600 };
    if (mode === "ON_DEMAND") {
      body.HLSFragmentSelector = { FragmentSelectorType: "PRODUCER_TIMESTAMP",
        TimestampRange: { StartTimestamp: startMs / 1000, EndTimestamp: endMs / 1000 } };
    }
    const out = await call("/getHLSStreamingSessionURL", body);
    await loadScript("/viewer/hls.light.min.js");
    stopPlayback();
    video.srcObject = null;
    hls = new window.Hls({ liveSyncDurationCount: 2, manifestLoadingMaxRetry: 2 });
    hls.on(window.Hls.Events.ERROR, (_, d) => { if (d.fatal) say(new Error(`Playback problem: ${d.details}`)); });
    hls.on(window.Hls.Events.MANIFEST_PARSED, () => video.play().catch((e) => say(e)));
    hls.loadSource(out.HLSStreamingSessionURL);
    hls.attachMedia(video);
    info.textContent = `Playing ${pick.value} (${mode === "LIVE" ? "live" : `from ${new Date(startMs).toLocaleString()}`})`;
  }
  /** Live (WebRTC): the storage session of the channel that stores into the stream. */
  async function startLive() {
    say(null);
    const mapped = await call("/describeMappedResourceConfiguration", { StreamName: pick.value });
    const channel = (mapped.MappedResourceConfigurationList || []).find((m) => m.Type === "SIGNALING_CHANNEL");
    if (!channel) throw new Error(`No signaling channel stores into ${pick.value}: enable media storage on a channel for this stream first.`);
    stopPlayback();
    const channelName = channel.ARN.split("/")[1] || channel.ARN;
    const c = credentials();
    info.textContent = `Live (WebRTC) from ${channelName}: connecting`;
    const session = await watchLive({ call, credentials: c, channelArn: channel.ARN, video,
      onState: (s) => { info.textContent = `Live (WebRTC) from ${channelName}: ${s}`; video.dataset.webrtc = s; },
      onError: (e) => say(e) });
    live = session;
    video.dataset.clientId = session.clientId;
  }
  async function drawTimeline(startMs, endMs) {
    const out = await call("/listFragments", { StreamName: pick.value, MaxResults: 1000,
      FragmentSelector: { FragmentSelectorType: "PRODUCER_TIMESTAMP", TimestampRange: { StartTimestamp: startMs / 1000, EndTimestamp: endMs / 1000 } } });
    const frags = (out.Fragments || []).sort((a, b) => a.ProducerTimestamp - b.ProducerTimestamp);
    const span = Math.max(1, endMs - startMs);
    let prevEnd = null;
    const items = [];
    for (const f of frags) {
      const t = f.ProducerTimestamp * 1000, d = f.FragmentLengthInMilliseconds;
      if (prevEnd !== null && t - prevEnd > 50) {
        items.push(h("div", { class: "gap", style: { left: `${((prevEnd - startMs) / span) * 100}%`, width: `${((t - prevEnd) / span) * 100}%` },
          title: `gap of ${Math.round(t - prevEnd)} ms` }));
      }
      items.push(h("button", { type: "button", class: "fragment", role: "listitem", "data-ms": t,
        style: { left: `${((t - startMs) / span) * 100}%`, width: `${Math.max(0.3, (d / span) * 100)}%` },
        title: `${new Date(t).toLocaleString()} · ${d} ms · ${f.FragmentNumber}`,
        "aria-label": `Play from ${new Date(t).toLocaleString()}`,
        onclick: () => { onDemand.checked = true; start("ON_DEMAND", t, endMs).catch(say); } }));
      prevEnd = t + d;
    }
    bar.replaceChildren(...items);
    bar.dataset.fragments = String(frags.length);
    bar.title = `${frags.length} fragment(s)`;
  }
  /** Up to 8 stills (GetImages, 160 px wide) across the range's last 300 s; a click plays from there. */
  async function drawStills(startMs, endMs) {
    const from = Math.max(startMs, endMs - 300000);
    const out = await call("/getImages", { StreamName: pick.value, ImageSelectorType: "PRODUCER_TIMESTAMP",
      StartTimestamp: from / 1000, EndTimestamp: endMs / 1000, SamplingInterval: Math.max(200, Math.ceil((endMs - from) / 8)),
      Format: "JPEG", WidthPixels: 160, MaxResults: 25 });
    const shown = (out.Images || []).filter((i) => i.ImageContent);
    stills.replaceChildren(...shown.map((i) => {
      const t = Math.round(i.TimeStamp * 1000);
      return h("button", { type: "button", class: "still", role: "listitem", title: new Date(t).toLocaleString(),
        "aria-label": `Play from ${new Date(t).toLocaleString()}`,
        onclick: () => { onDemand.checked = true; start("ON_DEMAND", t, endMs).catch(say); } },
        h("img", { src: `data:image/jpeg;base64,${i.ImageContent}`, alt: new Date(t).toLocaleTimeString() }));
    }));
    stills.dataset.images = String(shown.length);
  }
  play.addEventListener("click", async () => {
    const [startMs, endMs] = range();
    if (!(endMs > startMs)) { say(new Error("The end of the range must be after its start.")); return; }
    try {
      if (liveRtc.checked) await startLive();
      else await start(liveHls.checked ? "LIVE" : "ON_DEMAND", startMs, endMs);
      await drawTimeline(startMs, endMs);
      await drawStills(startMs, endMs);
    } catch (e) { say(e); }
  });
  stop.addEventListener("click", () => {
    stopPlayback();
    video.removeAttribute("src");
    video.srcObject = null;
    video.load();
    info.textContent = "Stopped";
  });
  clip.addEventListener("click", async () => {
    const [startMs, endMs] = range();
    say(null);
    try {
      const blob = await callBlob("/getClip", { StreamName: pick.value, ClipFragmentSelector: { FragmentSelectorType: "PRODUCER_TIMESTAMP",
        TimestampRange: { StartTimestamp: startMs / 1000, EndTimestamp: endMs / 1000 } } });
      link.href = URL.createObjectURL(blob);
      link.download = `${pick.value}-${new Date(startMs).toISOString().replace(/[:.]/g, "-")}.mp4`;
      link.textContent = `${link.download} (${Math.round(blob.size / 1024)} KiB)`;
      link.hidden = false;
      link.click();
    } catch (e) { say(e); }
  });
  show(h("h1", {}, "Media viewer"),
    h("div", { class: "card" }, field("Video stream", pick),
      h("fieldset", { class: "toolbar" }, h("legend", {}, "Playback mode"),
        h("label", {}, liveHls, " Live (HLS)"), h("label", {}, onDemand, " On demand (HLS)"), h("label", {}, liveRtc, " Live (WebRTC)"),
        field("From", from), field("To", to)),
      h("div", { class: "toolbar" }, play, stop, clip, link), info),
    video, bar, stills);
}

// ---- router ----------------------------------------------------------------------------

async function route() {
  clearInterval(sessionsTimer);
  stopPlayback();
  if (stopMaster) { stopMaster(); stopMaster = null; }
  const [path, query] = (location.hash.slice(1) || "/channels").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const c = credentials();
  document.getElementById("who").textContent = c ? `${c.accessKeyId} @ ${c.region}` : "";
  for (const a of document.querySelectorAll("header nav a")) {
    if (a.dataset.nav === parts[0]) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  if (!c || parts[0] === "signin") return signInPage();
  const started = performance.now();
  try {
    switch (parts[0]) {
      case "channels": await (parts[1] === "new" ? createChannelPage() : parts[1] ? channelPage(parts[1]) : channelsPage()); break;
      case "streams": await (parts[1] === "new" ? createStreamPage() : parts[1] ? streamPage(parts[1]) : streamsPage()); break;
      case "sessions": await sessionsPage(); break;
      case "master": await masterPage(new URLSearchParams(query || "")); break;
      case "viewer": await viewerPage(new URLSearchParams(query || "")); break;
      default: location.hash = "#/channels"; return;
    }
    document.body.dataset.rendered = `${parts.join("/")}:${Math.round(performance.now() - started)}`;
  } catch (e) {
    say(e);
    show(h("p", {}, h("a", { href: "#/signin" }, "Sign in again")));
  }
}

window.addEventListener("hashchange", () => { say(null); route(); });
route();
