"""What the fault scenarios share: the forebay binary started and killed, a recording
receiver, senders that note every acknowledged id, and PostgreSQL by psql. Only
127.0.0.1 is used. Standard library only."""

import http.client
import http.server
import json
import os
import socket
import subprocess
import sys
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


def config(store, work, i, routed=True):
    """Process `i`'s configuration: source `load`, routed (unless not `routed`) to the
    receiver, on an SQLite file in `work` or on the PostgreSQL schema of this run."""
    storage = (
        f'url = "sqlite://{work}/forebay.db"'
        if store == "sqlite"
        else f'url = "{PG_URL}"\nschema = "{schema_name()}"'
    )
    head = f"""[server]
ingest_listen = "127.0.0.1:{INGEST_PORTS[i]}"
admin_listen = "127.0.0.1:{ADMIN_PORTS[i]}"
[storage]
{storage}
[sources.load]
"""
    return head if not routed else head + f"""[destinations.d]
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


def arg(i, default):
    """Command-line argument `i` (1-based), of `default`'s type, or `default`."""
    return type(default)(sys.argv[i]) if len(sys.argv) > i else default


def peak_rss_mib(pid):
    """The peak resident memory of process `pid` (VmHWM), in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    return 0


def start_on_sqlite(work, routed=True):
    """forebay (process 0) on an SQLite file in `work`, its log there, once listening."""
    conf = os.path.join(work, "forebay.toml")
    with open(conf, "w") as f:
        f.write(config("sqlite", work, 0, routed))
    proc = start(conf, open(os.path.join(work, "forebay.log"), "ab"))
    wait_listening(INGEST_PORTS[0], proc)
    return proc


def stop(proc):
    """SIGTERM, then SIGKILL after 30 s (nothing for None)."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


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
    """Threads posting unique bodies without pause, round-robin over `ports`."""

    def __init__(self, count, ports):
        self.ports = ports
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked = set()
        self.ack_times = []  # when each 2xx came back
        self.statuses = {}  # status (or "cut") -> count, for everything not 2xx
        self.without_retry_after = 0  # 503s that did not say when to retry
        self.refused = 0  # not 2xx, or the connection cut: the sender would retry
        self.threads = [threading.Thread(target=self.run, args=(n,)) for n in range(count)]

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join()

    def run(self, n):
        k = 0
        while not self.stop.is_set():
            port = self.ports[(n + k) % len(self.ports)]
            body = json.dumps({"sender": n, "n": k, "at": time.time(), "pad": "x" * 200})
            k += 1
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                c.request("POST", "/in/load", body, {"content-type": "application/json"})
                r = c.getresponse()
                data = r.read()
                retry_after = r.getheader("retry-after")
                c.close()
                with self.lock:
                    if 200 <= r.status < 300:
                        self.acked.add(json.loads(data)["id"])
                        self.ack_times.append(time.time())
                        continue
                    self.refused += 1
                    self.statuses[r.status] = self.statuses.get(r.status, 0) + 1
                    if r.status == 503 and not retry_after:
                        self.without_retry_after += 1
                time.sleep(0.01)
            except (OSError, http.client.HTTPException):
                with self.lock:
                    self.refused += 1
                    self.statuses["cut"] = self.statuses.get("cut", 0) + 1
                time.sleep(0.01)


def wait_delivered(receiver, acked):
    """Waits (up to DRAIN s) until every id in `acked` reached `receiver`; returns
    (lost, duplicate deliveries, deliveries in all)."""
    deadline = time.time() + DRAIN
    while time.time() < deadline:
        with receiver.lock:
            if acked.issubset(receiver.seen.keys()):
                break
        time.sleep(0.2)
    with receiver.lock:
        seen = dict(receiver.seen)
    deliveries = sum(seen.values())
    return len(acked - seen.keys()), deliveries - len(seen), deliveries
