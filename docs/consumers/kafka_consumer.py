"""Reads what forebay produced to a Kafka topic, in a consumer group.

    python3 kafka_consumer.py --brokers 127.0.0.1:9092 --topic webhooks

The metadata is in the record headers; the key is the route's ordering key (if it has
one). Offsets are committed after the record was handled, so one that was not is read
again after a restart.
"""

from confluent_kafka import Consumer

from common import Handler, arguments, fail

args = arguments(
    __doc__.splitlines()[0], brokers="127.0.0.1:9092", topic="webhooks", group="webhook-consumers"
)
handler = Handler(args.count)
consumer = Consumer(
    {
        "bootstrap.servers": args.brokers,
        "group.id": args.group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        # A consumer that stops is noticed after 6 s (the least brokers allow by
        # default), so its partitions go to the others soon, and joining takes as long.
        "session.timeout.ms": 6000,
    }
)
consumer.subscribe([args.topic])
running = True
while running:
    record = consumer.poll(1.0)
    if record is None:
        continue
    if record.error():
        fail(f"Kafka: {record.error()}")
    headers = {name: (value or b"").decode() for name, value in record.headers() or []}
    running = handler.handle(headers, record.value() or b"")
    consumer.commit(record, asynchronous=False)
consumer.close()
