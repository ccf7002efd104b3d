#!/usr/bin/env bash
# Installs what the tests in private network namespaces (tests/ingest_gstreamer.rs,
# tests/ingest_browser.rs, tests/storage_viewers_browser.rs, tests/peer_ingest.rs,
# tests/cluster_failover.rs, sim/tests/janus.rs) need: iproute2 + unshare, GStreamer
# webrtcbin with x264 and Opus for the system Python, Janus, ffmpeg/ffprobe, Chromium,
# Node.js and the browser pages' npm packages. Checks packages (dpkg), not binaries that may come from elsewhere. Idempotent
# and quick when everything is already there; .ci/run runs it.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

debs=(
  iproute2 util-linux openssl ffmpeg chromium nodejs npm
  python3 python3-gi python3-websockets
  gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 gir1.2-gst-plugins-bad-1.0
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-nice gstreamer1.0-tools
  janus
)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node may come from elsewhere than Debian; only install the Debian one when none is on PATH.
if command -v node >/dev/null && command -v npm >/dev/null; then
  filtered=()
  for p in "${missing[@]}"; do [[ "$p" == nodejs || "$p" == npm ]] || filtered+=("$p"); done
  missing=("${filtered[@]}")
fi
if ((${#missing[@]})); then
  echo "tests/e2e/install.sh: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# tests/js and tests/e2e/browser need Node.js 20 or newer (Debian 12 ships 18).
major="$(node -p 'process.versions.node.split(".")[0]')"
if ((major < 20)); then
  echo "tests/e2e/install.sh: Node.js $(node --version) is too old; the tests need 20 or newer:" >&2
  echo "  Debian 13 ships it; on Debian 12: curl -fsSL https://deb.nodesource.com/setup_20.x | bash - && apt-get install -y nodejs" >&2
  exit 1
fi

# The browser master's packages, exactly as locked.
browser="$here/browser"
if ! cmp -s "$browser/package-lock.json" "$browser/node_modules/.reel-installed-lock.json"; then
  (cd "$browser" && npm ci --loglevel=error)
  cp "$browser/package-lock.json" "$browser/node_modules/.reel-installed-lock.json"
fi
