"""confluent-kafka with the files of a TLS KafkaUser's Secret, as-is:
`ssl.certificate.location` = user.crt, `ssl.key.location` = user.key,
`ssl.ca.location` = ca.crt.

Usage: operator_tls_clients.py SCENARIO JSON_OPTIONS

JSON_OPTIONS: {"bootstrap", "topic", "files": {"crt", "key", "ca"}, ...}.

Scenarios:

- allowed: writes 5 records to `topic` and reads them back in group
  `group`; writing `denied_topic` is refused with
  TOPIC_AUTHORIZATION_FAILED (the certificate's principal has no ACL there).
- denied: the same certificate setup, another user: writing `topic` is
  refused with TOPIC_AUTHORIZATION_FAILED.
- churn: until the file `stop` exists, a long-lived producer writes a
  record every 0.1 s while a fresh producer (a new connection, a new TLS
  handshake, the files read again) writes one record every cycle; every
  delivery must succeed. Then every record is read back.
"""

import json
import os
import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from common import Deadline, check, check_eq, emit, fail


def conf(opts, extra=None):
    files = opts["files"]
    c = {
        "bootstrap.servers": opts["bootstrap"],
        "security.protocol": "SSL",
        "ssl.certificate.location": files["crt"],
        "ssl.key.location": files["key"],
        "ssl.ca.location": files["ca"],
    }
    c.update(extra or {})
    return c


def produce(opts, topic, count):
    """Returns the delivery errors' codes (empty: all delivered)."""
    errors = []
    producer = Producer(conf(opts, {"message.timeout.ms": 15000}))

    def on_delivery(err, _msg):
        if err is not None:
            errors.append(err.code())

    for i in range(count):
        producer.produce(topic, value=f"tls-{i}".encode(), on_delivery=on_delivery)
    check_eq(producer.flush(30), 0, "records still queued")
    return errors


def consume(opts, topic, group, want):
    consumer = Consumer(conf(opts, {"group.id": group, "auto.offset.reset": "earliest",
                                    "enable.auto.commit": False}))
    consumer.subscribe([topic])
    seen = 0
    deadline = Deadline(60)
    while seen < want and not deadline.expired():
        msg = consumer.poll(1.0)
        if msg is None:
            continue
        if msg.error():
            fail(f"consume error: {msg.error()}")
        seen += 1
    consumer.close()
    return seen


def allowed(opts):
    check_eq(produce(opts, opts["topic"], 5), [], "delivery errors on the allowed topic")
    check_eq(consume(opts, opts["topic"], opts["group"], 5), 5, "records read back")
    denied = produce(opts, opts["denied_topic"], 1)
    check_eq(denied, [KafkaError.TOPIC_AUTHORIZATION_FAILED], "writing the other topic")
    emit({"produced": 5, "consumed": 5, "denied": "TOPIC_AUTHORIZATION_FAILED"})


def denied(opts):
    codes = produce(opts, opts["topic"], 1)
    check_eq(codes, [KafkaError.TOPIC_AUTHORIZATION_FAILED], "writing as a user without ACLs")
    emit({"denied": "TOPIC_AUTHORIZATION_FAILED"})


def churn(opts):
    topic = opts["topic"]
    failures = []

    def on_delivery(err, _msg):
        if err is not None:
            failures.append(str(err))

    long_lived = Producer(conf(opts, {"message.timeout.ms": 20000}))
    fresh_count = long_count = 0
    deadline = Deadline(600)
    while not os.path.exists(opts["stop"]):
        check(not deadline.expired(), "the rotation never finished")
        fresh = Producer(conf(opts, {"message.timeout.ms": 20000}))
        fresh.produce(topic, value=b"fresh", on_delivery=on_delivery)
        left = fresh.flush(20)
        if left:
            failures.append(f"{left} fresh records undelivered")
        fresh_count += 1
        for _ in range(3):
            long_lived.produce(topic, value=b"long", on_delivery=on_delivery)
            long_lived.poll(0.1)
            long_count += 1
    if long_lived.flush(30):
        failures.append("long-lived records undelivered")
    check_eq(failures, [], "failed deliveries")
    total = fresh_count + long_count
    consumer = Consumer(conf(opts, {"group.id": f"churn-{topic}", "enable.auto.commit": False}))
    consumer.assign([TopicPartition(topic, 0, 0)])
    seen = 0
    deadline = Deadline(60)
    while seen < total and not deadline.expired():
        msg = consumer.poll(1.0)
        if msg is not None and not msg.error():
            seen += 1
    consumer.close()
    check_eq(seen, total, "records read back")
    emit({"fresh": fresh_count, "long": long_count, "consumed": seen})


def main():
    scenario, raw = sys.argv[1], sys.argv[2]
    {"allowed": allowed, "denied": denied, "churn": churn}[scenario](json.loads(raw))


if __name__ == "__main__":
    main()
