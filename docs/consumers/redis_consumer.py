"""Reads what forebay added to a Redis stream, with a consumer group.

    python3 redis_consumer.py --url redis://127.0.0.1:6379 --stream webhooks

Each entry has the field `body` and one field per header. The group is made (from the
start of the stream) if it does not exist. An entry is acknowledged (XACK) after it was
handled; one that was not stays pending for the group, to be claimed again.
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
running = True
while running:
    # ">": entries no consumer of the group has been given yet.
    batches = client.xreadgroup(args.group, args.consumer, {args.stream: ">"}, count=100, block=1000)
    for _stream, entries in batches:
        for entry_id, fields in entries:
            fields = {name.decode(): value for name, value in fields.items()}
            body = fields.pop("body", b"")
            headers = {name: value.decode() for name, value in fields.items()}
            running = handler.handle(headers, body)
            client.xack(args.stream, args.group, entry_id)
            if not running:
                break
        if not running:
            break
