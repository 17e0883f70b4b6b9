"""kafka-python producer -> consumer round trip with assign()/seek().

usage: kafka_python_roundtrip.py BOOTSTRAP TOPIC   (partition 0 empty)
kafka-python works out the broker version from ApiVersions and speaks its
own, older protocol versions; this checks both that and exact round trips,
plain and gzip-compressed.
"""

import sys

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from common import BASE_TS, Deadline, check, check_eq, emit, fail

N = 30


def produce(bootstrap, topic, compression, start):
    p = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        compression_type=compression,
        request_timeout_ms=15000,
        max_block_ms=20000,
    )
    api_version = p.config["api_version"]
    check(isinstance(api_version, tuple) and api_version >= (0, 11),
          f"api_version auto-detection gave {api_version!r}; record headers need >= (0, 11)")
    futures = []
    for i in range(start, start + N):
        key = None if i % 5 == 0 else f"k{i}".encode()
        value = f"v{i}-".encode() * 10
        futures.append(p.send(topic, key=key, value=value, partition=0,
                              timestamp_ms=BASE_TS + i, headers=[("i", str(i).encode())]))
    p.flush(timeout=30)
    for n, f in enumerate(futures):
        md = f.get(timeout=15)
        check_eq((md.partition, md.offset), (0, start + n), f"metadata of record {start + n}")
    p.close(timeout=10)
    return api_version


def consume(bootstrap, topic, total):
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                      auto_offset_reset="none", request_timeout_ms=15000)
    tp = TopicPartition(topic, 0)
    c.assign([tp])
    c.seek(tp, 0)
    got = []
    dl = Deadline(30)
    while len(got) < total and not dl.expired():
        for recs in c.poll(timeout_ms=500).values():
            got.extend(recs)
    check_eq(len(got), total, "records consumed within 30s")
    for i, r in enumerate(got):
        check_eq(r.offset, i, "offset")
        check_eq(r.key, None if i % 5 == 0 else f"k{i}".encode(), f"key at {i}")
        check_eq(r.value, f"v{i}-".encode() * 10, f"value at {i}")
        check_eq(r.timestamp, BASE_TS + i, f"timestamp at {i}")
        check_eq([(k, v) for k, v in r.headers], [("i", str(i).encode())], f"headers at {i}")

    c.seek(tp, 17)
    dl = Deadline(15)
    again = []
    while not again and not dl.expired():
        for recs in c.poll(timeout_ms=500, max_records=1).values():
            again.extend(recs)
    check(again, "nothing consumed after seek(17)")
    check_eq(again[0].offset, 17, "offset after seek(17)")

    check_eq(c.beginning_offsets([tp]), {tp: 0}, "beginning_offsets")
    check_eq(c.end_offsets([tp]), {tp: total}, "end_offsets")
    found = c.offsets_for_times({tp: BASE_TS + 12})
    check_eq(found[tp].offset, 12, "offsets_for_times")
    c.close()


def main():
    if len(sys.argv) != 3:
        fail(f"usage: {sys.argv[0]} BOOTSTRAP TOPIC")
    bootstrap, topic = sys.argv[1:]
    v1 = produce(bootstrap, topic, None, 0)
    v2 = produce(bootstrap, topic, "gzip", N)
    consume(bootstrap, topic, 2 * N)
    emit({"api_version": list(v1), "api_version_gzip": list(v2)})


if __name__ == "__main__":
    main()
