#!/usr/bin/env python3
"""Producer throughput and latency with librdkafka (confluent-kafka), like
Kafka's kafka-producer-perf-test: one client process pushing fixed-size
records as fast as librdkafka batches them. Prints one summary line with
records/s and the p50/p99/max delivery latency (librdkafka's own
per-message latency: from produce() to the delivery report, so queueing in
the client is included, as in kafka-producer-perf-test).

    .venv/bin/python scripts/bench_confluent.py --bootstrap 127.0.0.1:9092 \
        --topic perf --records 2000000 --size 100 --acks 1
"""
import argparse
import time

from confluent_kafka import Producer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--topic", default="perf")
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--acks", default="1")
    ap.add_argument("--compression", default="none")
    ap.add_argument("--linger-ms", default="5")
    ap.add_argument("--batch-size", default="1000000")
    ap.add_argument("--idempotence", action="store_true")
    ap.add_argument(
        "--rate",
        type=float,
        default=0,
        help="records/s to pace at (0: as fast as possible); paced runs measure "
        "the broker's latency instead of the client's queue",
    )
    args = ap.parse_args()

    errors = 0
    acked = 0
    latencies = []

    def on_delivery(err, msg):
        nonlocal errors, acked
        if err is not None:
            errors += 1
        else:
            acked += 1
            latencies.append(msg.latency())

    producer = Producer({
        "bootstrap.servers": args.bootstrap,
        "acks": args.acks,
        "compression.type": args.compression,
        "linger.ms": args.linger_ms,
        "batch.size": args.batch_size,
        "queue.buffering.max.messages": 2_000_000,
        "queue.buffering.max.kbytes": 2_000_000,
        "enable.idempotence": args.idempotence,
    })
    value = b"x" * args.size
    # Warm up (connections, metadata, the idempotent producer id) so the
    # figures are the steady state's.
    for _ in range(1000):
        producer.produce(args.topic, value)
    producer.flush(30)
    started = time.perf_counter()
    for i in range(args.records):
        if args.rate and i % 100 == 0:
            producer.poll(0)
            ahead = started + i / args.rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
        while True:
            try:
                producer.produce(args.topic, value, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush(120)
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p):
        if not latencies:
            return float("nan")
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1000

    print(
        f"librdkafka produce: {acked} acked ({errors} errors) in {elapsed:.2f} s: "
        f"{acked / elapsed:.0f} records/s, {acked * args.size / elapsed / 1e6:.1f} MB/s, "
        f"latency p50 {pct(0.5):.1f} ms p99 {pct(0.99):.1f} ms max {pct(1.0):.1f} ms "
        f"(acks={args.acks}, idempotence={args.idempotence}, rate={args.rate or 'max'}, "
        f"{args.size} B records, "
        f"compression={args.compression})"
    )


if __name__ == "__main__":
    main()
