#!/usr/bin/env bash
# Chromium (Debian's) and playwright-core (npm, pinned in benchmarks/ui/package-lock.json)
# for benchmarks/ui.py. Idempotent. Must run as root (it uses apt-get).
set -euo pipefail
if ! command -v chromium >/dev/null; then
    echo "[install-chromium] apt-get install chromium"
    apt-get update -q >/tmp/install-chromium.log 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >>/tmp/install-chromium.log 2>&1
fi
cd "$(dirname "$0")/../benchmarks/ui"
[[ -d node_modules/playwright-core ]] || npm ci --no-audit --no-fund --silent
