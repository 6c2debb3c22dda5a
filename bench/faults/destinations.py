#!/usr/bin/env python3
"""Faulty destinations beside a healthy one: the healthy destination's delivery latency
must not suffer from the others.

Every event is routed to a healthy receiver and, in the faulty run, also to six bad
destinations on 127.0.0.1: one that accepts and never answers (hang), one that resets
every connection (reset), one that drips its answer a byte every 100 ms (drip), one that
answers a 100 MiB body (huge), an https URL on a plain-HTTP port (TLS error), and one
that answers 429 with Retry-After: 1 (429 storm). Destinations have forebay's defaults
(`max_concurrency` 64, the default timeout, retries and breaker). Senders post at a
steady rate for DURATION seconds; latency is from the sender's clock in the body to the
healthy receiver's arrival. The same load is run first with the healthy route alone.

Two more destinations fail at name resolution: one whose name the resolver answers
NXDOMAIN at once (dns-nx), and one whose lookup is never answered (dns-hang; the
resolver's own timeouts end it). So that no lookup can leave the machine, the script
runs itself in a network namespace with only a loopback interface (`unshare`, as root)
and a resolv.conf of its own that names a DNS server it runs on 127.0.0.1:53. Where
namespaces are not permitted, those two are left out and the script says so.

Usage: bench/faults/destinations.py [DURATION] [RATE]   (defaults: 20 s, 200 events/s)
"""

import json
import os
import shutil
import socket
import socketserver
import struct
import subprocess
import sys
import tempfile
import threading
import time
import http.client
import http.server

from common import arg, peak_rss_mib, BIN, INGEST_PORTS, ADMIN_PORTS, start, stop, wait_listening

HEALTHY_PORT = 18400
BAD_PORTS = {"hang": 18401, "reset": 18402, "drip": 18403, "huge": 18404, "throttle": 18405}
DNS_NAMES = {"dns-nx": "nx.forebay-faults.test", "dns-hang": "hang.forebay-faults.test"}
IN_NAMESPACE = "FOREBAY_FAULTS_NETNS"


def isolate():
    """Re-runs this script in a network namespace with only loopback and a resolv.conf
    naming 127.0.0.1; returns its exit status, or None where that is not permitted."""
    if os.environ.get(IN_NAMESPACE) or shutil.which("unshare") is None or os.geteuid() != 0:
        return None
    resolv = tempfile.NamedTemporaryFile("w", prefix="forebay-resolv-", delete=False)
    resolv.write("nameserver 127.0.0.1\noptions timeout:2 attempts:1\n")
    resolv.close()
    inner = (
        "ip link set lo up && mount --bind \"$1\" /etc/resolv.conf && shift && exec \"$@\""
    )
    try:
        probe = subprocess.run(
            ["unshare", "-n", "-m", "sh", "-c", "ip link set lo up"], capture_output=True
        )
        if probe.returncode != 0:
            return None
        env = dict(os.environ, **{IN_NAMESPACE: "1"})
        return subprocess.run(
            ["unshare", "-n", "-m", "sh", "-c", inner, "sh", resolv.name, sys.executable]
            + sys.argv,
            env=env,
        ).returncode
    finally:
        os.unlink(resolv.name)


class Dns(socketserver.ThreadingUDPServer):
    """Answers NXDOMAIN for the dns-nx name and nothing at all for the others."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 53), DnsHandler)


class DnsHandler(socketserver.BaseRequestHandler):
    def handle(self):
        query, sock = self.request
        if len(query) < 12 or DNS_NAMES["dns-nx"].split(".")[0].encode() not in query:
            return
        (ident, flags) = struct.unpack("!HH", query[:4])
        # A response (QR), the query's opcode and RD, recursion available, NXDOMAIN; the
        # question echoed, no answers.
        answer = struct.pack("!HHHHHH", ident, 0x8000 | (flags & 0x7900) | 0x0080 | 3, 1, 0, 0, 0)
        sock.sendto(answer + query[12:], self.client_address)


class Healthy(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", HEALTHY_PORT), HealthyHandler)
        self.lock = threading.Lock()
        self.latencies = []

    def handle_error(self, request, client_address):
        pass


class HealthyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        sent = json.loads(body)["at"]
        with self.server.lock:
            self.server.latencies.append(time.time() - sent)
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class Bad(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass


def bad_handler(kind):
    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            s = self.request
            if kind == "hang":
                while s.recv(65536):
                    pass
            elif kind == "reset":
                s.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                s.close()
            elif kind == "drip":
                s.recv(65536)
                s.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n")
                for _ in range(1000):
                    s.sendall(b"x")
                    time.sleep(0.1)
            elif kind == "huge":
                s.recv(65536)
                s.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 104857600\r\n\r\n")
                chunk = b"\0" * 65536
                for _ in range(1600):
                    s.sendall(chunk)
            elif kind == "throttle":
                s.recv(65536)
                s.sendall(
                    b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 1\r\ncontent-length: 0\r\n\r\n"
                )

    return Handler


def config(work, faulty):
    dests = {"healthy": f"http://127.0.0.1:{HEALTHY_PORT}/"}
    if faulty:
        for kind, port in BAD_PORTS.items():
            dests[kind] = f"http://127.0.0.1:{port}/"
        dests["tls"] = f"https://127.0.0.1:{HEALTHY_PORT}/"
        if os.environ.get(IN_NAMESPACE):
            for kind, name in DNS_NAMES.items():
                dests[kind] = f"http://{name}:{HEALTHY_PORT}/"
    text = f"""[server]
