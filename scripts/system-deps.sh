#!/usr/bin/env bash
# Install the Debian packages the test suite needs, only those missing (apt-get update once).
# `system-deps.sh fonts` installs only what the server itself needs (make demo).
set -euo pipefail

missing=()
if [ "${1:-all}" != fonts ]; then
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
  command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
  # The web tests drive Debian's Chromium through Playwright (no browser download).
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
fi
# PDF exports set Vietnamese text in DejaVu Sans (CITYOPS_PDF_FONT may name another font).
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "system-deps: installing ${missing[*]}" >&2
sudo_cmd=()
[ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -q
"${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
