#!/usr/bin/python3
"""Self-test of gst_master.py's WebRTC half without reel: a stand-in storage peer (a second
webrtcbin offering recvonly H.264 + Opus, like reel's offer) is wired to the master's
signaling callbacks in-process, and the test checks that the answer negotiates, ICE/DTLS
connect, and RTP of both kinds arrives. Needs candidates beyond loopback, so run it inside a
namespace with a veth pair, e.g.:

    unshare -n sh -c 'ip link set lo up; ip link add a0 type veth peer name b0;
      ip addr add 198.18.0.1/24 dev a0; ip addr add 198.18.0.2/24 dev b0;
      ip link set a0 up; ip link set b0 up; /usr/bin/python3 tests/e2e/selftest_gst_master.py'

Prints one JSON line; exit 0 when media of both kinds flowed.
"""

import argparse
import asyncio
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True
import gst_master  # noqa: E402
from gst_master import Gst, GstSdp, GstWebRTC  # noqa: E402

H264_PT, OPUS_PT = 102, 111


class Peer:
    """The stand-in storage peer: offers recvonly H.264 + Opus and counts received RTP.

    It offers the profile-level-id the master's x264 stream carries (42c01e): webrtcbin 1.22 as
    offerer aborts (`_connect_input_stream: assertion failed`) on an answer whose H.264
    profile-level-id differs from its offer, which reel's offer (42e01f and others) tolerates.
    """

    def __init__(self):
        self.pipe = Gst.Pipeline.new("peer")
        self.webrtc = Gst.ElementFactory.make("webrtcbin", "peer")
        self.webrtc.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
        self.pipe.add(self.webrtc)
        self.counts = {"video": 0, "audio": 0}
        self.lock = threading.Lock()
        self.webrtc.connect("pad-added", self.on_pad)
        for caps in (
            f"application/x-rtp,media=video,encoding-name=H264,payload={H264_PT},clock-rate=90000,"
            "packetization-mode=(string)1,profile-level-id=(string)42c01e",
            f"application/x-rtp,media=audio,encoding-name=OPUS,payload={OPUS_PT},clock-rate=48000,"
            "encoding-params=(string)2",
        ):
            self.webrtc.emit("add-transceiver", GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY,
                             Gst.caps_from_string(caps))
        self.pipe.set_state(Gst.State.PLAYING)

    def on_pad(self, _w, pad):
        if pad.direction != Gst.PadDirection.SRC:
            return
        kind = pad.get_current_caps().get_structure(0).get_string("media")
        sink = Gst.ElementFactory.make("fakesink")
        sink.set_property("async", False)
        self.pipe.add(sink)
        sink.sync_state_with_parent()
        pad.link(sink.get_static_pad("sink"))

        def probe(_pad, _info):
            with self.lock:
                self.counts[kind] = self.counts.get(kind, 0) + 1
            return Gst.PadProbeReturn.OK

        pad.add_probe(Gst.PadProbeType.BUFFER, probe)

    def create_offer(self):
        # webrtcbin 1.22 occasionally fails the very first create-offer right after PLAYING.
        for _ in range(3):
            sdp = self._create_offer_once()
            if sdp is not None:
                return sdp
            time.sleep(0.2)
        raise RuntimeError("create-offer failed three times")

    def _create_offer_once(self):
        done = threading.Event()
        out = {}

        def on_offer(promise, _):
            promise.wait()
            reply = promise.get_reply()
            offer = reply.get_value("offer")
            if offer is None:
                print(json.dumps({"event": "create_offer_failed", "reply": reply.to_string()}), flush=True)
                done.set()
                return
            self.webrtc.emit("set-local-description", offer, Gst.Promise.new())
            out["sdp"] = offer.sdp.as_text()
            done.set()

        self.webrtc.emit("create-offer", None, Gst.Promise.new_with_change_func(on_offer, None))
        done.wait(10)
        return out.get("sdp")


class FakeWs:
    """Delivers the master's messages straight to the stand-in peer."""

    def __init__(self, peer):
        self.peer = peer

    async def send(self, text):
        msg = json.loads(text)
        assert "recipientClientId" not in msg, msg
        payload = json.loads(gst_master.base64.b64decode(msg["messagePayload"]))
        if msg["action"] == "SDP_ANSWER":
            _, sdpmsg = GstSdp.SDPMessage.new_from_text(payload["sdp"])
            answer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, sdpmsg)
            self.peer.webrtc.emit("set-remote-description", answer, Gst.Promise.new())
        elif msg["action"] == "ICE_CANDIDATE":
            self.peer.webrtc.emit("add-ice-candidate", payload["sdpMLineIndex"], payload["candidate"])


async def main():
    Gst.init(None)
    loop = asyncio.get_running_loop()
    args = argparse.Namespace(width=640, height=480, fps=30, profile_level_id="42c01e",
                              answer_after_caps=True, key_int=15, video_kbps=300, seconds=3.0,
                              log_sdp=False, ca_file=None,
                              dtls_cert=os.environ.get("GST_MASTER_DTLS_CERT", "ecdsa"))
    master = gst_master.Master(args, loop)
    peer = Peer()
    master.ws = FakeWs(peer)
    peer.webrtc.connect("on-ice-candidate", lambda _w, idx, cand: loop.call_soon_threadsafe(
        master.add_remote, {"candidate": cand, "sdpMLineIndex": idx}) if master.webrtc else None)
    offer = await loop.run_in_executor(None, peer.create_offer)
    master.offer_sdp = offer
    master.on_offer(offer)
    bus = asyncio.ensure_future(master.bus_loop())
    try:
        result = await asyncio.wait_for(master.finished, 30)
    finally:
        bus.cancel()
    counts = dict(peer.counts)
    peer.pipe.set_state(Gst.State.NULL)
    ok = counts.get("video", 0) > 10 and counts.get("audio", 0) > 10
    print(json.dumps({"ok": ok, "rtp_buffers": counts, **result}), flush=True)
    return ok


if __name__ == "__main__":
    sys.exit(0 if asyncio.run(main()) else 1)
