#!/usr/bin/env bash
# Dependency hygiene: licenses, banned crates and duplicate versions, sources (deny.toml),
# and the API docs building without a warning (broken intra-doc links included).
# Advisories are not checked: their database is on github.com, which CI cannot reach.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== deny"
command -v cargo-deny >/dev/null || cargo install --locked cargo-deny
cargo deny --locked check licenses bans sources

echo "== doc"
RUSTDOCFLAGS=-Dwarnings cargo doc --locked --no-deps --workspace
