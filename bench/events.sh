#!/usr/bin/env bash
# Business events through NATS JetStream into a rule that sends to an SMTP
# sink: RATE events a second for SECS seconds (default 200/s, 60 s). Reports
# the latency from publishing an event to its mail being handed to the sink
# (p50/p90/p99/max), lost events and duplicate mails.
#
#   bench/events.sh [RATE] [SECS]
# Needs: the NATS server with JetStream on 127.0.0.1:4222, python3 with
# nats-py and aiosmtpd (pip install nats-py aiosmtpd).
set -euo pipefail
cd "$(dirname "$0")/.."
RATE="${1:-200}"
SECS="${2:-60}"
python3 -c 'import nats, aiosmtpd' 2>/dev/null || pip install --quiet nats-py aiosmtpd
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/epistle-target}"
cargo build --release -p epistle --quiet
BIN="$CARGO_TARGET_DIR/release/epistle"
WORK="$(mktemp -d)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT="$(free_port)"; SINK_PORT="$(free_port)"
RUN="b$(date +%s)"
KEY="ep_benchkeybenchkeybenchkeybench00"
python3 bench/events.py sink "$SINK_PORT" "$WORK/sink.txt" &
SINK=$!
cat >"$WORK/epistle.toml" <<TOML
[[transports]]
name = "sink"
kind = "smtp"
host = "127.0.0.1"
port = $SINK_PORT
tls = "none"

[[consumers]]
kind = "nats"
url = "nats://127.0.0.1:4222"
stream = "BENCH_$RUN"
subject = "bench_$RUN.>"
TOML
export EPISTLE_DATABASE_URL="sqlite://$WORK/epistle.db" EPISTLE_HTTP_ADDR="127.0.0.1:$PORT" EPISTLE_SMTP_ADDR="" \
  EPISTLE_BOOTSTRAP_API_KEY="$KEY" EPISTLE_LOG="warn,epistle_ingest=info"
"$BIN" serve --config "$WORK/epistle.toml" >"$WORK/serve.log" 2>&1 &
PID=$!
cleanup() {
  kill $PID $SINK 2>/dev/null || true
  python3 - "$RUN" <<'PY' || true
import asyncio, sys, nats
async def main():
    nc = await nats.connect("nats://127.0.0.1:4222")
    await nc.jetstream().delete_stream(f"BENCH_{sys.argv[1]}")
    await nc.close()
asyncio.run(main())
PY
  rm -rf "$WORK"
}
trap cleanup EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
api() { curl -sf -H "Authorization: Bearer $KEY" -H 'content-type: application/json' "http://127.0.0.1:$PORT$1" -d "$2"; }
api /v1/templates '{"name": "bench", "subject": "{{ event.key }} {{ sent_ms }}", "text": "Event {{ n }}."}' >/dev/null
api /v1/rules '{"name": "bench", "on": "bench.event", "template": "bench", "to": "{{ data.customer.email }}",
                "from": "Bench <bench@shop.example>"}' >/dev/null
# The consumer creates the stream when it connects.
for _ in $(seq 100); do grep -q "consuming" "$WORK/serve.log" 2>/dev/null && break; sleep 0.1; done
echo "== publishing $RATE events/s for ${SECS}s to NATS JetStream (stream BENCH_$RUN)"
python3 bench/events.py publish nats://127.0.0.1:4222 "bench_$RUN.event" "$RATE" "$SECS" "$RUN" >"$WORK/sent.json"
cat "$WORK/sent.json"
TOTAL=$(python3 -c "import json; print(json.load(open('$WORK/sent.json'))['published'])")
# Wait (up to 60 s) for the last mails to reach the sink.
for _ in $(seq 600); do
  [ "$(wc -l <"$WORK/sink.txt" 2>/dev/null || echo 0)" -ge "$TOTAL" ] && break
  sleep 0.1
done
mkdir -p bench/out
echo "== publish -> handoff at the SMTP sink"
python3 bench/events.py report "$WORK/sent.json" "$WORK/sink.txt" | tee -a bench/out/events.json
