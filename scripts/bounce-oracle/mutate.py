#!/usr/bin/env python3
"""Makes new bounce mails from the half-A files of tests/corpora/bounces (the half the rules
were written from; half B is never read), for a differential check against sisimai.

Each half-A mail gives variants:
  ph  its longest known wording replaced by another from sisimai's reason lists,
  in  another wording inserted next to it,
  st  its first status code replaced everywhere,
  sf  the status code changed in the Status: field only (sd: everywhere but there),
  dm  the recipient's domain swapped for one that a provider's own rules cover.
The wordings come from sisimai's reason/why-*.go files (library source, not its test mail).
"""
import argparse
import json
import random
import re
import subprocess
from pathlib import Path

CODES = ['5.1.1', '5.2.2', '4.2.2', '5.7.1', '5.0.0', '4.0.0', '5.1.0', '5.2.1', '5.7.0',
         '5.4.1', '5.1.2', '5.3.0', '4.4.1', '5.5.0', '4.7.1', '5.7.26', '5.2.0']
DOMAINS = ['docomo.ne.jp', 'ezweb.ne.jp', 'au.com', 'orange.fr', 'laposte.net', 'outlook.com',
           'hotmail.com', 'icloud.com', 'aol.com', 'qq.com', 'cox.net', 'charter.net', 'email.ua',
           'googlemail.com', 'me.com', 'gmail.com', 'yahoo.co.jp', 'exchangelabs.com']
STATUS = r'(?<![\d.])[245]\.\d\.\d{1,3}(?![\d.])'


def fnv1a(s):
    h = 0xcbf29ce484222325
    for b in s.encode():
        h = ((h ^ b) * 0x100000001b3) & 0xffffffffffffffff
    return h


def half_a(corpus):
    expected = json.loads((corpus / 'expected.json').read_text())
    return sorted(n for n in expected if fnv1a(n) % 2 == 0)


def wordings(sisimai_src):
    """The plain wordings of sisimai's reason lists (at least 10 characters)."""
    files = subprocess.check_output(['git', '-C', sisimai_src, 'ls-tree', '--name-only', 'HEAD', 'reason/'],
                                    text=True).split()
    out = []
    for f in files:
        if 'why-' not in f:
            continue
        reason = f.split('why-')[1][:-3]
        src = subprocess.check_output(['git', '-C', sisimai_src, 'show', 'HEAD:' + f], text=True)
        for block in re.finditer(r'index\s*:?=\s*\[\]string\{(.*?)\n\s*\}', src, re.S):
            for w in re.findall(r'"((?:[^"\\]|\\.)*)"', block.group(1)):
                if len(w.strip()) >= 10:
                    out.append((reason, w))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--corpus', type=Path, required=True)
    ap.add_argument('--sisimai-src', required=True, help='git directory of go-sisimai')
    ap.add_argument('--originals', type=Path, required=True,
                    help="sisimai's TSV for the half-A originals (recipients' domains)")
    ap.add_argument('--out', type=Path, required=True)
    ap.add_argument('--seed', type=int, default=1)
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    words = wordings(a.sisimai_src)
    domains_of = {}
    for line in a.originals.read_text(errors='replace').splitlines():
        f = line.split('\t')
        if len(f) > 2 and '@' in f[2]:
            domains_of.setdefault(f[0], f[2].split('@')[1].lower())
    a.out.mkdir(parents=True, exist_ok=True)
    made = 0

    def write(name, tag, k, text):
        nonlocal made
        (a.out / f'{name[:-4]}--s{a.seed}{tag}{k}.eml').write_text(text, encoding='latin-1')
        made += 1

    for name in half_a(a.corpus):
        raw = (a.corpus / 'eml' / name).read_bytes().decode('latin-1')
        low = raw.lower()
        found = [(r, w) for r, w in words if w in low]
        if found:
            _, w0 = max(found, key=lambda x: len(x[1]))
            i = low.find(w0)
            for k, (_, w) in enumerate(rnd.sample(words, 6)):
                write(name, 'ph', k, raw[:i] + w + raw[i + len(w0):])
            for k, (_, w) in enumerate(rnd.sample(words, 6)):
                if rnd.random() < 0.5:
                    write(name, 'in', k, raw[:i + len(w0)] + '; ' + w + raw[i + len(w0):])
                else:
                    write(name, 'in', k, raw[:i] + w + '; ' + raw[i:])
        codes = sorted(set(re.findall(STATUS, raw)))
        if codes:
            s0 = codes[0]
            pat = r'(?<![\d.])' + re.escape(s0) + r'(?![\d.])'
            for k, c in enumerate(rnd.sample(CODES, 3)):
                if c != s0:
                    write(name, 'st', k, re.sub(pat, c, raw))
        field = re.search(r'(?im)^status:\s*([245]\.\d\.\d{1,3})', raw)
        if field:
            s0 = field.group(1)
            pat = r'(?<![\d.])' + re.escape(s0) + r'(?![\d.])'
            for k, c in enumerate(rnd.sample(CODES, 3)):
                if c == s0:
                    continue
                write(name, 'sf', k, raw[:field.start(1)] + c + raw[field.end(1):])
                body = re.sub(pat, c, raw)
                again = re.search(r'(?im)^status:\s*([245]\.\d\.\d{1,3})', body)
                body = body[:again.start(1)] + s0 + body[again.end(1):]
                if body != raw:
                    write(name, 'sd', k, body)
        d0 = domains_of.get(name)
        if d0:
            for k, d in enumerate(rnd.sample(DOMAINS, 3)):
                m = re.sub('@' + re.escape(d0), '@' + d, raw, flags=re.I)
                if m != raw:
                    write(name, 'dm', k, m)
    print(f'{made} mails written to {a.out}')


if __name__ == '__main__':
    main()
