#!/usr/bin/env python3
"""Start-up time of a broker after kill -9, with many partitions.

Starts `rivulet broker` on a fresh data directory, creates TOPICS topics of
PARTITIONS partitions each, produces RECORDS records to every partition
(acks=1, so logs have a tail that recovery must check), kills the broker
with SIGKILL, restarts it and measures the time until it serves a produce
(acks=all) to the last partition of the last topic and a consumer reads
it back. Repeats the kill/restart ROUNDS times and prints every figure.

    .venv/bin/python scripts/bench_startup.py --rivulet target/release/rivulet \\
        --topics 100 --partitions 100 --records 20
"""
import argparse
import os
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(binary, data_dir, port, log):
    return subprocess.Popen(
        [
            binary,
            "broker",
            "--listeners",
            f"PLAINTEXT://127.0.0.1:{port}",
            "--data-dir",
            data_dir,
            "--metrics-addr",
            "none",
        ],
        stdout=log,
        stderr=log,
        preexec_fn=raise_fd_limit,
    )


def raise_fd_limit():
    """A log keeps its segment file open: 10,000 partitions need more than
    the usual 1024 (or 20,000) descriptors, as with Kafka. Raising the hard
    limit needs root; otherwise the soft limit goes up to the hard one."""
    want = 200_000
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
    except (ValueError, PermissionError):
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def serves(bootstrap, topic, partition, deadline_s):
    """Seconds until an acks=all produce to topic/partition is delivered and
    read back, polling from now. One producer that keeps retrying with
    short reconnect backoffs, so the figure is the broker's, not the
    client's backoff."""
    started = time.monotonic()
    fast = {
        "bootstrap.servers": bootstrap,
        "reconnect.backoff.ms": 10,
        "reconnect.backoff.max.ms": 50,
        "topic.metadata.refresh.interval.ms": 100,
        "retry.backoff.ms": 20,
        "log_level": 0,
    }
    p = Producer({**fast, "acks": "all", "message.timeout.ms": int(deadline_s * 1000)})
    delivered = []
    p.produce(topic, b"probe", partition=partition, on_delivery=lambda e, m: delivered.append((e, m)))
    while not delivered and time.monotonic() - started < deadline_s:
        p.poll(0.01)
    if not delivered or delivered[0][0] is not None:
        raise SystemExit(f"broker did not take a produce to {topic}-{partition}: {delivered}")
    offset = delivered[0][1].offset()
    c = Consumer({**fast, "group.id": "startup-probe"})
    c.assign([TopicPartition(topic, partition, offset)])
    while time.monotonic() - started < deadline_s:
        msg = c.poll(0.1)
        if msg is not None and not msg.error() and msg.value() == b"probe":
            c.close()
            return time.monotonic() - started
    raise SystemExit(f"broker did not serve {topic}-{partition} within {deadline_s} s")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rivulet", default="target/release/rivulet")
    ap.add_argument("--topics", type=int, default=100)
    ap.add_argument("--partitions", type=int, default=100)
    ap.add_argument("--records", type=int, default=20, help="records per partition")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()

    data_dir = args.data_dir or tempfile.mkdtemp(prefix="rivulet-startup-")
    shutil.rmtree(data_dir, ignore_errors=True)
    os.makedirs(data_dir)
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    log = open(os.path.join(data_dir, "..", os.path.basename(data_dir) + ".log"), "ab")
    broker = start(args.rivulet, data_dir, port, log)
    try:
        time.sleep(1)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        names = [f"s{t}" for t in range(args.topics)]
        for i in range(0, len(names), 20):
            fs = admin.create_topics(
                [NewTopic(n, args.partitions, 1) for n in names[i : i + 20]],
                operation_timeout=60,
                request_timeout=120,
            )
            for f in fs.values():
                f.result(timeout=180)
        total = args.topics * args.partitions
        print(f"created {total} partitions")
        p = Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": "1",
                "linger.ms": 20,
                "queue.buffering.max.messages": 2_000_000,
            }
        )
        t0 = time.monotonic()
        for n in names:
            for part in range(args.partitions):
                for r in range(args.records):
                    while True:
                        try:
                            p.produce(n, b"x" * 100, partition=part)
                            break
                        except BufferError:
                            p.poll(0.01)
            p.poll(0)
        left = p.flush(300)
        print(f"produced {total * args.records} records in {time.monotonic() - t0:.1f} s ({left} undelivered)")
        for round_ in range(args.rounds):
            broker.send_signal(signal.SIGKILL)
            broker.wait()
            t0 = time.monotonic()
            broker = start(args.rivulet, data_dir, port, log)
            ready = serves(bootstrap, names[-1], args.partitions - 1, 600)
            print(
                f"round {round_ + 1}: serving {total} partitions {ready:.2f} s after restart "
                f"(process start to first acks=all produce read back; {time.monotonic() - t0:.2f} s total)"
            )
    finally:
        broker.kill()
        broker.wait()
        if not args.data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
