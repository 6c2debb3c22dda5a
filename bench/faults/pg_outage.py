#!/usr/bin/env python3
"""PostgreSQL outage under load: forebay must answer 503 with Retry-After while the
database is away (never a 2xx for what was not committed), recover by itself, and
deliver every acknowledged event.

One forebay process on a fresh schema, senders posting without pause. Three outages, a
few seconds of steady load apart:
  restart   pg_ctlcluster … restart (fast shutdown, then start)
  stop      pg_ctlcluster … stop, SECONDS of no database, then start
  cut       every connection of forebay ended with pg_terminate_backend
For each: the answers seen while it lasted, and the recovery time (from the database
answering again to the first 2xx). Then every acknowledged id must reach the receiver.

This restarts the machine's PostgreSQL cluster: run it when nothing else uses it.
Usage: bench/faults/pg_outage.py [SECONDS] [SENDERS]   (defaults: 5, 8; needs root
for pg_ctlcluster; FOREBAY_BIN, FOREBAY_TEST_POSTGRES_URL as in common.py)
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
    psql,
    schema_name,
    start,
    stop,
    wait_delivered,
    wait_listening,
)

STEADY = 3  # seconds of normal load before and between outages


def cluster():
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    return ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main"]


def ctl(action):
    subprocess.run(cluster() + [action], check=True, capture_output=True)


def database_up():
    """Waits until PostgreSQL answers a query; returns when it did."""
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            psql("SELECT 1")
            return time.time()
        except subprocess.CalledProcessError:
            time.sleep(0.05)
    raise SystemExit("PostgreSQL did not come back within 60 s")


def first_ack_after(load, t):
    deadline = time.time() + 60
    while time.time() < deadline:
        with load.lock:
            after = [a for a in load.ack_times if a >= t]
        if after:
            return min(after)
        time.sleep(0.02)
    return None


def snapshot(load):
    with load.lock:
        return dict(load.statuses), load.without_retry_after


def difference(before, after):
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def main():
    seconds = arg(1, 5.0)
    senders = arg(2, 8)
    work = tempfile.mkdtemp(prefix="forebay-outage-")
    receiver = Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    psql(f"DROP SCHEMA IF EXISTS {schema_name()} CASCADE")
    log = open(os.path.join(work, "forebay.log"), "ab")
    conf = os.path.join(work, "forebay.toml")
    with open(conf, "w") as f:
        f.write(config("postgres", work, 0))
    proc = start(conf, log)
    rows = []
    try:
        wait_listening(INGEST_PORTS[0], proc)
        load = Senders(senders, INGEST_PORTS[:1])
        load.start()
        for name in ("restart", "stop", "cut"):
            time.sleep(STEADY)
            statuses, no_retry = snapshot(load)
            began = time.time()
            if name == "restart":
                ctl("restart")
            elif name == "stop":
                ctl("stop")
                time.sleep(seconds)
                ctl("start")
            else:
                psql(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE application_name = 'forebay/{schema_name()}'"
                )
            up = database_up()
            acked = first_ack_after(load, up)
            now_statuses, now_no_retry = snapshot(load)
            rows.append(
                (
                    name,
                    up - began,
                    None if acked is None else acked - up,
                    difference(statuses, now_statuses),
                    now_no_retry - no_retry,
                )
            )
        time.sleep(STEADY)
        load.finish()
        lost, duplicates, deliveries = wait_delivered(receiver, set(load.acked))
        failed = lost > 0 or any(r[2] is None or r[4] for r in rows) or proc.poll() is not None
        log.flush()
        with open(os.path.join(work, "forebay.log"), "rb") as f:
            log_lines = sum(1 for _ in f)
        print(
            f"{'FAIL' if failed else 'PASS'} PostgreSQL outages: {len(load.acked)} acknowledged, "
            f"{lost} lost, {duplicates} duplicate deliveries ({deliveries} in all); "
            f"forebay {'still running' if proc.poll() is None else 'EXITED'}; "
            f"{log_lines} lines in its log (FOREBAY_LOG=warn)"
        )
        for name, away, recovery, statuses, no_retry in rows:
            rec = "never" if recovery is None else f"{recovery * 1000:.0f} ms"
            print(
                f"  {name}: database away {away:.1f} s; first 2xx {rec} after it answered; "
                f"meanwhile {statuses or 'no refusal'}; 503 without Retry-After: {no_retry}"
            )
        return 1 if failed else 0
    finally:
        subprocess.run(cluster() + ["start"], capture_output=True)
        stop(proc)
        receiver.shutdown()
        try:
            psql(f"DROP SCHEMA IF EXISTS {schema_name()} CASCADE")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
