#!/usr/bin/env bash
# Tracking endpoints under load: wrk against the open pixel (GET /t/o/…)
# and a tracked link (GET /t/c/…) of a real message, served by a release
# build on SQLite. Each request is recorded as an event; the script checks
# afterwards that every request wrk made became an event row.
#
#   bench/tracking.sh [SECONDS] [CONNECTIONS]    (default 15 s, 64)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-15}"
CONNS="${2:-64}"
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/epistle-target}"
cargo build --release -p epistle --quiet
BIN="$CARGO_TARGET_DIR/release/epistle"
WORK="$(mktemp -d)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
KEY="ep_benchkeybenchkeybenchkeybench00"
export EPISTLE_DATABASE_URL="sqlite://$WORK/epistle.db" EPISTLE_HTTP_ADDR="127.0.0.1:$PORT" EPISTLE_SMTP_ADDR="" \
  EPISTLE_BOOTSTRAP_API_KEY="$KEY" EPISTLE_LOG=warn
"$BIN" serve >"$WORK/serve.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
ID=$(curl -sf -H "Authorization: Bearer $KEY" -H 'content-type: application/json' "http://127.0.0.1:$PORT/v1/messages" \
  -d '{"from":"news@shop.example","to":"jane@customer.example","subject":"Sale","stream":"broadcast",
       "html":"<p><a href=\"https://shop.example/sale\">Sale</a></p>"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
RAW=$(curl -sf -H "Authorization: Bearer $KEY" "http://127.0.0.1:$PORT/v1/messages/$ID/raw" | python3 -c '
import sys, email, email.policy
m = email.message_from_bytes(sys.stdin.buffer.read(), policy=email.policy.default)
print(m.get_body(("html",)).get_content())')
OPEN=$(grep -o "http://127.0.0.1:$PORT/t/o/[A-Za-z0-9_-]*" <<<"$RAW" | head -1)
CLICK=$(grep -o "http://127.0.0.1:$PORT/t/c/[A-Za-z0-9_-]*" <<<"$RAW" | head -1)
echo "open:  $OPEN"
echo "click: $CLICK"
mkdir -p bench/out
echo "== wrk -t2 -c$CONNS -d${SECS}s --latency (open pixel)"
wrk -t2 -c"$CONNS" -d"${SECS}s" --latency "$OPEN" | tee bench/out/tracking-open.txt
echo "== wrk -t2 -c$CONNS -d${SECS}s --latency (tracked link, 302)"
wrk -t2 -c"$CONNS" -d"${SECS}s" --latency "$CLICK" | tee bench/out/tracking-click.txt
sleep 2
python3 - "$WORK/epistle.db" <<'PY'
import re, sqlite3, sys
def total(f):
    return int(re.search(r"(\d+) requests in", open(f).read()).group(1))
made = total("bench/out/tracking-open.txt") + total("bench/out/tracking-click.txt")
db = sqlite3.connect(sys.argv[1])
rows = db.execute("SELECT COUNT(*) FROM events WHERE type IN ('opened','clicked')").fetchone()[0]
print(f"requests made by wrk: {made}; open/click events stored: {rows}")
PY
