#!/usr/bin/env bash
# Template rendering throughput: Epistle's renderer (MiniJinja) against
# Python's Jinja2, same template (bench/render/order-confirmation.json: the
# order confirmation with 20 items) and data, one process each, one core.
#
#   bench/render.sh [N] [ROUNDS]   (default 20000 renders, 3 rounds)
#
# The engines take turns, ROUNDS times, and the medians are compared: this
# machine's speed drifts between runs (steal time of the VM), and taking
# turns lets both see the same drift. Before timing, the first render of
# each is written to bench/out and the two must be byte for byte the same.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-20000}"
ROUNDS="${2:-3}"
mkdir -p bench/out
python3 -c 'import jinja2' 2>/dev/null || python3 -m pip install --quiet jinja2
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/epistle-target}"
cargo build --release -p epistle-render --example render_bench --quiet
export RENDER_OUT=bench/out
: >bench/out/render-epistle.txt
: >bench/out/render-jinja2.txt
for round in $(seq "$ROUNDS"); do
  echo "round $round of $ROUNDS"
  "$CARGO_TARGET_DIR/release/examples/render_bench" bench/render/order-confirmation.json "$N" | tee -a bench/out/render-epistle.txt
  python3 bench/render/jinja2_render.py bench/render/order-confirmation.json "$N" | tee -a bench/out/render-jinja2.txt
done
# Both must have done the same work: the same subject, escaped HTML and text.
for part in subject html text; do
  if ! cmp -s "bench/out/epistle.$part" "bench/out/jinja2.$part"; then
    echo "the two engines rendered different ${part}s:" >&2
    diff "bench/out/epistle.$part" "bench/out/jinja2.$part" | head -20 >&2
    exit 1
  fi
done
echo "outputs identical (subject, HTML, text)"
python3 - <<'PY'
import re, statistics
def rates(path):
    return [float(x) for x in re.findall(r"= (\d+) renders/s", open(path).read())]
e, j = rates("bench/out/render-epistle.txt"), rates("bench/out/render-jinja2.txt")
me, mj = statistics.median(e), statistics.median(j)
print(f"Epistle renders/s: {' '.join(f'{x:.0f}' for x in e)} (median {me:.0f})")
print(f"Jinja2 renders/s:  {' '.join(f'{x:.0f}' for x in j)} (median {mj:.0f})")
print(f"Epistle / Jinja2: {me / mj:.1f}x (medians); per round: {' '.join(f'{a / b:.1f}x' for a, b in zip(e, j))}")
PY
