#!/usr/bin/env bash
# Python programs the tests talk to, from PyPI, in target/py-tools (before the tests):
# grpcio with the official OTLP messages (an OTLP/gRPC receiver for crates/telemetry's tests)
# and the official `mcp-server-time` MCP server (crates/tools' tests). Those tests fail under
# CI=true without them.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== python tools"
python3 -m venv target/py-tools
target/py-tools/bin/pip install --quiet --disable-pip-version-check \
  grpcio opentelemetry-proto mcp-server-time