ingest_listen = "127.0.0.1:{INGEST_PORTS[0]}"
admin_listen = "127.0.0.1:{ADMIN_PORTS[0]}"
[storage]
url = "sqlite://{work}/forebay.db"
[sources.load]
"""
    for name, url in dests.items():
        text += f'[destinations.{name}]\nkind = "http"\nurl = "{url}"\n'
    for name in dests:
        text += f'[[routes]]\nsource = "load"\ndestination = "{name}"\n'
    return text


def post_steadily(duration, rate):
    """Posts `rate` events a second for `duration` seconds; returns how many were 2xx."""
    acked = 0
    interval = 1.0 / rate
    conn = http.client.HTTPConnection("127.0.0.1", INGEST_PORTS[0], timeout=10)
    t0 = time.time()
    n = 0
    while time.time() - t0 < duration:
        body = json.dumps({"n": n, "at": time.time()})
        conn.request("POST", "/in/load", body, {"content-type": "application/json"})
        r = conn.getresponse()
        r.read()
        acked += 200 <= r.status < 300
        n += 1
        time.sleep(max(0.0, t0 + n * interval - time.time()))
    conn.close()
    return acked


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def run(faulty, duration, rate, healthy):
    work = tempfile.mkdtemp(prefix="forebay-dest-")
    conf = os.path.join(work, "forebay.toml")
    with open(conf, "w") as f:
        f.write(config(work, faulty))
    log = open(os.path.join(work, "forebay.log"), "ab")
    proc = start(conf, log)
    with healthy.lock:
        healthy.latencies.clear()
    try:
        wait_listening(INGEST_PORTS[0], proc)
        acked = post_steadily(duration, rate)
        deadline = time.time() + 30
        while time.time() < deadline:
            with healthy.lock:
                if len(healthy.latencies) >= acked:
                    break
            time.sleep(0.1)
        with healthy.lock:
            lat = list(healthy.latencies)
        c = http.client.HTTPConnection("127.0.0.1", ADMIN_PORTS[0], timeout=10)
        c.request("GET", "/api/v1/destinations")
        states = {
            d["name"]: f"{d['breaker']}/{d['backlog']}"
            for d in json.loads(c.getresponse().read())["data"]
        }
        c.close()
        rss = peak_rss_mib(proc.pid)
        return acked, lat, proc.poll() is None, rss, states
    finally:
        stop(proc)
        shutil.rmtree(work, ignore_errors=True)


def main():
    isolated = isolate()
    if isolated is not None:
        return isolated
    duration = arg(1, 20.0)
    rate = arg(2, 200.0)
    print(f"{BIN}: {duration:.0f} s at {rate:.0f} events/s")
    faults = len(BAD_PORTS) + 1
    if os.environ.get(IN_NAMESPACE):
        dns = Dns()
        threading.Thread(target=dns.serve_forever, daemon=True).start()
        faults += len(DNS_NAMES)
        print("  in a network namespace with only loopback: the DNS cases run")
    else:
        print("  no network namespace here (needs root and unshare): the DNS cases are left out")
    healthy = Healthy()
    threading.Thread(target=healthy.serve_forever, daemon=True).start()
    bad = []
    for kind, port in BAD_PORTS.items():
        server = Bad(("127.0.0.1", port), bad_handler(kind))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        bad.append(server)
    results = {}
    for faulty in (False, True):
        acked, lat, running, rss, states = run(faulty, duration, rate, healthy)
        results[faulty] = (acked, lat)
        label = f"with {faults} faulty destinations" if faulty else "healthy destination alone  "
        if lat:
            figures = (
                f"p50 {percentile(lat, 0.5) * 1000:.1f} ms, p99 {percentile(lat, 0.99) * 1000:.1f} ms, "
                f"max {max(lat) * 1000:.1f} ms"
            )
        else:
            figures = "no delivery"
        print(
            f"  {label}: {acked} acknowledged, {len(lat)} delivered to the healthy one; "
            f"latency {figures}; peak RSS {rss} MiB; forebay {'running' if running else 'EXITED'}"
        )
        print(f"    breaker/backlog at the end: {states}")
    base, faulty = results[False], results[True]
    ok = (
        faulty[1]
        and len(faulty[1]) >= faulty[0]
        and percentile(faulty[1], 0.99) <= max(2 * percentile(base[1], 0.99), 0.1)
    )
    print(
        f"{'PASS' if ok else 'FAIL'} healthy p99 beside faulty destinations within 2x (or 100 ms) of alone"
    )
    healthy.shutdown()
    for s in bad:
        s.shutdown()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
