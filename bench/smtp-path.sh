#!/usr/bin/env bash
# The SMTP path alone, for A/B comparisons of two builds: smtp-source (S
# sessions) -> Epistle's SMTP listener (SQLite, DKIM as asked) -> smtp-sink,
# with Epistle's CPU time per message and per thread.
#
#   bench/smtp-path.sh                       N=20000 S=20 DKIM=rsa, the release build
#   BIN=/tmp/epistle-old DKIM=none N=10000 bench/smtp-path.sh
#
# Run each build several times, alternating: on a 2-core machine one run
# varies by 10 % or more.
set -euo pipefail
N=${N:-20000}; S=${S:-20}; DKIM=${DKIM:-rsa}; BATCH=${BATCH:-500}
BIN=${BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/epistle-target}/release/epistle}
OUT=${OUT:-$(dirname "$0")/out/smtp-path}
rm -rf "$OUT"; mkdir -p "$OUT"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P=$(free_port); HP=$(free_port); SP=$(free_port)
smtp-sink -c -u postfix "127.0.0.1:$P" 1000 > "$OUT/sink.txt" 2>&1 & SINK=$!
. "$(dirname "$0")/relay-config.sh"
relay_config "sqlite://$OUT/epistle.db" "$HP" "$SP" "$P" "$BATCH" > "$OUT/epistle.toml"
"$BIN" --config "$OUT/epistle.toml" serve > "$OUT/epistle.out" 2> "$OUT/epistle.err" & EP=$!
trap 'kill $EP $SINK 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$HP/readyz" >/dev/null && break; sleep 0.1; done
if [ "$DKIM" != none ]; then
  curl -sf -o /dev/null -H 'Authorization: Bearer ep_benchbenchbenchbenchbenchbench00' \
    -H 'Content-Type: application/json' -d "{\"name\":\"shop.example\",\"dkim\":{\"algorithms\":[\"$DKIM\"]}}" \
    "http://127.0.0.1:$HP/v1/domains"
fi
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
wrote() { awk '/^write_bytes/{print $2}' "/proc/$1/io"; }
C0=$(cpu $EP); W0=$(wrote $EP); T0=$(date +%s.%N)
smtp-source -s "$S" -l 10240 -m "$N" -f bench@shop.example -t sink@example.com "127.0.0.1:$SP"
T1=$(date +%s.%N)
until [ "$(tr '\r' '\n' < "$OUT/sink.txt" | grep -o 'mesg=[0-9]*' | tail -1 | cut -d= -f2)" = "$N" ]; do sleep 0.05; done
T2=$(date +%s.%N); C1=$(cpu $EP); W1=$(wrote $EP)
echo "threads (name, CPU ticks, voluntary context switches):"
for t in /proc/$EP/task/*; do
  echo "  $(cat "$t/comm") $(awk '{print $14+$15}' "$t/stat") $(awk '/^voluntary/{print $2}' "$t/status")"
done | sort -k2 -n -r | head -8
python3 -c "
n=$N; cpu=($C1-$C0)/100
print(f'DKIM=$DKIM S=$S N={n}: accept {n/($T1-$T0):.0f} msg/s, end-to-end {n/($T2-$T0):.0f} msg/s; '
      f'Epistle CPU {cpu/n*1e6:.0f} us/msg ({cpu/($T2-$T0)*100:.0f} % of one core); '
      f'written to disk {($W1-$W0)/n/1024:.1f} KiB/msg')"
