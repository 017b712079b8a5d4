#!/usr/bin/env bash
# The OpenAPI document against a running server: schemathesis generates requests for every operation
# (a bounded number of examples each) and fails on any 5xx answer, any status code, content type or body that
# the document does not describe, and a wrong answer to a method a path does not take. /readyz is left out:
# its documented 503 (this server loads no model) is what it is for, and "no 5xx" cannot allow for it.
# Usage: bash .ci/schemathesis.sh   (SCHEMATHESIS_EXAMPLES=N per operation, default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export TINGYIN_HOME="$work/home"
# The app first: the CLI creates the database, so the server does not migrate it at the same moment.
token=$(python3 -m tingyin.cli apps create schemathesis | python3 -c 'import json, sys; print(json.load(sys.stdin)["app_token"])')
# No worker and no model preload: generated requests carry no real audio, so no model is ever needed.
python3 -m tingyin.cli serve --port "$port" --no-worker --no-preload >"$work/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 120); do
  curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
  sleep 0.5
done
status=0
# One worker: with two, hypothesis parses lambda sources with ast in two threads at once, which Python 3.11
# can fail with "SystemError: AST constructor recursion depth mismatch" (CPython gh-106905); CI crashed so once.
schemathesis run "http://127.0.0.1:$port/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,unsupported_method \
  --max-examples "${SCHEMATHESIS_EXAMPLES:-10}" \
  --max-redirects 0 \
  --exclude-path /readyz \
  --phases examples,coverage,fuzzing \
  --seed "${SCHEMATHESIS_SEED:-20260101}" \
  --generation-database none \
  --workers 1 \
  --no-color || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- server log (tail) ---"
  tail -n 40 "$work/server.log"
fi
exit "$status"
