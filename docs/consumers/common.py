"""What every consumer example shares: the handler, and dropping repeats.

forebay delivers at least once: a publish whose acknowledgement was lost is published
again, with the same `webhook-id`. A consumer drops what it has already handled by that
id. Here the ids seen are kept in memory; a real consumer keeps them where its own
writes go (a unique key in its database), so a restart does not forget them.
"""

import argparse
import json
import sys


class Handler:
    """Handles each event once; stops the consumer after `count` events if given."""

    def __init__(self, count=None):
        self.seen = set()
        self.count = count

    def handle(self, headers, body):
        """Called for every message; returns False once the consumer should stop."""
        webhook_id = headers.get("webhook-id")
        if webhook_id not in self.seen:
            # Your work goes here. This example prints the event as one JSON line.
            print(
                json.dumps(
                    {
                        "webhook_id": webhook_id,
                        "source": headers.get("forebay-source"),
                        "attempt": headers.get("forebay-attempt"),
                        "body": body.decode("utf-8", "replace"),
                    }
                ),
                flush=True,
            )
            # Only once the work is done: if it fails, the message is not acknowledged
            # and comes again, and must not be taken for a repeat then.
            self.seen.add(webhook_id)
        return self.count is None or len(self.seen) < self.count


def arguments(description, **defaults):
    """The command line every example takes: where to read, and an optional --count."""
    parser = argparse.ArgumentParser(description=description)
    for name, default in defaults.items():
        parser.add_argument("--" + name, default=default)
    parser.add_argument(
        "--count", type=int, help="stop after this many distinct events (default: run on)"
    )
    return parser.parse_args()


def fail(message):
    print(message, file=sys.stderr)
    sys.exit(1)
