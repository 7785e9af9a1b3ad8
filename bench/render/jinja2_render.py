#!/usr/bin/env python3
"""Renders the order confirmation of order-confirmation.json N times with
Jinja2 (subject and text plain, HTML auto-escaped, the same money filter as
Epistle's) and prints renders per second. Usage: jinja2_render.py FILE N"""
import json
import sys
import time

import jinja2


def money(amount, currency="USD", locale="en"):
    currency = currency.upper()
    decimals = 0 if currency in ("JPY", "KRW", "ISK") else 2
    comma = locale[:2] in ("de", "fr", "es", "it", "nl", "pt")
    s = f"{abs(amount):,.{decimals}f}"
    if comma:
        s = s.replace(",", "_").replace(".", ",").replace("_", ".")
    symbol = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}.get(currency, "")
    body = f"{s} {currency}" if not symbol else (f"{s} {symbol}" if comma else f"{symbol}{s}")
    return "-" + body if amount < 0 else body


doc = json.load(open(sys.argv[1]))
n = int(sys.argv[2])
env = jinja2.Environment(autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False))
env.filters["money"] = money
plain = jinja2.Environment(autoescape=False)
plain.filters["money"] = money
html = env.from_string(doc["html"])
html.environment.autoescape = True
subject = plain.from_string(doc["subject"])
text = plain.from_string(doc["text"])
data = doc["data"]
out = 0
t0 = time.perf_counter()
for _ in range(n):
    out += len(subject.render(data)) + len(html.render(data)) + len(text.render(data))
dt = time.perf_counter() - t0
print(f"jinja2 {jinja2.__version__}: {n} renders in {dt:.2f} s = {n / dt:.0f} renders/s ({out // n} bytes each)")
