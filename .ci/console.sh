#!/usr/bin/env bash
# The console in a real browser: Debian's Chromium (no browser download), playwright-core from
# npm, a real `chassis serve` with the mock model. Screenshots land in target/console/.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== console"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if [ ! -x /usr/bin/chromium ] || ! command -v npm >/dev/null; then
  $sudo apt-get update
  [ -x /usr/bin/chromium ] || DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y chromium
  command -v npm >/dev/null || DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y nodejs npm
fi
cargo build --locked --bin chassis
cd crates/server/tests/console
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund
node console.test.mjs
# The page-load benchmark, small: it must print its figures (BENCHMARKS.md has the 100,000-run one).
node bench.mjs --runs 2000 --times 3
