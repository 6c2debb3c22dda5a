#!/usr/bin/env python3
"""Hostile clients beside a normal one: the normal sender must still be answered within
its usual latency, and forebay's memory must stay bounded.

A normal sender posts RATE events a second for DURATION seconds and times each answer,
first alone, then while these run at once against the same listener:
  slowloris  SLOW connections that send a header line every second and never finish
  headers    requests with 1,000 headers, or one header of 1 MiB, again and again
  bodies     bodies declared at 1 GiB and sent as fast as possible, and chunked bodies
             that never end
  garbage    connections sending random bytes instead of HTTP
(No HTTP/2 rapid reset: the standard library has no HTTP/2 client.)

Usage: bench/faults/hostile.py [DURATION] [RATE] [SLOW]   (defaults: 20 s, 100/s, 500)
"""

import json
import os
import random
import shutil
import socket
import sys
import tempfile
import threading
import time
import http.client

from common import INGEST_PORTS, arg, peak_rss_mib, start_on_sqlite, stop

PORT = INGEST_PORTS[0]


def connect():
    s = socket.create_connection(("127.0.0.1", PORT), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def slowloris(stop_event, count, stats):
    socks = []
    while not stop_event.is_set():
        while len(socks) < count and not stop_event.is_set():
            try:
                s = connect()
                s.sendall(b"POST /in/load HTTP/1.1\r\nhost: x\r\n")
                socks.append(s)
            except OSError:
                break
        alive = []
        for s in socks:
            try:
                s.sendall(b"x-slow: %d\r\n" % random.randrange(1 << 30))
                alive.append(s)
            except OSError:
                stats["slowloris cut"] = stats.get("slowloris cut", 0) + 1
                s.close()
        socks = alive
        stop_event.wait(1.0)
    for s in socks:
        s.close()


def send_and_read(payload, stats, kind):
    try:
        s = connect()
        try:
            s.sendall(payload)
        except OSError:
            pass
        try:
            head = s.recv(64)
            status = head.split(b" ")[1].decode() if head.startswith(b"HTTP/") else "closed"
        except (OSError, IndexError):
            status = "closed"
        s.close()
    except OSError:
        status = "refused"
    key = f"{kind} {status}"
    stats[key] = stats.get(key, 0) + 1


def headers_flood(stop_event, stats):
    many = (
        b"POST /in/load HTTP/1.1\r\nhost: x\r\n"
        + b"".join(b"x-h%d: v\r\n" % i for i in range(1000))
        + b"content-length: 0\r\n\r\n"
    )
    big = b"POST /in/load HTTP/1.1\r\nhost: x\r\nx-big: " + b"v" * (1 << 20) + b"\r\n\r\n"
    while not stop_event.is_set():
        send_and_read(many, stats, "1,000 headers:")
        send_and_read(big, stats, "1 MiB header:")


def bodies(stop_event, stats):
    chunk = os.urandom(64 << 10)
    while not stop_event.is_set():
        # Declared at 1 GiB, sent as fast as the socket takes it.
        try:
            s = connect()
            s.sendall(b"POST /in/load HTTP/1.1\r\nhost: x\r\ncontent-length: 1073741824\r\n\r\n")
            sent = 0
            while sent < (64 << 20) and not stop_event.is_set():
                s.sendall(chunk)
                sent += len(chunk)
            s.close()
            key = "1 GiB body: server kept reading 64 MiB"
        except OSError:
            key = "1 GiB body: cut off"
        stats[key] = stats.get(key, 0) + 1
        # Chunked, never ending.
        try:
            s = connect()
            s.sendall(b"POST /in/load HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n")
            while not stop_event.is_set():
                s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            s.close()
            key = "endless chunked body: ran to the end of the test"
        except OSError:
            key = "endless chunked body: cut off"
        stats[key] = stats.get(key, 0) + 1


def garbage(stop_event, stats):
    while not stop_event.is_set():
        send_and_read(os.urandom(4096), stats, "random bytes:")


def normal(duration, rate):
    """Posts `rate` events a second; returns the answer times of the 2xx and the others."""
    times, bad = [], 0
    interval = 1.0 / rate
    t0 = time.time()
    n = 0
    while time.time() - t0 < duration:
        body = json.dumps({"n": n, "at": time.time()})
        began = time.time()
        try:
            c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
            c.request("POST", "/in/load", body, {"content-type": "application/json"})
            r = c.getresponse()
            r.read()
            c.close()
            if 200 <= r.status < 300:
                times.append(time.time() - began)
            else:
                bad += 1
        except (OSError, http.client.HTTPException):
            bad += 1
        n += 1
        time.sleep(max(0.0, t0 + n * interval - time.time()))
    return times, bad


def report(name, proc, alone, attacked, stats):
    """Prints the verdict and figures of a run of the normal sender alone and under
    attack (each: answer times of the 2xx, count of the others); true if it passed:
    forebay still running, every request answered 2xx, and p99 under attack within
    twice the p99 alone (or 25 ms)."""
    (alone, alone_bad), (attacked, attacked_bad) = alone, attacked
    running = proc.poll() is None
    rss = peak_rss_mib(proc.pid) if running else 0
    ok = (
        running
        and not attacked_bad
        and percentile(attacked, 0.99) <= max(2 * percentile(alone, 0.99), 0.025)
    )
    print(
        f"{'PASS' if ok else 'FAIL'} {name}: the normal sender's p99 "
        f"{percentile(alone, 0.99) * 1000:.1f} ms alone ({len(alone)} answered 2xx, "
        f"{alone_bad} not), {percentile(attacked, 0.99) * 1000:.1f} ms under attack "
        f"({len(attacked)} 2xx, {attacked_bad} not); forebay "
        f"{'kept running' if running else 'EXITED'}, peak RSS {rss} MiB"
    )
    for key in sorted(stats):
        print(f"  {key}: {stats[key]}")
    return ok


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] if values else float("nan")


def beside(name, begin, end, prefix):
    """Runs the normal sender (DURATION s at RATE/s, arguments 1 and 2) alone, then again
    from 2 s after `begin()` (which starts the attack) until `end()` (which stops it and
    returns its counts); prints the verdict and returns the exit code."""
    duration = arg(1, 20.0)
    rate = arg(2, 100.0)
    work = tempfile.mkdtemp(prefix=prefix)
    proc = None
    try:
        proc = start_on_sqlite(work, routed=False)
        alone = normal(duration, rate)
        begin()
        time.sleep(2)  # slow connections are open, attackers running, before measuring
        attacked = normal(duration, rate)
        return 0 if report(name, proc, alone, attacked, end()) else 1
    finally:
        stop(proc)
        shutil.rmtree(work, ignore_errors=True)


def main():
    slow = arg(3, 500)
    stats = {}
    stop_event = threading.Event()
    attackers = [
        threading.Thread(target=slowloris, args=(stop_event, slow, stats)),
        threading.Thread(target=headers_flood, args=(stop_event, stats)),
        threading.Thread(target=bodies, args=(stop_event, stats)),
        threading.Thread(target=garbage, args=(stop_event, stats)),
    ]

    def begin():
        for t in attackers:
            t.start()

    def end():
        stop_event.set()
        for t in attackers:
            t.join()
        return stats

    return beside("hostile clients", begin, end, "forebay-hostile-")


if __name__ == "__main__":
    sys.exit(main())
