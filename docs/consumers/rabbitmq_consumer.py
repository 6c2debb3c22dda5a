"""Reads what forebay published to a RabbitMQ queue.

    python3 rabbitmq_consumer.py --url amqp://guest:guest@127.0.0.1:5672/%2f --queue webhooks

forebay publishes persistent messages with `message_id` set to the webhook id and the
metadata as AMQP headers. Each message is acknowledged after it was handled, so one
that was not goes back to the queue.
"""

import pika

from common import Handler, arguments

args = arguments(
    __doc__.splitlines()[0], url="amqp://guest:guest@127.0.0.1:5672/%2f", queue="webhooks"
)
handler = Handler(args.count)
connection = pika.BlockingConnection(pika.URLParameters(args.url))
channel = connection.channel()
channel.basic_qos(prefetch_count=100)


def on_message(channel, method, properties, body):
    headers = {name: value.decode() if isinstance(value, bytes) else value
               for name, value in (properties.headers or {}).items()}
    headers.setdefault("webhook-id", properties.message_id)
    running = handler.handle(headers, body)
    channel.basic_ack(method.delivery_tag)
    if not running:
        channel.stop_consuming()


channel.basic_consume(args.queue, on_message)
channel.start_consuming()
connection.close()
