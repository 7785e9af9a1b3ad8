#!/usr/bin/env python3
"""Agreement of our classifier with sisimai, per recipient, on the same mails.

usage: compare.py SISIMAI.tsv OURS.tsv [--top N] [--show 'expected->ours'] [--hard]
Recipients are matched by address, else by position. Prints the agreement on the reason and
on hard/soft, then the most frequent disagreements (sisimai's reason -> ours)."""
import argparse
import collections


def load(path):
    by_file = {}
    for line in open(path, errors='replace'):
        f = line.rstrip('\n').split('\t')
        if len(f) < 10:
            continue
        recs = by_file.setdefault(f[0], {})
        recs[f[2].lower()] = f
        recs['#' + f[1]] = f
    return by_file


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('sisimai')
    ap.add_argument('ours')
    ap.add_argument('--top', type=int, default=25)
    ap.add_argument('--show', default='', help="list examples of one disagreement, e.g. 'mailboxfull->userunknown'")
    ap.add_argument('--hard', action='store_true', help='count only disagreements on hard/soft')
    a = ap.parse_args()
    theirs, ours = load(a.sisimai), load(a.ours)
    n = reason_ok = hard_ok = 0
    pairs = collections.Counter()
    examples = collections.defaultdict(list)
    for name, recs in theirs.items():
        for key, t in recs.items():
            if key.startswith('#'):
                continue
            n += 1
            o = ours.get(name, {}).get(key) or ours.get(name, {}).get('#' + t[1])
            got = o[3] if o else '(none)'
            reason_ok += got == t[3]
            hard_same = bool(o) and o[4] == t[4]
            hard_ok += hard_same
            if got != t[3] and (not a.hard or not hard_same):
                pair = f'{t[3]}->{got}'
                pairs[pair] += 1
                examples[pair].append((name, t[5], t[7], t[9][:160], o[5] if o else '', o[9][:160] if o else ''))
    if n == 0:
        print('no recipients in', a.sisimai)
        return
    print(f'recipients {n}: reason agrees {100 * reason_ok / n:.2f} %, hard/soft agrees {100 * hard_ok / n:.2f} %')
    for pair, count in pairs.most_common(a.top):
        print(f'{count:5} {pair}')
    for e in examples.get(a.show, [])[:40]:
        print('  ', e)


if __name__ == '__main__':
    main()
