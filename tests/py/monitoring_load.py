"""Steady load for the monitoring test: `produce BOOTSTRAP TOPIC RATE` sends
RATE records a second (acks=all) until killed; `consume BOOTSTRAP TOPIC
GROUP` reads in a consumer group, committing every second, until killed."""

import sys
import time

from confluent_kafka import Consumer, Producer


def produce(bootstrap, topic, rate):
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 20})
    sent = 0
    start = time.monotonic()
    while True:
        due = int((time.monotonic() - start) * rate)
        while sent < due:
            producer.produce(topic, value=b"x" * 200, key=str(sent % 64).encode())
            sent += 1
        producer.poll(0.05)
        if sent % (rate * 5) == 0:
            print(f"sent {sent}", flush=True)


def consume(bootstrap, topic, group):
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
        "enable.auto.commit": True, "auto.commit.interval.ms": 1000,
    })
    consumer.subscribe([topic])
    while True:
        consumer.poll(0.2)


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "produce":
        produce(args[0], args[1], int(args[2]))
    else:
        consume(args[0], args[1], args[2])
