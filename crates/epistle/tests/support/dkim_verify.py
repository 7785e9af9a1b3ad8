#!/usr/bin/env python3
"""Verifies every DKIM-Signature of a message with dkimpy, an independent
implementation. The public keys come from a JSON file {name: TXT value}
(the records Epistle asked the domain owner to publish).

Usage: dkim_verify.py MESSAGE RECORDS.json
Prints one JSON line: [{"d": ..., "s": ..., "a": ..., "ok": bool, "error": ...}, ...]
"""
import json
import re
import sys

import dkim

message = open(sys.argv[1], "rb").read()
records = {k.lower().rstrip("."): v for k, v in json.load(open(sys.argv[2])).items()}


def dnsfunc(name, timeout=5):
    if isinstance(name, bytes):
        name = name.decode()
    value = records.get(name.lower().rstrip("."))
    return value.encode() if value is not None else None


d = dkim.DKIM(message)
headers = [v for (k, v) in d.headers if k.lower() == b"dkim-signature"]
results = []
for idx, value in enumerate(headers):
    text = re.sub(rb"\s+", b"", value).decode()
    tags = dict(t.split("=", 1) for t in text.split(";") if "=" in t)
    entry = {"d": tags.get("d"), "s": tags.get("s"), "a": tags.get("a")}
    try:
        entry["ok"] = bool(d.verify(idx=idx, dnsfunc=dnsfunc))
    except Exception as e:  # a verifier error is a failed verification
        entry["ok"] = False
        entry["error"] = str(e)
    results.append(entry)
print(json.dumps(results))
