#!/usr/bin/env python3
"""Disk full under load, SQLite: forebay must answer 503 with Retry-After while its
disk is full (never a 2xx for what was not committed), keep its log short, take writes
again by itself when space returns, and leave a database that passes
`PRAGMA integrity_check` with every acknowledged event in it and delivered.

The database lives on a tmpfs of SIZE MiB mounted for the run (needs root). Senders
post without pause until the disk has been full for SECONDS; then the tmpfs is grown
(`mount -o remount,size=…`) and the run measures the time to the first 2xx. Then the
senders stop, every acknowledged id must reach the receiver, forebay is stopped, and
the file is checked.

Usage: bench/faults/disk_full.py [SIZE_MIB] [SECONDS] [SENDERS]   (defaults: 32, 5, 8)
"""

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from common import (
    arg,
    INGEST_PORTS,
    Receiver,
    Senders,
    config,
    start,
    stop,
    wait_delivered,
    wait_listening,
)


def mount(path, mib, remount=False):
    options = f"size={mib}m" + (",remount" if remount else "")
    args = ["mount", "-o", options] + (["tmpfs"] if remount else ["-t", "tmpfs", "tmpfs"])
    subprocess.run(args + [path], check=True, capture_output=True)


def main():
    size = arg(1, 32)
    seconds = arg(2, 5.0)
    senders = arg(3, 8)
    work = tempfile.mkdtemp(prefix="forebay-full-")
    disk = os.path.join(work, "disk")
    os.mkdir(disk)
    mount(disk, size)
    receiver = Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    conf = os.path.join(work, "forebay.toml")
    with open(conf, "w") as f:
        f.write(config("sqlite", disk, 0))
    log_path = os.path.join(work, "forebay.log")
    log = open(log_path, "ab")
    proc = start(conf, log)
    try:
        wait_listening(INGEST_PORTS[0], proc)
        load = Senders(senders, INGEST_PORTS[:1])
        load.start()
        # Until the disk has been refusing writes for a while.
        deadline = time.time() + 300
        full_since = None
        while time.time() < deadline:
            with load.lock:
                refused = load.statuses.get(503, 0)
            if refused and full_since is None:
                full_since = time.time()
            if full_since and time.time() - full_since >= seconds:
                break
            time.sleep(0.05)
        if full_since is None:
            raise SystemExit(f"the {size} MiB disk never filled within 300 s")
        with load.lock:
            acked_when_full = len(load.acked)
            statuses = dict(load.statuses)
            no_retry = load.without_retry_after
        mount(disk, size * 4, remount=True)
        grown = time.time()
        recovered = None
        while time.time() < grown + 60:
            with load.lock:
                after = [a for a in load.ack_times if a >= grown]
            if after:
                recovered = min(after) - grown
                break
            time.sleep(0.02)
        time.sleep(2)
        load.finish()
        acked = set(load.acked)
        lost_delivery, duplicates, deliveries = wait_delivered(receiver, acked)
        running = proc.poll() is None
        stop(proc)
        db = os.path.join(disk, "forebay.db")
        integrity = subprocess.run(
            ["sqlite3", db, "PRAGMA integrity_check"], capture_output=True, text=True
        ).stdout.strip()
        ids = subprocess.run(
            ["sqlite3", db, "SELECT id FROM events"], capture_output=True, text=True
        ).stdout.split()
        missing = len(acked - set(ids))
        log.flush()
        with open(log_path, "rb") as f:
            lines = f.read().decode(errors="replace").splitlines()
        log_lines = len(lines)
        if os.environ.get("SHOW_LOG"):
            print("\n".join(lines), file=sys.stderr)
        failed = (
            missing
            or lost_delivery
            or integrity != "ok"
            or recovered is None
            or no_retry
            or not running
        )
        rec = "never" if recovered is None else f"{recovered * 1000:.0f} ms"
        print(
            f"{'FAIL' if failed else 'PASS'} disk full (SQLite on a {size} MiB tmpfs): "
            f"{acked_when_full} acknowledged before it filled, {len(acked)} in all; while full "
            f"{statuses}, 503 without Retry-After: {no_retry}; first 2xx {rec} after space "
            f"returned; acknowledged missing from the file: {missing}, not delivered: "
            f"{lost_delivery}; {duplicates} duplicate deliveries ({deliveries} in all); "
            f"integrity_check: {integrity}; forebay "
            f"{'kept running' if running else 'EXITED'}; {log_lines} lines in its log"
        )
        return 1 if failed else 0
    finally:
        stop(proc)
        receiver.shutdown()
        subprocess.run(["umount", disk], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
