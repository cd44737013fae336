#!/usr/bin/env bash
# The official MCP reference servers from npm, for crates/tools/tests/it/mcp_everything.rs
# (which fails under CI=true without it).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== mcp servers"
npm install --prefix target/mcp-servers --no-audit --no-fund --silent \
  @modelcontextprotocol/server-everything @modelcontextprotocol/server-filesystem
