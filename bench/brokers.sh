#!/usr/bin/env bash
# Broker destinations beside HTTP: the same backlog of EVENTS (default 50,000) delivered
# by one `--role deliver` process to the bare HTTP server, then into NATS JetStream,
# RabbitMQ, Redis Streams and Kafka (tansu, in memory) on 127.0.0.1 (bench/deliver.sh once per kind, in one run).
# Prints one line per kind; every delivery counts once its broker acknowledged it.
#
# Usage: bench/brokers.sh [EVENTS]
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-50000}
for kind in http nats rabbitmq redis kafka; do
  bench/deliver.sh "$events" plain "$kind" | tail -1
done
