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

import os
import random
import shutil
import signal
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


def main():
    store = sys.argv[1] if len(sys.argv) > 1 else ""
    if store not in ("sqlite", "postgres"):
        raise SystemExit(__doc__)
    cycles = arg(2, 50)
    senders = arg(3, 8)
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
        load.start()
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
        load.finish()
        loaded = time.time() - t0
        acked = set(load.acked)
        lost, duplicates, deliveries = wait_delivered(receiver, acked)
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
            stop(p)
        receiver.shutdown()
        if store == "postgres":
            psql(f"DROP SCHEMA IF EXISTS {schema_name()} CASCADE")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
