"""A read_committed and a read_uncommitted confluent-kafka consumer read a
partition holding committed, aborted and open transactions.

usage: read_committed.py BOOTSTRAP TOPIC END
Prints {"committed": [...], "uncommitted": [...]}: the values each consumer
read from offset 0 until it stopped getting records.
"""

import sys

from confluent_kafka import Consumer, TopicPartition

from common import Deadline, emit, fail


def read(bootstrap, topic, isolation, end):
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"rc-{topic}-{isolation}",
        "enable.auto.commit": False,
        "isolation.level": isolation,
    })
    c.assign([TopicPartition(topic, 0, 0)])
    values = []
    dl = Deadline(20)
    idle = 0
    try:
        while not dl.expired() and idle < 3:
            m = c.poll(min(1.0, dl.left()))
            if m is None:
                idle += 1
                continue
            if m.error():
                fail(f"{isolation} consumer error: {m.error()}")
            idle = 0
            values.append(m.value().decode())
            if m.offset() + 1 >= end:
                break
        return values
    finally:
        c.close()


def main():
    if len(sys.argv) != 4:
        fail(f"usage: {sys.argv[0]} BOOTSTRAP TOPIC END")
    bootstrap, topic, end = sys.argv[1], sys.argv[2], int(sys.argv[3])
    emit({
        "committed": read(bootstrap, topic, "read_committed", end),
        "uncommitted": read(bootstrap, topic, "read_uncommitted", end),
    })


main()
