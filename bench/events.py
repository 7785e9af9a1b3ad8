"""Helpers for bench/events.sh.

  events.py sink PORT OUT       an SMTP sink (aiosmtpd) that writes "<ms received> <subject>" per mail
  events.py publish URL SUBJECT RATE SECS RUN
                                publishes RATE events a second for SECS seconds to JetStream,
                                each {"type": "bench.event", "key": "<RUN>-<i>", "data": {..."sent_ms"}}
  events.py report SENT OUT     latency from publish to handoff at the sink, loss and duplicates
"""
import asyncio
import json
import sys
import time


def sink(port, out):
    from aiosmtpd.controller import Controller
    from email.parser import BytesHeaderParser

    f = open(out, "a", buffering=1)

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            now = int(time.time() * 1000)
            subject = BytesHeaderParser().parsebytes(envelope.content).get("Subject", "")
            f.write(f"{now} {subject}\n")
            return "250 2.0.0 Ok"

    c = Controller(Handler(), hostname="127.0.0.1", port=int(port))
    c.start()
    try:
        while True:
            time.sleep(3600)
    finally:
        c.stop()


async def publish(url, subject, rate, secs, run):
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    total = int(rate) * int(secs)
    start = time.monotonic()
    sent = 0
    late = 0
    for i in range(total):
        due = start + i / float(rate)
        wait = due - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        elif wait < -0.5:
            late += 1
        body = {
            "type": "bench.event",
            "key": f"{run}-{i}",
            "data": {"customer": {"email": f"c{i % 500}@bench.example"}, "n": i, "sent_ms": int(time.time() * 1000)},
        }
        await js.publish(subject, json.dumps(body).encode())
        sent += 1
        if sent % (int(rate) * 10) == 0:
            print(f"published {sent}/{total}", file=sys.stderr)
    elapsed = time.monotonic() - start
    await nc.close()
    print(json.dumps({"published": sent, "seconds": round(elapsed, 1), "fell_behind": late}))


def report(sent_file, out):
    sent = json.load(open(sent_file))
    lat = []
    keys = {}
    for line in open(out):
        parts = line.split()
        if len(parts) < 3:
            continue
        recv, key, sent_ms = int(parts[0]), parts[1], int(parts[2])
        keys[key] = keys.get(key, 0) + 1
        lat.append(recv - sent_ms)
    lat.sort()

    def pct(p):
        return lat[min(len(lat) - 1, int(len(lat) * p))] if lat else None

    print(json.dumps({
        "published": sent["published"],
        "received": len(lat),
        "unique": len(keys),
        "lost": sent["published"] - len(keys),
        "duplicates": len(lat) - len(keys),
        "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99), "max_ms": lat[-1] if lat else None,
    }))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "sink":
        sink(sys.argv[2], sys.argv[3])
    elif cmd == "publish":
        asyncio.run(publish(*sys.argv[2:7]))
    elif cmd == "report":
        report(sys.argv[2], sys.argv[3])
