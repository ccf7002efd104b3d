// AWS Signature Version 4 for the KVS JSON APIs, with WebCrypto (a secure context:
// https:// or localhost). Credentials come from sessionStorage only.
const enc = (s) => new TextEncoder().encode(s);
const hex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, "0")).join("");
async function sha256(data) { return hex(await crypto.subtle.digest("SHA-256", typeof data === "string" ? enc(data) : data)); }
async function hmac(key, data) {
  const k = await crypto.subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", k, enc(data)));
}

const KEY = "reel-console-credentials";

/** The signed-in credentials ({endpoint, region, accessKeyId, secretAccessKey, sessionToken}) or null. */
export function credentials() {
  try { return JSON.parse(sessionStorage.getItem(KEY) || "null"); } catch { return null; }
}
export function signIn(c) { sessionStorage.setItem(KEY, JSON.stringify(c)); }
export function signOut() { sessionStorage.removeItem(KEY); }

/** An API error in the KVS shape: `name` is the exception (e.g. AccessDeniedException). */
export class KvsError extends Error {
  constructor(name, message, status) { super(message); this.name = name; this.status = status; }
}

/** POSTs `body` as JSON to `path` on `base` (default: the signed-in endpoint), SigV4-signed. */
export async function call(path, body = {}, base) {
  const res = await send(path, body, base);
  const text = await res.text();
  let json = {};
  try { json = text ? JSON.parse(text) : {}; } catch { json = {}; }
  if (!res.ok) throw errorOf(res, json, text);
  return json;
}

/** As `call`, for operations answering media (GetClip): the body as a Blob. */
export async function callBlob(path, body = {}, base) {
  const res = await send(path, body, base);
  if (!res.ok) {
    const text = await res.text();
    let json = {};
    try { json = text ? JSON.parse(text) : {}; } catch { json = {}; }
    throw errorOf(res, json, text);
  }
  return res.blob();
}

function errorOf(res, json, text) {
  const name = (json.__type || res.headers.get("x-amzn-ErrorType") || `HTTP${res.status}`).split("#").pop().split(":")[0];
  return new KvsError(name, json.message || json.Message || text || res.statusText, res.status);
}

async function send(path, body, base) {
  const c = credentials();
  if (!c) throw new KvsError("NotSignedIn", "Sign in first.", 0);
  if (!window.crypto || !crypto.subtle) throw new KvsError("InsecureContext", "Signing needs https:// or localhost.", 0);
  const url = new URL(path, base || c.endpoint);
  const payload = JSON.stringify(body);
  const amzDate = new Date().toISOString().replace(/[:-]|\.\d{3}/g, "");
  const day = amzDate.slice(0, 8);
  const hash = await sha256(payload);
  const headers = { "content-type": "application/json", host: url.host, "x-amz-content-sha256": hash, "x-amz-date": amzDate };
  if (c.sessionToken) headers["x-amz-security-token"] = c.sessionToken;
  const names = Object.keys(headers).sort();
  const canonical = ["POST", url.pathname, "", names.map((n) => `${n}:${headers[n]}\n`).join(""), names.join(";"), hash].join("\n");
  const scope = `${day}/${c.region}/kinesisvideo/aws4_request`;
  const toSign = ["AWS4-HMAC-SHA256", amzDate, scope, await sha256(canonical)].join("\n");
  let key = await hmac(enc("AWS4" + c.secretAccessKey), day);
  for (const part of [c.region, "kinesisvideo", "aws4_request"]) key = await hmac(key, part);
  const signature = hex(await hmac(key, toSign));
  delete headers.host;
  headers.authorization = `AWS4-HMAC-SHA256 Credential=${c.accessKeyId}/${scope}, SignedHeaders=${names.join(";")}, Signature=${signature}`;
  try { return await fetch(url, { method: "POST", headers, body: payload }); }
  catch (e) { throw new KvsError("NetworkError", `Cannot reach ${url.origin}: ${e.message}`, 0); }
}
