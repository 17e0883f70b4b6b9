"""Idempotent confluent-kafka producer -> consumer round trip, one codec.

usage: confluent_roundtrip.py BOOTSTRAP TOPIC CODEC
The topic must exist with at least one partition; partition 0 is used and
must be empty. Keys (including null), values (including a null value and
binary bytes), headers (duplicates, binary, null values) and create-times
must come back exactly, at consecutive offsets from 0. Consumption uses
assign() and seek(), no group membership. offsets_for_times and the
watermarks are checked against the known timestamps.
"""

import sys

from confluent_kafka import (
    OFFSET_END,
    TIMESTAMP_CREATE_TIME,
    Consumer,
    Producer,
    TopicPartition,
)

from common import BASE_TS, Deadline, check, check_eq, emit, fail

N = 60


def expected_records():
    out = []
    for i in range(N):
        key = None if i % 10 == 0 else f"key-{i}".encode()
        if i == 7:
            value = None
        else:
            # Compressible text plus a few raw bytes (0, 255) that must
            # survive as bytes.
            value = (f"value-{i}-" * 20).encode() + bytes([i % 256, 0, 255])
        if i % 3 == 0:
            headers = []
        elif i % 3 == 1:
            headers = [("h1", b"v1"), ("h1", b"dup"), ("n", str(i).encode())]
        else:
            headers = [("bin", bytes([0, 1, 2, 255])), ("nullh", None)]
        out.append((key, value, headers, BASE_TS + i * 1000))
    return out


def produce(bootstrap, topic, codec, records):
    p = Producer({
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": codec,
        "linger.ms": 20,
        "batch.num.messages": 10,
        "message.timeout.ms": 20000,
    })
    reports = [None] * len(records)

    def on_delivery(i):
        def cb(err, msg):
            reports[i] = (err, msg.partition() if err is None else None,
                          msg.offset() if err is None else None)
        return cb

    for i, (key, value, headers, ts) in enumerate(records):
        p.produce(topic, value=value, key=key, partition=0, timestamp=ts,
                  headers=headers or None, on_delivery=on_delivery(i))
        p.poll(0)
    left = p.flush(30)
    check_eq(left, 0, "messages not delivered after flush(30)")
    for i, r in enumerate(reports):
        check(r is not None, f"no delivery report for record {i}")
        check(r[0] is None, f"record {i} failed: {r[0]}")
        check_eq((r[1], r[2]), (0, i), f"partition/offset of record {i}")


def consumer_for(bootstrap, topic):
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"rt-{topic}",
        "enable.auto.commit": False,
        "auto.offset.reset": "error",
        "enable.partition.eof": False,
    })


def poll_n(c, n, seconds=30):
    out = []
    dl = Deadline(seconds)
    while len(out) < n and not dl.expired():
        m = c.poll(min(1.0, dl.left()))
        if m is None:
            continue
        if m.error():
            fail(f"consumer error: {m.error()}")
        out.append(m)
    check_eq(len(out), n, f"records consumed within {seconds}s")
    return out


def check_record(m, i, expected):
    key, value, headers, ts = expected
    check_eq(m.offset(), i, "offset")
    check_eq(m.key(), key, f"key at offset {i}")
    check_eq(m.value(), value, f"value at offset {i}")
    check_eq(list(m.headers() or []), headers, f"headers at offset {i}")
    check_eq(m.timestamp(), (TIMESTAMP_CREATE_TIME, ts), f"timestamp at offset {i}")


def seek_when_ready(c, tp):
    # seek() needs the fetcher to have started on the assigned partition;
    # right after assign() librdkafka may still say "erroneous state".
    dl = Deadline(10)
    while True:
        try:
            c.seek(tp)
            return
        except Exception as e:  # noqa: BLE001 -- retry any transient state error
            if dl.expired():
                fail(f"seek({tp}) kept failing: {e}")
            c.poll(0.2)


def main():
    if len(sys.argv) != 4:
        fail(f"usage: {sys.argv[0]} BOOTSTRAP TOPIC CODEC")
    bootstrap, topic, codec = sys.argv[1:]
    records = expected_records()
    produce(bootstrap, topic, codec, records)

    c = consumer_for(bootstrap, topic)
    c.assign([TopicPartition(topic, 0, 0)])
    for i, m in enumerate(poll_n(c, N)):
        check_record(m, i, records[i])

    seek_when_ready(c, TopicPartition(topic, 0, 25))
    m = poll_n(c, 1)[0]
    check_record(m, 25, records[25])

    lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    check_eq((lo, hi), (0, N), "watermarks")

    queries = {
        "exact": (BASE_TS + 10 * 1000, 10),
        "between": (BASE_TS + 10 * 1000 - 500, 10),
        "before_all": (BASE_TS - 1, 0),
        "after_all": (BASE_TS + N * 1000 + 5000, OFFSET_END),
    }
    for name, (ts, want) in queries.items():
        res = c.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=10)
        check_eq(len(res), 1, f"offsets_for_times({name}) result count")
        check(res[0].error is None, f"offsets_for_times({name}) error: {res[0].error}")
        check_eq(res[0].offset, want, f"offsets_for_times({name}, ts={ts})")
    c.close()
    emit({"codec": codec, "records": N})


if __name__ == "__main__":
    main()
