#!/usr/bin/python3
"""KVS WebRTC *master* built on GStreamer webrtcbin, for reel's ingestion tests.

Run with the system Python (python3-gi, python3-websockets; see tests/e2e/install.sh) by
tests/ingest_gstreamer.rs. It follows the KVS master flow for WebRTC ingestion
(docs/kvs-wire.md §4.3):

1. ConnectAsMaster: WebSocket to the WSS endpoint, SigV4 query-presigned (service
   `kinesisvideo`, X-Amz-Expires=299, SignedHeaders=host), like the JS SDK.
2. Once open, POST <WEBRTC>/joinStorageSession {"channelArn"} (SigV4 header-signed), and
   again every 6 s until an SDP_OFFER arrives (like the C SDK).
3. On the storage peer's SDP_OFFER (no senderClientId): build the pipeline (videotestsrc →
   x264enc constrained-baseline → rtph264pay, audiotestsrc → opusenc → rtpopuspay, payload
   types taken from the offer), set the remote offer, answer, and send SDP_ANSWER and trickled
   ICE_CANDIDATE messages without recipientClientId; add the peer's candidates (also those
   that arrive before the offer).
4. Stream for --seconds after webrtcbin reports connection-state "connected", then exit 0.

GStreamer 1.22 specifics handled here: the pipeline plays only after the offer is applied
(webrtcbin asserts if RTP arrives first), the answer waits for RTP caps (so it carries a=ssrc
and the SPS's profile-level-id), and the DTLS certificate is ECDSA P-256 (--dtls-cert) like
browsers', since GStreamer's default is RSA.

Progress goes to stdout as one JSON object per line ({"event": ...}); the last line is
{"event":"done",...} on success or {"event":"error","error":...} (exit status 1).
"""

import argparse
import asyncio
import base64
import datetime
import hashlib
import hmac
import json
import re
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import Gst, GstSdp, GstWebRTC  # noqa: E402

import websockets  # noqa: E402

SERVICE = "kinesisvideo"
JOIN_RETRY_S = 6.0


def emit(event, **fields):
    print(json.dumps({"event": event, "t": round(time.monotonic(), 3), **fields}), flush=True)


# ---------------------------------------------------------------- SigV4 (stdlib only)

def _sign(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def _signing_key(secret, date, region):
    k = _sign(("AWS4" + secret).encode(), date)
    k = _sign(k, region)
    k = _sign(k, SERVICE)
    return _sign(k, "aws4_request")


def _quote(s):
    return urllib.parse.quote(s, safe="-_.~")


def presign_wss(endpoint, channel_arn, region, akid, secret, now=None):
    """The ConnectAsMaster URL, presigned exactly like the JS SDK's SigV4RequestSigner."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    date = now.strftime("%Y%m%d")
    u = urllib.parse.urlsplit(endpoint)
    path = u.path or "/"
    scope = f"{date}/{region}/{SERVICE}/aws4_request"
    params = {
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-ChannelARN": channel_arn,
        "X-Amz-Credential": f"{akid}/{scope}",
        "X-Amz-Date": amz_date,
        "X-Amz-Expires": "299",
        "X-Amz-SignedHeaders": "host",
    }
    query = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in sorted(params.items()))
    canonical = "\n".join(["GET", path, query, f"host:{u.netloc}\n", "host", hashlib.sha256(b"").hexdigest()])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    sig = hmac.new(_signing_key(secret, date, region), to_sign.encode(), hashlib.sha256).hexdigest()
    return f"{u.scheme}://{u.netloc}{path}?{query}&X-Amz-Signature={sig}"


def signed_post(url, body, region, akid, secret, ssl_ctx, timeout=6.0):
    """POST a JSON body with SigV4 header signing; returns (status, response text)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    date = now.strftime("%Y%m%d")
    u = urllib.parse.urlsplit(url)
    data = json.dumps(body).encode()
    scope = f"{date}/{region}/{SERVICE}/aws4_request"
    canonical = "\n".join([
        "POST", u.path or "/", "",
        f"content-type:application/json\nhost:{u.netloc}\nx-amz-date:{amz_date}\n",
        "content-type;host;x-amz-date", hashlib.sha256(data).hexdigest(),
    ])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    sig = hmac.new(_signing_key(secret, date, region), to_sign.encode(), hashlib.sha256).hexdigest()
    req = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/json",
        "X-Amz-Date": amz_date,
        "Authorization": f"AWS4-HMAC-SHA256 Credential={akid}/{scope}, "
                         f"SignedHeaders=content-type;host;x-amz-date, Signature={sig}",
    })
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ssl_ctx) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


