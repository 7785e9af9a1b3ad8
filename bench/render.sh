#!/usr/bin/env bash
# Template rendering throughput: Epistle's renderer (MiniJinja) against
# Python's Jinja2, same template (bench/render/order-confirmation.json: the
# order confirmation with 20 items) and data, one process each, one core.
#
#   bench/render.sh [N]      (default 20000 renders)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-20000}"
mkdir -p bench/out
python3 -c 'import jinja2' 2>/dev/null || python3 -m pip install --quiet jinja2
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/epistle-target}"
cargo build --release -p epistle-render --example render_bench --quiet
"$CARGO_TARGET_DIR/release/examples/render_bench" bench/render/order-confirmation.json "$N" | tee bench/out/render-epistle.txt
python3 bench/render/jinja2_render.py bench/render/order-confirmation.json "$N" | tee bench/out/render-jinja2.txt
python3 - <<'PY'
import re
e = float(re.search(r"= (\d+) renders/s", open("bench/out/render-epistle.txt").read()).group(1))
j = float(re.search(r"= (\d+) renders/s", open("bench/out/render-jinja2.txt").read()).group(1))
print(f"Epistle / Jinja2: {e / j:.1f}x")
PY
