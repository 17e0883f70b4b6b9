"""confluent-kafka against a compacted topic: compressed, idempotent
multi-record batches in, a consumer reading the gapped log out.

usage:
  compaction_clients.py produce BOOTSTRAP TOPIC KEYS ROUNDS
      ROUNDS rounds of one value per key (gzip, idempotent, a round per
      flush, so a batch holds many records), then a tombstone for k0; prints
      [[offset, key, value-or-null], ...] in offset order.
  compaction_clients.py read BOOTSTRAP TOPIC
      reads partition 0 from the beginning to its end and prints the same
      list: what a client sees of the (compacted) log.
"""

import sys

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from common import Deadline, check, check_eq, emit, fail


def produce(bootstrap, topic, keys, rounds):
    p = Producer({
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "compression.type": "gzip",
        "linger.ms": 100,
    })
    out = []

    def done(err, msg):
        check(err is None, f"delivery failed: {err}")
        v = msg.value()
        out.append([msg.offset(), msg.key().decode(), None if v is None else v.decode()])

    for r in range(rounds):
        for k in range(keys):
            p.produce(topic, f"r{r}-k{k}".encode(), key=f"k{k}".encode(), partition=0,
                      on_delivery=done)
        check_eq(p.flush(30), 0, f"undelivered records of round {r}")
    p.produce(topic, None, key=b"k0", partition=0, on_delivery=done)
    check_eq(p.flush(30), 0, "undelivered tombstone")
    out.sort()
    check_eq(len(out), keys * rounds + 1, "delivered records")
    emit(out)


def read(bootstrap, topic):
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"read-{topic}",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "error",
    })
    c.assign([TopicPartition(topic, 0, 0)])
    out = []
    dl = Deadline(30)
    while True:
        check(not dl.expired(), f"no end of partition within 30 s; read {len(out)} records")
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                break
            fail(f"consumer error: {m.error()}")
        v = m.value()
        out.append([m.offset(), m.key().decode(), None if v is None else v.decode()])
    c.close()
    offsets = [o for o, _, _ in out]
    check_eq(offsets, sorted(set(offsets)), "offsets in increasing order, no repeats")
    print(f"[compaction_clients] read {len(out)} records", file=sys.stderr)
    emit(out)


def main():
    args = sys.argv[1:]
    if len(args) == 5 and args[0] == "produce":
        produce(args[1], args[2], int(args[3]), int(args[4]))
    elif len(args) == 3 and args[0] == "read":
        read(args[1], args[2])
    else:
        fail(__doc__)


if __name__ == "__main__":
    main()