# ---------------------------------------------------------------- DTLS certificate

def ecdsa_pem():
    """A fresh self-signed ECDSA P-256 certificate + key (PEM), made with the openssl CLI.

    GStreamer 1.22 generates RSA-2048 DTLS certificates; browsers and the KVS C SDK use ECDSA
    by default, and reel's DTLS stack (str0m/dimpl) supports ECDSA only.
    """
    with tempfile.TemporaryDirectory() as d:
        key, cert = f"{d}/key.pem", f"{d}/cert.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=gst-master"],
                       check=True, capture_output=True)
        return open(cert).read() + open(key).read()


def pem_fingerprint(pem):
    """SDP fingerprint (sha-256, colon-separated upper hex) of the certificate in `pem`."""
    b64 = re.search(r"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", pem, re.S).group(1)
    digest = hashlib.sha256(base64.b64decode("".join(b64.split()))).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


# ---------------------------------------------------------------- SDP helpers

def payload_types(sdp_text):
    """(H.264 PT preferring packetization-mode=1 constrained baseline, Opus PT) from an offer."""
    rtpmap = dict(re.findall(r"a=rtpmap:(\d+) ([^\r\n]+)", sdp_text))
    fmtp = dict(re.findall(r"a=fmtp:(\d+) ([^\r\n]+)", sdp_text))
    h264 = [pt for pt, enc in rtpmap.items() if enc.upper().startswith("H264/")]
    opus = [pt for pt, enc in rtpmap.items() if enc.upper().startswith("OPUS/")]

    def score(pt):
        f = fmtp.get(pt, "").lower()
        return (("packetization-mode=1" in f) * 2) + ("profile-level-id=42e01f" in f)

    h264.sort(key=score, reverse=True)
    return (int(h264[0]) if h264 else None, int(opus[0]) if opus else None)


def mids(sdp_text):
    return re.findall(r"a=mid:([^\r\n]+)", sdp_text)


# ---------------------------------------------------------------- the master

