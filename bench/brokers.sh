#!/usr/bin/env bash
# Broker destinations beside HTTP: the same backlog of EVENTS (default 50,000) delivered
# by one `--role deliver` process to the bare HTTP server (with HTTP's default
# max_concurrency of 64, and with 256 like a broker's), then into NATS JetStream,
# RabbitMQ, Redis Streams and Kafka (tansu, in memory) on 127.0.0.1 with their defaults
# (bench/deliver.sh once per line, in one run). Every delivery counts once its broker
# acknowledged it. RabbitMQ runs twice: into a classic queue and into a quorum queue
# (QUEUE_TYPE=quorum). Last, RabbitMQ's own ceiling without forebay for each queue type:
# persistent messages published with confirms, 256 in flight.
#
# Usage: bench/brokers.sh [EVENTS]
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-50000}
bench/deliver.sh "$events" plain http | tail -1
MAX_CONCURRENCY=256 bench/deliver.sh "$events" plain http | tail -1 | sed 's/to http:/to http (max_concurrency 256):/'
for kind in nats rabbitmq redis kafka; do
  bench/deliver.sh "$events" plain "$kind" | tail -1
done
QUEUE_TYPE=quorum bench/deliver.sh "$events" plain rabbitmq | tail -1 | sed 's/to rabbitmq:/to rabbitmq (quorum queue):/'
queue=forebayflood$$
trap 'target/release/examples/broker-setup delete rabbitmq "$queue" 2>/dev/null || true' EXIT
for type in classic quorum; do
  QUEUE_TYPE=$type target/release/examples/broker-setup create rabbitmq "$queue"
  echo "RabbitMQ alone, $type queue: $(target/release/examples/broker-setup flood rabbitmq "$queue")"
  target/release/examples/broker-setup delete rabbitmq "$queue"
done
