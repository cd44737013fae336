#!/usr/bin/env bash
# The Python client (clients/python) tested against a real `chassis serve`, then schemathesis
# against the server's /openapi.json: no 5xx, no response the document does not describe.
# Under 5 minutes on the CI machine; SCHEMATHESIS_EXAMPLES and SCHEMATHESIS_SEED tune the fuzzing.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== python: venv and packages"
venv=target/python-ci
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -e 'clients/python[test]' 'schemathesis>=4.1,<5'

echo "== python: chassis (debug)"
# The binary's path as cargo reports it (CARGO_TARGET_DIR may move it).
CHASSIS_BIN=$(cargo build --locked --quiet --bin chassis --message-format=json \
  | "$venv/bin/python" -c 'import json, sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable")][-1])')
export CHASSIS_BIN

echo "== python: client tests"
"$venv/bin/pytest" clients/python/tests -q -p no:cacheprovider

echo "== python: schemathesis"
root=$(mktemp -d)
"$venv/bin/python" clients/python/tests/harness.py "$root" &
harness=$!
cleanup() {
  kill "$harness" 2>/dev/null || true
  wait "$harness" 2>/dev/null || true
  rm -rf "$root"
}
trap cleanup EXIT
for _ in $(seq 600); do
  [ -s "$root/url" ] && break
  kill -0 "$harness" 2>/dev/null || { echo "the server did not start" >&2; exit 1; }
  sleep 0.1
done
[ -s "$root/url" ] || { echo "the server did not answer in 60 s" >&2; exit 1; }
url=$(cat "$root/url")
token=$(cat "$root/token")
# Every check (`--checks all`): no 5xx, every status, content type, header and body as the
# document says (SSE events included), invalid requests refused, valid ones accepted, no
# operation without the token (`ignored_auth`). clients/python/schemathesis.toml gives realistic
# values (the harness's agents, call 1.0), bounds the streams' reading time, and lists the few
# operations whose validation no schema can express (a cursor, limit names, a tool's own argument
# schema), where a 400/422 is also expected of a schema-valid request. The admin token lets every
# operation succeed; the role matrix (each 401/403) is crates/server/tests/it/roles.rs. A fixed
# seed keeps CI repeatable; SCHEMATHESIS_SEED=random explores.
seed=${SCHEMATHESIS_SEED:-7}
[ "$seed" = random ] && seed=$RANDOM
"$venv/bin/schemathesis" --config-file clients/python/schemathesis.toml run "$url/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks all \
  --max-examples "${SCHEMATHESIS_EXAMPLES:-25}" \
  --seed "$seed" \
  --request-timeout 20 \
  --no-color