class Master:
    def __init__(self, args, loop):
        self.args = args
        self.loop = loop
        self.ws = None
        self.pipe = None
        self.webrtc = None
        self.offer_sdp = None
        self.offer_event = asyncio.Event()
        self.connected_at = None
        self.finished = loop.create_future()
        self.pending_remote = []  # candidates received before the pipeline exists
        self.sent_candidates = 0
        self.recv_candidates = 0
        self.incoming_buffers = 0  # RTP depayloaded from the peer (talk-back audio)
        # Made up front: on_offer must reach set-remote-description quickly once the pipeline
        # plays (webrtcbin 1.22 asserts if RTP reaches it before the offer created its streams).
        self.dtls_pem = ecdsa_pem() if args.dtls_cert == "ecdsa" else None
        self.ssl_ctx = None
        if args.ca_file:
            self.ssl_ctx = ssl.create_default_context(cafile=args.ca_file)

    # --- thread-safe helpers (GStreamer signals arrive on streaming threads)
    def call(self, fn, *a):
        self.loop.call_soon_threadsafe(fn, *a)

    def fail(self, error):
        if not self.finished.done():
            self.finished.set_exception(RuntimeError(error))

    async def send(self, action, payload):
        msg = {"action": action, "messagePayload": base64.b64encode(json.dumps(payload).encode()).decode()}
        await self.ws.send(json.dumps(msg))

    # --- signaling
    async def run(self):
        url = presign_wss(self.args.wss_endpoint, self.args.channel_arn, self.args.region,
                          self.args.access_key_id, self.args.secret_access_key)
        async with websockets.connect(url, ssl=self.ssl_ctx if url.startswith("wss:") else None,
                                      max_size=None, open_timeout=15) as ws:
            self.ws = ws
            emit("signaling_connected")
            reader = asyncio.ensure_future(self.read_loop())
            joiner = asyncio.ensure_future(self.join_loop())
            bus = asyncio.ensure_future(self.bus_loop())
            try:
                return await asyncio.wait_for(self.finished, timeout=self.args.timeout)
            except asyncio.TimeoutError:
                raise RuntimeError(f"not done within {self.args.timeout} s "
                                   f"(offer received: {self.offer_sdp is not None}, connected: {self.connected_at is not None})")
            finally:
                for t in (reader, joiner, bus):
                    t.cancel()
                if self.pipe is not None:
                    self.pipe.set_state(Gst.State.NULL)

    async def join_loop(self):
        url = self.args.webrtc_endpoint.rstrip("/") + "/joinStorageSession"
        deadline = time.monotonic() + self.args.offer_timeout
        attempt = 0
        while not self.offer_event.is_set():
            attempt += 1
            status, body = await self.loop.run_in_executor(
                None, signed_post, url, {"channelArn": self.args.channel_arn}, self.args.region,
                self.args.access_key_id, self.args.secret_access_key, self.ssl_ctx)
            emit("join_storage_session", attempt=attempt, status=status, body=body[:300])
            if status != 200 and status < 500 and status not in (400,):
                # 4xx other than ClientLimitExceeded (400) will not change by retrying.
                self.fail(f"JoinStorageSession failed: HTTP {status} {body[:300]}")
                return
            try:
                await asyncio.wait_for(self.offer_event.wait(), timeout=JOIN_RETRY_S)
            except asyncio.TimeoutError:
                pass
            if time.monotonic() > deadline and not self.offer_event.is_set():
                self.fail(f"no SDP_OFFER received within {self.args.offer_timeout} s after "
                          f"{attempt} JoinStorageSession call(s) (last: HTTP {status} {body[:200]})")
                return

    async def read_loop(self):
        async for raw in self.ws:
            try:
                msg = json.loads(raw)
            except ValueError:
                emit("signaling_unparsed", raw=str(raw)[:200])
                continue
            kind = msg.get("messageType")
            payload = None
            if msg.get("messagePayload"):
                payload = json.loads(base64.b64decode(msg["messagePayload"]))
            if kind == "SDP_OFFER":
                if self.offer_sdp is not None:
                    emit("extra_offer_ignored", sender=msg.get("senderClientId"))
                    continue
                emit("sdp_offer", sender=msg.get("senderClientId"), chars=len(payload["sdp"]))
                if self.args.log_sdp:
                    emit("sdp_offer_text", sdp=payload["sdp"])
                self.offer_sdp = payload["sdp"]
                self.offer_event.set()
                self.on_offer(payload["sdp"])
            elif kind == "ICE_CANDIDATE":
                self.recv_candidates += 1
                if self.webrtc is None:
                    self.pending_remote.append(payload)
                else:
                    self.add_remote(payload)
            elif kind == "STATUS_RESPONSE":
                emit("status_response", status=msg.get("statusResponse"))
            else:
                emit("signaling_message", messageType=kind, sender=msg.get("senderClientId"))
        self.fail("signaling WebSocket closed")

    async def bus_loop(self):
        while True:
            await asyncio.sleep(0.1)
            if self.pipe is None:
                continue
            bus = self.pipe.get_bus()
            while True:
                m = bus.pop_filtered(Gst.MessageType.ERROR | Gst.MessageType.WARNING | Gst.MessageType.EOS)
                if m is None:
                    break
                if m.type == Gst.MessageType.ERROR:
                    err, dbg = m.parse_error()
                    self.fail(f"GStreamer error from {m.src.get_name()}: {err.message} ({dbg})")
                elif m.type == Gst.MessageType.WARNING:
                    w, dbg = m.parse_warning()
                    emit("gst_warning", src=m.src.get_name(), message=w.message)

    # --- WebRTC
    def on_offer(self, sdp_text):
        h264_pt, opus_pt = payload_types(sdp_text)
        if h264_pt is None or opus_pt is None:
            self.fail(f"offer lacks H.264 or Opus (h264 pt {h264_pt}, opus pt {opus_pt})")
            return
        a = self.args
        desc = (
            f"webrtcbin name=webrtc bundle-policy=max-bundle latency=100 "
            f"videotestsrc is-live=true pattern=ball ! video/x-raw,width={a.width},height={a.height},framerate={a.fps}/1 "
            f"! videoconvert ! queue ! x264enc tune=zerolatency speed-preset=ultrafast bitrate={a.video_kbps} "
            f"key-int-max={a.key_int} ! video/x-h264,profile=constrained-baseline ! h264parse "
            f"! rtph264pay config-interval=-1 aggregate-mode=zero-latency "
            f"! application/x-rtp,media=video,encoding-name=H264,payload={h264_pt},clock-rate=90000,"
            f"packetization-mode=(string)1,profile-level-id=(string){a.profile_level_id} ! webrtc. "
            f"audiotestsrc is-live=true wave=sine freq=440 ! audioconvert ! audioresample ! queue "
            f"! opusenc bitrate=32000 ! rtpopuspay "
            f"! application/x-rtp,media=audio,encoding-name=OPUS,payload={opus_pt},clock-rate=48000 ! webrtc. "
        )
        emit("pipeline", h264_pt=h264_pt, opus_pt=opus_pt)
        self.pipe = Gst.parse_launch(desc)
        if self.args.dtls_cert == "ecdsa":
            # webrtcbin 1.22 has no certificate setting: give the DTLS decoder (which owns the
            # connection's certificate) our PEM as it is created, and announce the matching
            # fingerprint in the answer (webrtcbin would announce its own RSA one).
            def on_element(_bin, _sub, element):
                factory = element.get_factory()
                if factory is not None and factory.get_name() == "dtlssrtpdec":
                    element.set_property("pem", self.dtls_pem)

            self.pipe.connect("deep-element-added", on_element)
        self.webrtc = self.pipe.get_by_name("webrtc")
        self.webrtc.connect("on-ice-candidate", self.on_ice_candidate)
        self.webrtc.connect("notify::connection-state", self.on_connection_state)
        self.webrtc.connect("notify::ice-connection-state", self.on_ice_state)
        self.webrtc.connect("pad-added", self.on_incoming_pad)
        # Live sources produce nothing before PLAYING: start only once the offer has created
        # webrtcbin's streams (webrtcbin 1.22 asserts if RTP arrives before that).
        self.pipe.set_state(Gst.State.PAUSED)
        ok, sdpmsg = GstSdp.SDPMessage.new_from_text(sdp_text)
        if ok != GstSdp.SDPResult.OK:
            self.fail("cannot parse the offer SDP")
            return
        offer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.OFFER, sdpmsg)
        promise = Gst.Promise.new_with_change_func(self.on_remote_set, None)
        self.webrtc.emit("set-remote-description", offer, promise)

    def on_remote_set(self, promise, _data):
        promise.wait()
        reply = promise.get_reply()
        if reply is not None and reply.has_field("error"):
            self.call(self.fail, f"set-remote-description(offer) failed: {reply.get_value('error')}")
            return
        self.pipe.set_state(Gst.State.PLAYING)
        for c in self.pending_remote:
            self.add_remote(c)
        self.pending_remote = []
        # Answer once RTP caps (with SSRC and, for H.264, sprop-parameter-sets) reached
        # webrtcbin: an answer without a=ssrc lines leaves a receiver that does not use the mid
        # header extension unable to demultiplex the bundle.
        deadline = time.monotonic() + (5 if self.args.answer_after_caps else 0)
        while time.monotonic() < deadline:
            caps = [p.get_current_caps() for p in self.webrtc.sinkpads]
            if caps and all(c is not None and c.get_structure(0).has_field("ssrc") for c in caps):
                break
            time.sleep(0.02)
        self.webrtc.emit("create-answer", None, Gst.Promise.new_with_change_func(self.on_answer, None))

    def on_answer(self, promise, _data):
        promise.wait()
        reply = promise.get_reply()
        answer = reply.get_value("answer") if reply is not None else None
        if answer is None:
            err = reply.get_value("error") if reply is not None and reply.has_field("error") else None
            self.call(self.fail, f"create-answer failed: {err}")
            return
        self.webrtc.emit("set-local-description", answer, Gst.Promise.new())
        text = answer.sdp.as_text()
        if self.dtls_pem is not None:
            text = re.sub(r"a=fingerprint:[^\r\n]+", "a=fingerprint:sha-256 " + pem_fingerprint(self.dtls_pem), text)
        if self.args.log_sdp:
            emit("sdp_answer_text", sdp=text)
        self.call(lambda: asyncio.ensure_future(self.send("SDP_ANSWER", {"type": "answer", "sdp": text})))
        emit("sdp_answer_sent", chars=len(text))

    def add_remote(self, c):
        cand = c.get("candidate", "")
        if not cand:
            return
        idx = c.get("sdpMLineIndex")
        if idx is None:
            mid_list = mids(self.offer_sdp or "")
            idx = mid_list.index(c["sdpMid"]) if c.get("sdpMid") in mid_list else 0
        self.webrtc.emit("add-ice-candidate", int(idx), cand)

    def on_ice_candidate(self, _webrtc, mline, candidate):
        mid_list = mids(self.offer_sdp or "")
        mid = mid_list[mline] if mline < len(mid_list) else str(mline)
        payload = {"candidate": candidate, "sdpMid": mid, "sdpMLineIndex": mline}
        self.sent_candidates += 1
        self.call(lambda: asyncio.ensure_future(self.send("ICE_CANDIDATE", payload)))

    def on_incoming_pad(self, _webrtc, pad):
        """Media from the peer (a storage session's viewers' talk-back audio): counted and
        dropped into a fakesink, so an unlinked pad never stops the pipeline."""
        if pad.get_direction() != Gst.PadDirection.SRC:
            return
        sink = Gst.ElementFactory.make("fakesink", None)
        sink.set_property("sync", False)
        sink.set_property("async", False)
        self.pipe.add(sink)
        sink.sync_state_with_parent()
        pad.link(sink.get_static_pad("sink"))

        def count(_pad, _info):
            self.incoming_buffers += 1
            return Gst.PadProbeReturn.OK

        pad.add_probe(Gst.PadProbeType.BUFFER, count)
        emit("incoming_pad", caps=str(pad.get_current_caps() or pad.query_caps(None))[:200])

    def on_ice_state(self, webrtc, _pspec):
        emit("ice_connection_state", state=webrtc.get_property("ice-connection-state").value_nick)

    def on_connection_state(self, webrtc, _pspec):
        state = webrtc.get_property("connection-state")
        emit("connection_state", state=state.value_nick)
        if state == GstWebRTC.WebRTCPeerConnectionState.CONNECTED and self.connected_at is None:
            self.call(self.on_connected)
        elif state == GstWebRTC.WebRTCPeerConnectionState.FAILED:
            self.call(self.fail, "peer connection failed")

    def on_connected(self):
        self.connected_at = time.monotonic()
        self.loop.call_later(self.args.seconds, self.on_streamed)

    def on_streamed(self):
        streamed = time.monotonic() - self.connected_at
        if self.pipe is not None:
            self.pipe.set_state(Gst.State.NULL)
        if not self.finished.done():
            self.finished.set_result({"streamed_s": round(streamed, 3),
                                      "candidates_sent": self.sent_candidates,
                                      "candidates_received": self.recv_candidates,
                                      "incoming_buffers": self.incoming_buffers})


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--wss-endpoint", required=True)
    p.add_argument("--webrtc-endpoint", required=True)
    p.add_argument("--channel-arn", required=True)
    p.add_argument("--region", required=True)
    p.add_argument("--access-key-id", required=True)
    p.add_argument("--secret-access-key", required=True)
    p.add_argument("--ca-file", help="PEM CA to trust for wss:// and https://")
    p.add_argument("--seconds", type=float, default=10.0, help="stream this long after connecting")
    p.add_argument("--offer-timeout", type=float, default=30.0, help="give up without an SDP_OFFER")
    p.add_argument("--timeout", type=float, default=90.0, help="overall limit")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--key-int", type=int, default=15, help="frames between IDRs")
    p.add_argument("--video-kbps", type=int, default=600)
    p.add_argument("--profile-level-id", default="42c01e",
                   help="what x264enc's constrained-baseline SPS says for the size/rate (level 3.0 for 640x480@30); "
                        "announced in the answer since the pipeline only plays once the offer is applied")
    p.add_argument("--log-sdp", action="store_true")
    p.add_argument("--no-answer-after-caps", dest="answer_after_caps", action="store_false",
                   help="answer at once instead of after RTP caps (and so a=ssrc lines) are known")
    p.add_argument("--dtls-cert", choices=["ecdsa", "gstreamer"], default="ecdsa",
                   help="ecdsa: a P-256 certificate like browsers use; gstreamer: GStreamer's own (RSA in 1.22)")
    args = p.parse_args()
    Gst.init(None)
    missing = [e for e in ("webrtcbin", "x264enc", "opusenc", "rtph264pay", "rtpopuspay", "nicesrc", "dtlssrtpenc")
               if Gst.ElementFactory.find(e) is None]
    if missing:
        emit("error", error=f"missing GStreamer elements {missing}; run tests/e2e/install.sh")
        sys.exit(1)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    master = Master(args, loop)
    try:
        result = loop.run_until_complete(master.run())
    except Exception as e:  # noqa: BLE001 — reported as the final JSON line
        emit("error", error=str(e))
        sys.exit(1)
    emit("done", **result)


if __name__ == "__main__":
    main()
