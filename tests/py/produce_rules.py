"""Kafka produce rules with confluent-kafka (librdkafka) against one broker.

Modes:
  keyless BOOTSTRAP TOPIC   a compacted topic refuses records without a key:
                            KIP-467 per-record errors reach the client (the
                            keyed records of the same batch fail with
                            librdkafka's "invalid different record"); records
                            in batches of their own are stored.
  zstd BOOTSTRAP TOPIC      a topic with compression.type=zstd fed by an
                            uncompressed producer reads back the same records.
  configs BOOTSTRAP TOPIC   configs Kafka 3.x accepts and ignores are accepted
                            at creation and reported by DescribeConfigs; lz4
                            is a valid compression.type.
"""

import sys

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from common import BASE_TS, Deadline, check, check_eq, emit, fail


def create(bootstrap, topic, config):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, 1, 1, config=config)], operation_timeout=10)
    for f in futures.values():
        f.result(timeout=15)
    return admin


def produce(bootstrap, topic, records, **conf):
    """Produces (key, value) pairs; returns the delivery (error, key) list."""
    reports = []
    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "message.timeout.ms": 15000,
            "linger.ms": 50,
            **conf,
        }
    )
    for i, (key, value) in enumerate(records):
        p.produce(
            topic,
            key=key,
            value=value,
            partition=0,
            timestamp=BASE_TS + i,
            headers=[("h", b"%d" % i)],
            on_delivery=lambda err, msg: reports.append((err, msg.key())),
        )
    left = p.flush(20)
    check(left == 0, f"{left} records not delivered in time")
    check_eq(len(reports), len(records), "delivery reports")
    return reports


def consume_all(bootstrap, topic, expected):
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{topic}-reader",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    c.assign([TopicPartition(topic, 0, 0)])
    out = []
    deadline = Deadline(20)
    while len(out) < expected and not deadline.expired():
        msg = c.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            fail(f"consume error: {msg.error()}")
        out.append((msg.key(), msg.value(), msg.headers(), msg.timestamp()[1]))
    c.close()
    check_eq(len(out), expected, "records read back")
    return out


def keyless(bootstrap, topic):
    create(bootstrap, topic, {"cleanup.policy": "compact"})
    # One batch: keyed, keyless, keyed, keyless.
    mixed = [(b"k0", b"v0"), (None, b"v1"), (b"k2", b"v2"), (None, b"v3")]
    reports = produce(bootstrap, topic, mixed, **{"batch.num.messages": 100})
    errors = {}
    for i, (err, _key) in enumerate(reports):
        check(err is not None, f"record {i} of the mixed batch was accepted")
        errors[i] = err
    # The per-record text reaches librdkafka but not its delivery reports
    # (those carry the code's generic text); the wire test checks the text.
    for i in (1, 3):
        check_eq(errors[i].code(), KafkaError.INVALID_RECORD, f"record {i} error code")
    for i in (0, 2):
        # librdkafka's code for the records a KIP-467 answer does not name:
        # proof that it read record_errors.
        check_eq(
            errors[i].code(), KafkaError._INVALID_DIFFERENT_RECORD, f"record {i} error code"
        )
    # Keyed records on their own are stored, nothing of the refused batch is.
    ok = produce(bootstrap, topic, [(b"a", b"1"), (b"b", b"2")])
    check(all(err is None for err, _ in ok), f"keyed records refused: {ok}")
    got = consume_all(bootstrap, topic, 2)
    check_eq([(k, v) for k, v, _, _ in got], [(b"a", b"1"), (b"b", b"2")], "stored records")
    emit(
        {
            "keyless_errors": [errors[1].name(), errors[3].name()],
            "keyed_error": errors[0].name(),
        }
    )


def zstd(bootstrap, topic):
    create(bootstrap, topic, {"compression.type": "zstd"})
    records = [(b"key-%d" % i, b"value-%d-" % i + b"x" * (i % 50)) for i in range(300)]
    reports = produce(
        bootstrap,
        topic,
        records,
        **{"compression.type": "none", "enable.idempotence": True, "acks": "all"},
    )
    check(all(err is None for err, _ in reports), f"delivery errors: {reports[:3]}")
    got = consume_all(bootstrap, topic, len(records))
    for i, (key, value, headers, ts) in enumerate(got):
        check_eq((key, value), records[i], f"record {i}")
        check_eq(headers, [("h", b"%d" % i)], f"record {i} headers")
        check_eq(ts, BASE_TS + i, f"record {i} timestamp")
    emit({"records": len(got)})


def configs(bootstrap, topic):
    admin = create(
        bootstrap,
        topic,
        {
            "message.format.version": "2.8-IV1",
            "message.downconversion.enable": "false",
            "compression.type": "lz4",
        },
    )
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    described = admin.describe_configs([res])[res].result(timeout=15)
    check_eq(described["message.format.version"].value, "2.8-IV1", "message.format.version")
    check_eq(described["message.downconversion.enable"].value, "false", "downconversion")
    check_eq(described["compression.type"].value, "lz4", "compression.type")
    check_eq(described["preallocate"].value, "false", "preallocate default")
    reports = produce(bootstrap, topic, [(b"k", b"v")], **{"compression.type": "gzip"})
    check(all(err is None for err, _ in reports), f"delivery errors: {reports}")
    consume_all(bootstrap, topic, 1)
    emit({"ok": True})


def main():
    mode, bootstrap, topic = sys.argv[1:4]
    {"keyless": keyless, "zstd": zstd, "configs": configs}[mode](bootstrap, topic)


if __name__ == "__main__":
    main()
