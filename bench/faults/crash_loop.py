#!/usr/bin/env python3
"""Crash loop: SIGKILL forebay again and again under continuous load, then check that
every acknowledged event was delivered, and count duplicates.

Senders post unique JSON bodies without pause and note the id of every 2xx; a recording
receiver notes every delivery (its `webhook-id`). Each cycle waits a random 0.2-1.0 s,
kills a forebay process with SIGKILL and starts it again. After the last cycle the
senders stop and the receiver waits until every acknowledged id has arrived (or DRAIN
seconds pass). Prints one verdict line and the figures; exits 1 if an acknowledged
event was never delivered.

  sqlite:   one process on an SQLite file (restarted in place)
  postgres: two processes on one schema, each killed in turn at random; senders post
            to whichever is up

Usage: bench/faults/crash_loop.py sqlite|postgres [CYCLES] [SENDERS]
  defaults: 50 cycles, 8 senders; FOREBAY_BIN (default target/release/forebay),
  FOREBAY_TEST_POSTGRES_URL (default postgres://root@127.0.0.1:5432/test)
Only 127.0.0.1 is used. Standard library only.
"""

import http.client
import http.server
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

BIN = os.environ.get("FOREBAY_BIN", "target/release/forebay")
PG_URL = os.environ.get("FOREBAY_TEST_POSTGRES_URL", "postgres://root@127.0.0.1:5432/test")
RECEIVER_PORT = 18390
INGEST_PORTS = [18391, 18392]
ADMIN_PORTS = [18393, 18394]
DRAIN = 120  # seconds to wait for the last deliveries
START_WAIT = 30  # seconds a restarted process may take to listen


class Receiver(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", RECEIVER_PORT), Handler)
        self.lock = threading.Lock()
        self.seen = {}  # webhook-id -> times delivered

    def handle_error(self, request, client_address):
        pass  # a killed forebay cuts its connections mid-request: expected here


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        self.rfile.read(length)
        hook = self.headers.get("webhook-id", "")
        with self.server.lock:
            self.server.seen[hook] = self.server.seen.get(hook, 0) + 1
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def config(store, work, i):
    storage = (
        f'url = "sqlite://{work}/forebay.db"'
        if store == "sqlite"
        else f'url = "{PG_URL}"\nschema = "{schema_name()}"'
    )
    return f"""[server]
ingest_listen = "127.0.0.1:{INGEST_PORTS[i]}"
admin_listen = "127.0.0.1:{ADMIN_PORTS[i]}"
[storage]
{storage}
[sources.load]
[destinations.d]
kind = "http"
url = "http://127.0.0.1:{RECEIVER_PORT}/"
timeout = "5s"
retry = {{ schedule = ["100ms", "200ms", "500ms", "1s", "1s", "1s", "1s", "1s"] }}
[[routes]]
source = "load"
destination = "d"
"""


_schema = None


def schema_name():
    global _schema
    if _schema is None:
        _schema = f"forebay_crash_{os.getpid()}_{int(time.time())}"
    return _schema


def psql(sql):
    subprocess.run(["psql", "-qtAX", PG_URL, "-c", sql], check=True, capture_output=True)


def listening(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def start(conf, log):
    p = subprocess.Popen(
        [BIN, "serve", "-c", conf],
        stdout=subprocess.DEVNULL,
        stderr=log,
        env={**os.environ, "FOREBAY_LOG": "warn"},
    )
    return p


def wait_listening(port, proc):
    deadline = time.time() + START_WAIT
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"forebay exited with {proc.returncode} at start; see the log")
        if listening(port):
            return
        time.sleep(0.02)
    raise SystemExit(f"forebay did not listen on {port} within {START_WAIT} s")


class Senders:
    def __init__(self, count, ports):
        self.ports = ports
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked = set()
        self.refused = 0  # 503s and cut connections: the sender would retry
        self.threads = [threading.Thread(target=self.run, args=(n,)) for n in range(count)]

    def run(self, n):
        k = 0
        while not self.stop.is_set():
            port = self.ports[(n + k) % len(self.ports)]
            body = json.dumps({"sender": n, "n": k, "pad": "x" * 200})
            k += 1
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                c.request("POST", "/in/load", body, {"content-type": "application/json"})
                r = c.getresponse()
                data = r.read()
                c.close()
                if 200 <= r.status < 300:
                    with self.lock:
                        self.acked.add(json.loads(data)["id"])
                else:
                    with self.lock:
                        self.refused += 1
            except (OSError, http.client.HTTPException):
                with self.lock:
                    self.refused += 1
                time.sleep(0.01)


def main():
    store = sys.argv[1] if len(sys.argv) > 1 else ""
    if store not in ("sqlite", "postgres"):
        raise SystemExit(__doc__)
    cycles = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    senders = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    count = 1 if store == "sqlite" else 2
    work = tempfile.mkdtemp(prefix="forebay-crash-")
    receiver = Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    if store == "postgres":
        psql(f"DROP SCHEMA IF EXISTS {schema_name()} CASCADE")
    confs, procs = [], []
    log = open(os.path.join(work, "forebay.log"), "ab")
    try:
        for i in range(count):
            conf = os.path.join(work, f"forebay-{i}.toml")
            with open(conf, "w") as f:
                f.write(config(store, work, i))
            confs.append(conf)
            procs.append(start(conf, log))
            wait_listening(INGEST_PORTS[i], procs[i])
        load = Senders(senders, INGEST_PORTS[:count])
        for t in load.threads:
            t.start()
        t0 = time.time()
        recoveries = []
        for _ in range(cycles):
            time.sleep(random.uniform(0.2, 1.0))
            i = random.randrange(count)
            procs[i].send_signal(signal.SIGKILL)
            procs[i].wait()
            killed = time.time()
            procs[i] = start(confs[i], log)
            wait_listening(INGEST_PORTS[i], procs[i])
            recoveries.append(time.time() - killed)
        load.stop.set()
        for t in load.threads:
            t.join()
        loaded = time.time() - t0
        with load.lock:
            acked = set(load.acked)
        deadline = time.time() + DRAIN
        while time.time() < deadline:
            with receiver.lock:
                if acked.issubset(receiver.seen.keys()):
                    break
            time.sleep(0.2)
        with receiver.lock:
            seen = dict(receiver.seen)
        lost = len(acked - seen.keys())
        deliveries = sum(seen.values())
        duplicates = deliveries - len(seen)
        verdict = "PASS" if lost == 0 else "FAIL"
        print(
            f"{verdict} crash loop on {store}: {cycles} SIGKILLs in {loaded:.0f} s, "
            f"{len(acked)} acknowledged, {lost} lost, {duplicates} duplicate deliveries "
            f"({deliveries} in all), {load.refused} requests refused or cut (the sender "
            f"retries those), restart to listening: median "
            f"{sorted(recoveries)[len(recoveries) // 2] * 1000:.0f} ms, "
            f"max {max(recoveries) * 1000:.0f} ms"
        )
        return 0 if lost == 0 else 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
        receiver.shutdown()
        if store == "postgres":
            psql(f"DROP SCHEMA IF EXISTS {schema_name()} CASCADE")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
