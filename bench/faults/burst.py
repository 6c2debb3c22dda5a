#!/usr/bin/env python3
"""A 100x burst on SQLite: from a steady RATE events/s to as many as 64 connections can
send (wrk, unique 1 KiB bodies) for BURST seconds, while forebay delivers to a receiver.
The burst must be acknowledged at p99 < 25 ms with resident memory under 256 MiB, and at
least 100x the steady rate. Needs wrk (apt-get install wrk).

Usage: bench/faults/burst.py [RATE] [BURST]   (defaults: 100 events/s, 10 s)
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import http.client

from common import INGEST_PORTS, Receiver, arg, peak_rss_mib, start_on_sqlite, stop

PORT = INGEST_PORTS[0]


def steady(seconds, rate):
    interval = 1.0 / rate
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
    t0 = time.time()
    n = 0
    while time.time() - t0 < seconds:
        c.request("POST", "/in/load", json.dumps({"steady": n, "at": time.time()}))
        c.getresponse().read()
        n += 1
        time.sleep(max(0.0, t0 + n * interval - time.time()))
    c.close()
    return n


def millis(text):
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def main():
    rate = arg(1, 100.0)
    burst = arg(2, 10)
    work = tempfile.mkdtemp(prefix="forebay-burst-")
    receiver = Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    proc = None
    try:
        proc = start_on_sqlite(work)
        steady(5, rate)
        out = subprocess.run(
            [
                "wrk",
                "-t2",
                "-c64",
                f"-d{burst}s",
                "--latency",
                "-s",
                "bench/post.lua",
                f"http://127.0.0.1:{PORT}",
            ],
            env={**os.environ, "BENCH_PATH": "/in/load"},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        steady(5, rate)
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        p99 = millis(re.search(r"99%\s+(\S+)", out).group(1))
        bad = int(re.search(r"non2xx (\d+)", out).group(1))
        rss = peak_rss_mib(proc.pid)
        ok = p99 < 25 and rss < 256 and rps >= 100 * rate and bad == 0
        print(
            f"{'PASS' if ok else 'FAIL'} burst on SQLite: {rate:.0f}/s steady, then "
            f"{rps:.0f} req/s for {burst} s ({rps / rate:.0f}x), p99 {p99:.2f} ms, "
            f"{bad} not 2xx, peak RSS {rss} MiB (delivering meanwhile)"
        )
        return 0 if ok else 1
    finally:
        stop(proc)
        receiver.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
