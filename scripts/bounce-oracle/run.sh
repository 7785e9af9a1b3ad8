#!/usr/bin/env bash
# Differential check of the bounce classifier against sisimai, the library whose answers
# label tests/corpora/bounces, on mail it has not been tuned on: variants of the half-A files
# (see mutate.py). Half B stays unread. Not part of CI: it needs Go and sisimai's source.
#
#   SISIMAI_SRC=/path/to/go-sisimai/git/dir bash scripts/bounce-oracle/run.sh
#
# SISIMAI_SRC is a git directory (bare or not) of github.com/sisimai/go-sisimai; the figures in
# docs/bounces.md were taken at commit ed142ded, the one the corpus was labelled with.
# SEEDS (default "1 2 3") picks the variants; WORK (default /tmp/bounce-oracle) holds the output.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
src=${SISIMAI_SRC:?set SISIMAI_SRC to a git directory of github.com/sisimai/go-sisimai}
work=${WORK:-/tmp/bounce-oracle}
seeds=${SEEDS:-"1 2 3"}
corpus=$repo/tests/corpora/bounces

packages="golang-go golang-golang-x-net-dev golang-golang-x-text-dev"
if ! command -v go >/dev/null || [ ! -d /usr/share/gocode/src/golang.org/x/net ] \
    || [ ! -d /usr/share/gocode/src/golang.org/x/text ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "needs Go and the two modules sisimai imports: sudo apt-get install $packages" >&2
        exit 1
    fi
    echo "installing Go and the two modules sisimai imports (Debian packages)" >&2
    apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages >/dev/null
fi

echo "building sisimai (library source only: no test files, no sample mail)" >&2
rm -rf "$work"
mkdir -p "$work/gopath/src/libsisimai.org/sisimai" "$work/gopath/src/sisimaitsv" "$work/mail" "$work/originals"
# The pathspec keeps sisimai's sample mail and test files out of the archive itself: they
# hold the labels of mail the corpus keeps aside, and are never read.
git -C "$src" archive HEAD -- . ':(exclude)set-of-emails' ':(exclude)*_test.go' \
    | tar -x -C "$work/gopath/src/libsisimai.org/sisimai"
cp "$here/sisimai_tsv.go" "$work/gopath/src/sisimaitsv/main.go"
(cd "$work/gopath/src/sisimaitsv" && GO111MODULE=off GOPATH="$work/gopath:/usr/share/gocode" go build -o "$work/sisimai-tsv" .)

echo "labelling the half-A originals, then making variants" >&2
python3 - "$corpus" "$work/originals" <<'PY'
import json, shutil, sys
from pathlib import Path
corpus, out = Path(sys.argv[1]), Path(sys.argv[2])
def fnv1a(s):
    h = 0xcbf29ce484222325
    for b in s.encode():
        h = ((h ^ b) * 0x100000001b3) & 0xffffffffffffffff
    return h
for name in json.loads((corpus / 'expected.json').read_text()):
    if fnv1a(name) % 2 == 0:
        shutil.copy(corpus / 'eml' / name, out / name)
PY
"$work/sisimai-tsv" "$work"/originals/*.eml > "$work/originals.tsv"
for seed in $seeds; do
    python3 "$here/mutate.py" --corpus "$corpus" --sisimai-src "$src" --originals "$work/originals.tsv" \
        --out "$work/mail" --seed "$seed"
done

echo "classifying with sisimai and with ours" >&2
"$work/sisimai-tsv" "$work"/mail/*.eml > "$work/sisimai.tsv"
(cd "$repo" && cargo run -q --release -p epistle-mail --example classify_tsv -- "$work/mail") > "$work/ours.tsv"

echo "ours against sisimai on the half-A originals themselves:" >&2
python3 "$here/compare.py" "$work/originals.tsv" <(cd "$repo" && cargo run -q --release -p epistle-mail --example classify_tsv -- "$work/originals") --top 0
python3 "$here/compare.py" "$work/sisimai.tsv" "$work/ours.tsv" "$@"
