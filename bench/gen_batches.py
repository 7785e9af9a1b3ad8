#!/usr/bin/env python3
"""Writes N/BATCH JSON files for POST /v1/messages/batch: N messages of about
SIZE bytes of text each, one recipient each. Usage: gen_batches.py OUT N BATCH SIZE"""
import json
import os
import sys

out, n, batch, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
os.makedirs(out, exist_ok=True)
line = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\n"
body = (line * (size // len(line) + 1))[:size]
for b in range(n // batch):
    msgs = [
        {
            "from": "Bench <bench@shop.example>",
            "to": f"user{b * batch + i}@example.com",
            "subject": f"Order {b * batch + i}",
            "text": body,
        }
        for i in range(batch)
    ]
    with open(os.path.join(out, f"batch-{b:04d}.json"), "w") as f:
        json.dump({"messages": msgs}, f)
