#!/usr/bin/env python3
"""Renders the order confirmation of order-confirmation.json N times with
Jinja2 (subject and text plain, HTML auto-escaped, the same money filter as
Epistle's) and prints renders per second. Usage: jinja2_render.py FILE N"""
import json
import os
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
# Autoescape is decided when a template is compiled, so the HTML part needs an
# environment that escapes from the start (Epistle escapes the HTML part too).
escaping = jinja2.Environment(autoescape=True)
escaping.filters["money"] = money
plain = jinja2.Environment(autoescape=False)
plain.filters["money"] = money
html = escaping.from_string(doc["html"])
subject = plain.from_string(doc["subject"])
text = plain.from_string(doc["text"])
data = doc["data"]
out_dir = os.environ.get("RENDER_OUT")
if out_dir:
    for part, template in (("subject", subject), ("html", html), ("text", text)):
        with open(os.path.join(out_dir, "jinja2." + part), "w", encoding="utf-8") as f:
            f.write(template.render(data))
out = 0
t0 = time.perf_counter()
for _ in range(n):
    out += len(subject.render(data)) + len(html.render(data)) + len(text.render(data))
dt = time.perf_counter() - t0
print(f"jinja2 {jinja2.__version__}: {n} renders in {dt:.2f} s = {n / dt:.0f} renders/s ({out // n} bytes each)")
