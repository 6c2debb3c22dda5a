"""Reads what forebay added to a Redis stream, with a consumer group.

    python3 redis_consumer.py --url redis://127.0.0.1:6379 --stream webhooks

Each entry has the field `body` and one field per header. The group is made (from the
start of the stream) if it does not exist. An entry is acknowledged (XACK) after it was
handled; one that was not (the consumer stopped or crashed first) stays pending for this
consumer, and is read again first when it starts again under the same name.
"""

import redis

from common import Handler, arguments

args = arguments(
    __doc__.splitlines()[0],
    url="redis://127.0.0.1:6379",
    stream="webhooks",
    group="webhook-consumers",
    consumer="consumer-1",
)
handler = Handler(args.count)
client = redis.Redis.from_url(args.url)
try:
    client.xgroup_create(args.stream, args.group, id="0", mkstream=True)
except redis.ResponseError as e:
    if "BUSYGROUP" not in str(e):
        raise


def read(start):
    """Up to 100 entries: this consumer's pending ones from `start`, or new ones (">")."""
    replies = client.xreadgroup(
        args.group, args.consumer, {args.stream: start}, count=100, block=None if start != ">" else 1000
    )
    return [entry for _stream, entries in replies for entry in entries]


def handle(entries):
    """Handles and acknowledges each entry; False once the consumer should stop."""
    for entry_id, fields in entries:
        fields = {name.decode(): value for name, value in fields.items()}
        body = fields.pop("body", b"")
        headers = {name: value.decode() for name, value in fields.items()}
        running = handler.handle(headers, body)
        client.xack(args.stream, args.group, entry_id)
        if not running:
            return False
    return True


# First what this consumer was given before and did not acknowledge, then new entries.
running = True
pending = read("0")
while running and pending:
    running = handle(pending)
    pending = read(pending[-1][0]) if running else []
while running:
    running = handle(read(">"))
