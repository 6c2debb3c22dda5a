"""Reads what forebay published to a NATS JetStream stream, with a durable pull consumer.

    python3 nats_consumer.py --url nats://127.0.0.1:4222 --stream WEBHOOKS --subject 'webhooks.>'

Each message is acknowledged after it was handled, so one that was not is delivered to
the consumer again. forebay sets `Nats-Msg-Id` to the webhook id, so the stream's own
duplicate window already drops most repeats; the handler drops the rest.
"""

import asyncio

import nats
from nats.errors import TimeoutError as NoMessages

from common import Handler, arguments


async def main():
    args = arguments(
        __doc__.splitlines()[0],
        url="nats://127.0.0.1:4222",
        stream="WEBHOOKS",
        subject="webhooks.>",
        durable="webhook-consumer",
    )
    handler = Handler(args.count)
    connection = await nats.connect(args.url)
    js = connection.jetstream()
    subscription = await js.pull_subscribe(args.subject, durable=args.durable, stream=args.stream)
    running = True
    while running:
        try:
            messages = await subscription.fetch(batch=100, timeout=1)
        except NoMessages:
            continue
        for message in messages:
            running = handler.handle(message.headers or {}, message.data)
            await message.ack()
            if not running:
                break
    await connection.drain()


asyncio.run(main())
