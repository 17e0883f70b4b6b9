"""confluent-kafka (librdkafka) clients under client quotas.

Usage: quota_clients.py SCENARIO JSON_OPTIONS

JSON_OPTIONS: bootstrap, topic, client_id, and for produce `bytes` (how
much to write, in records of 10 kB). Scenarios:

- produce: a producer with this client.id writes as fast as it can and
  waits for every delivery; reports the rate it reached and the throttle
  times librdkafka was told (throttle_cb, i.e. throttle_time_ms > 0 in a
  broker's answer).
- consume: a consumer with this client.id reads the topic from the start
  until it has every record; reports the same.

Timing is only reported here; the Rust side judges it with wide margins.
"""

import json
import sys
import time

from confluent_kafka import Consumer, Producer

from common import Deadline, check, emit, fail

RECORD = 10_000


def conf(opts, throttles, errors, extra):
    """Client settings: this client id; throttle times and errors kept."""
    settings = {
        "bootstrap.servers": opts["bootstrap"],
        "client.id": opts["client_id"],
        "throttle_cb": lambda event: throttles.append(event.throttle_time * 1000),
        "error_cb": errors.append,
    }
    settings.update(extra)
    return settings


def produce(opts):
    throttles = []
    errors = []
    # Produce requests of 128 kB instead of 1 MB: with a 1 MB/s quota each
    # request is then a small part of a second's worth, so the rate the
    # client reaches shows the quota, not the rounding of a few large
    # requests.
    producer = Producer(conf(opts, throttles, errors, {"linger.ms": 5, "batch.size": 131072}))
    count = opts["bytes"] // RECORD
    payload = b"q" * RECORD
    delivered = []

    def on_delivery(err, msg):
        if err is not None:
            fail(f"delivery failed: {err}")
        delivered.append(msg.offset())

    started = time.monotonic()
    for i in range(count):
        while True:
            try:
                producer.produce(opts["topic"], payload, key=str(i), on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    remaining = producer.flush(120)
    elapsed = time.monotonic() - started
    check(remaining == 0, f"{remaining} records not delivered")
    check(len(delivered) == count, f"delivered {len(delivered)} of {count}")
    producer.poll(0.5)
    emit(report(count * RECORD, elapsed, throttles, errors))


def consume(opts):
    throttles = []
    errors = []
    extra = {
        "group.id": opts["client_id"] + "-group",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
    consumer = Consumer(conf(opts, throttles, errors, extra))
    consumer.subscribe([opts["topic"]])
    want = opts["bytes"] // RECORD
    got = 0
    received = 0
    started = None
    deadline = Deadline(120)
    while got < want:
        check(not deadline.expired(), f"consumed {got} of {want} records in time")
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            fail(f"consume error: {msg.error()}")
        if started is None:
            started = time.monotonic()
        got += 1
        received += len(msg.value())
    elapsed = time.monotonic() - started
    consumer.poll(0.5)
    consumer.close()
    emit(report(received, elapsed, throttles, errors))


def report(nbytes, elapsed, throttles, errors):
    return {
        "bytes": nbytes,
        "seconds": round(elapsed, 3),
        "rate": nbytes / max(elapsed, 1e-6),
        "throttle_events": len(throttles),
        "max_throttle_ms": max(throttles, default=0),
        "errors": [str(e) for e in errors],
    }


def main():
    scenario, opts = sys.argv[1], json.loads(sys.argv[2])
    {"produce": produce, "consume": consume}[scenario](opts)


if __name__ == "__main__":
    main()
