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
cargo build --locked --quiet --bin chassis
export CHASSIS_BIN="$PWD/target/debug/chassis"

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
# --checks all, with these left out:
# - positive_data_acceptance where the API validates beyond what a schema can say is set per
#   operation in clients/python/schemathesis.toml (it stays on everywhere else).
# The admin token is used so every operation can succeed; the role matrix (each 401/403 where it
# belongs) is a Rust test (crates/server/tests/it/roles.rs). `ignored_auth` sends requests
# without the token and checks they are refused.
"$venv/bin/schemathesis" --config-file clients/python/schemathesis.toml run "$url/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks all \
  --max-examples "${SCHEMATHESIS_EXAMPLES:-25}" \
  --seed "${SCHEMATHESIS_SEED:-7}" \
  --request-timeout 20 \
  --no-color
