#!/usr/bin/env python3
"""Sustained writes: one librdkafka (confluent-kafka) producer pushing 1 KiB
records at a broker for a fixed time, reporting every 10 s:

- acked records/s and MB/s in the interval (a record counts once its
  delivery succeeded; only failed deliveries raise callbacks, so the Python
  side stays cheap);
- the broker's CPU (user and system, from /proc/PID/stat) per GB acked
  (GB = 1e9 bytes of record values), when --broker-pid is given;
- the machine's page-cache state: Dirty and Writeback from /proc/meminfo
  (at the end of the interval and the largest seen in it, sampled every
  second), Cached and MemFree, the pages reclaim scanned (/proc/vmstat pgscan_*) and
  direct-reclaim stalls (allocstall_*) in the interval, and the CPU the
  kernel's reclaim threads (kswapd*, kcompactd*) spent per GB: work the
  broker causes that its own CPU time does not show.

It stops by itself after --duration seconds (then waits at most --drain
seconds for outstanding deliveries) and ends with one summary line.

    .venv/bin/python scripts/bench_sustained.py --bootstrap 127.0.0.1:29092 \
        --broker-pid "$(pgrep -n rivulet)" --acks all --duration 600

Idempotence follows the Java client: on by default, except that asking for
acks other than all turns it off (librdkafka refuses the combination);
--idempotence on/off overrides.
"""
import argparse
import os
import sys
import time

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def broker_cpu(pid):
    """(user, system) CPU seconds of `pid` so far, or None without a pid."""
    if pid is None:
        return None
    with open(f"/proc/{pid}/stat") as f:
        # The command name may contain spaces: fields start after its ')'.
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def reclaim_threads():
    """Pids of the kernel's page reclaim and compaction threads."""
    pids = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().startswith(("kswapd", "kcompactd")):
                        pids.append(int(pid))
            except OSError:
                pass
    return pids


def cpu_of(pids):
    """User plus system CPU seconds of `pids` so far."""
    total = 0.0
    for pid in pids:
        user, system = broker_cpu(pid)
        total += user + system
    return total


def meminfo():
    """Dirty, Writeback, Cached and MemFree in MiB."""
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, value = line.split(":", 1)
            if key in ("Dirty", "Writeback", "Cached", "MemFree"):
                out[key] = int(value.split()[0]) / 1024
    return out


def vmstat():
    """Reclaim counters: pages scanned (kswapd, direct) and direct-reclaim stalls."""
    out = {"pgscan_kswapd": 0, "pgscan_direct": 0, "allocstall": 0}
    with open("/proc/vmstat") as f:
        for line in f:
            key, value = line.split()
            if key in ("pgscan_kswapd", "pgscan_direct"):
                out[key] = int(value)
            elif key.startswith("allocstall_"):
                out["allocstall"] += int(value)
            elif key in ("nr_dirty_threshold", "nr_dirty_background_threshold"):
                out[key] = int(value)
    return out


def ensure_topic(bootstrap, topic, partitions):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, partitions, 1)], operation_timeout=30)
    try:
        futures[topic].result(timeout=30)
    except KafkaException as e:
        if e.args[0].name() != "TOPIC_ALREADY_EXISTS":
            raise


class Interval:
    """Counters at the start of a reporting interval, and maxima within it."""

    def __init__(self, now, acked, pid, reclaimers):
        self.start = now
        self.acked = acked
        self.cpu = broker_cpu(pid)
        self.reclaim_cpu = cpu_of(reclaimers)
        self.vm = vmstat()
        self.max_dirty = 0.0
        self.max_writeback = 0.0

    def sample(self):
        m = meminfo()
        self.max_dirty = max(self.max_dirty, m["Dirty"])
        self.max_writeback = max(self.max_writeback, m["Writeback"])
        return m


def per_gb(cpu_s, gb):
    return cpu_s / gb if gb > 0 else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", default="127.0.0.1:29092")
    ap.add_argument("--topic", default="sustained")
    ap.add_argument("--partitions", type=int, default=1, help="if the topic is created")
    ap.add_argument("--duration", type=float, default=600, help="seconds of producing")
    ap.add_argument("--interval", type=float, default=10, help="seconds per report line")
    ap.add_argument("--drain", type=float, default=60, help="max seconds to wait at the end")
    ap.add_argument("--size", type=int, default=1024, help="record value bytes")
    ap.add_argument("--acks", default="1", choices=["0", "1", "all", "-1"])
    ap.add_argument("--idempotence", default="auto", choices=["auto", "on", "off"])
    ap.add_argument("--compression", default="none")
    ap.add_argument("--linger-ms", default="5")
    ap.add_argument("--batch-size", default="1000000")
    ap.add_argument("--broker-pid", type=int, help="broker process to sample CPU of")
    args = ap.parse_args()

    acks_all = args.acks in ("all", "-1")
    idempotence = acks_all if args.idempotence == "auto" else args.idempotence == "on"
    ensure_topic(args.bootstrap, args.topic, args.partitions)

    errors = 0
    first_error = None

    def on_delivery(err, _msg):
        nonlocal errors, first_error
        errors += 1
        first_error = first_error or err

    producer = Producer({
        "bootstrap.servers": args.bootstrap,
        "acks": args.acks,
        "enable.idempotence": idempotence,
        "compression.type": args.compression,
        "linger.ms": args.linger_ms,
        "batch.size": args.batch_size,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 512 * 1024,
        # Successes are counted from the queue length: no Python call per record.
        "delivery.report.only.error": True,
        "on_delivery": on_delivery,
    })
    value = b"x" * args.size
    gb_per_record = args.size / 1e9
    produced = 0

    def acked():
        # Queued, in flight and unserved error reports are all in len().
        return produced - len(producer) - errors

    vm0 = vmstat()
    print(
        f"# {args.duration:.0f} s of {args.size} B records to {args.topic} at {args.bootstrap}, "
        f"acks={args.acks} idempotence={idempotence}; broker pid {args.broker_pid}; "
        f"dirty thresholds: background {vm0['nr_dirty_background_threshold'] * PAGE_KIB / 1024:.0f} MiB, "
        f"throttle {vm0['nr_dirty_threshold'] * PAGE_KIB / 1024:.0f} MiB; "
        f"load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    print(
        "#    t  records/s     MB/s  cpu_s/GB usr   sys   dirty_MiB(end/max) writeback_MiB(end/max) "
        "cached_MiB free_MiB pgscan(ksw/direct) allocstall kswapd_s/GB load1",
        flush=True,
    )

    started = time.monotonic()
    deadline = started + args.duration
    reclaimers = reclaim_threads()
    whole = Interval(started, 0, args.broker_pid, reclaimers)
    part = Interval(started, 0, args.broker_pid, reclaimers)
    next_sample = started + 1
    rows = []

    def report(now):
        nonlocal part
        m = part.sample()
        whole.max_dirty = max(whole.max_dirty, part.max_dirty)
        whole.max_writeback = max(whole.max_writeback, part.max_writeback)
        done = acked()
        secs = now - part.start
        gb = (done - part.acked) * gb_per_record
        rate = (done - part.acked) / secs
        cpu = broker_cpu(args.broker_pid)
        reclaim = per_gb(cpu_of(reclaimers) - part.reclaim_cpu, gb)
        vm = vmstat()
        usr = sys_ = float("nan")
        if cpu is not None:
            usr = per_gb(cpu[0] - part.cpu[0], gb)
            sys_ = per_gb(cpu[1] - part.cpu[1], gb)
        rows.append(rate)
        print(
            f"{now - started:6.0f} {rate:10.0f} {gb * 1e3 / secs:8.1f} {usr:9.2f} {sys_:5.2f}"
            f" {m['Dirty']:9.0f}/{part.max_dirty:<9.0f} {m['Writeback']:10.0f}/{part.max_writeback:<11.0f}"
            f" {m['Cached']:10.0f} {m['MemFree']:8.0f} {vm['pgscan_kswapd'] - part.vm['pgscan_kswapd']:9d}/"
            f"{vm['pgscan_direct'] - part.vm['pgscan_direct']:<8d} {vm['allocstall'] - part.vm['allocstall']:10d}"
            f" {reclaim:11.2f} {os.getloadavg()[0]:5.2f}",
            flush=True,
        )
        part = Interval(now, done, args.broker_pid, reclaimers)

    try:
        while True:
            try:
                producer.produce(args.topic, value)
                produced += 1
                if produced & 1023:
                    continue
                producer.poll(0)
            except BufferError:
                producer.poll(0.005)
            # Every 1024 records, or while the client queue is full.
            now = time.monotonic()
            if now >= next_sample:
                next_sample += 1
                part.sample()
                if now - part.start >= args.interval:
                    report(now)
            if now >= deadline:
                break
    except KeyboardInterrupt:
        print("# interrupted", flush=True)
    elapsed = time.monotonic() - started
    left = producer.flush(args.drain)
    drained = time.monotonic() - started
    report(time.monotonic())

    total = acked()
    gb = total * gb_per_record
    cpu = broker_cpu(args.broker_pid)
    usr = sys_ = float("nan")
    if cpu is not None:
        usr = per_gb(cpu[0] - whole.cpu[0], gb)
        sys_ = per_gb(cpu[1] - whole.cpu[1], gb)
    reclaim = per_gb(cpu_of(reclaimers) - whole.reclaim_cpu, gb)
    steady = sorted(rows[:-1]) or [0.0]
    print(
        f"sustained produce: {total} acked ({errors} errors, {left} undelivered) in {drained:.1f} s "
        f"({elapsed:.1f} s producing): {total / drained:.0f} records/s, {gb * 1e3 / drained:.1f} MB/s; "
        f"per-interval records/s min {steady[0]:.0f} median {steady[len(steady) // 2]:.0f} "
        f"max {steady[-1]:.0f}; broker CPU-s/GB user {usr:.2f} system {sys_:.2f}, "
        f"kswapd+kcompactd {reclaim:.2f}; "
        f"max Dirty {whole.max_dirty:.0f} MiB, max Writeback {whole.max_writeback:.0f} MiB "
        f"(acks={args.acks}, idempotence={idempotence}, {args.size} B records, load {os.getloadavg()[0]:.2f})",
        flush=True,
    )
    if first_error is not None:
        print(f"# first delivery error: {first_error}", file=sys.stderr)
    sys.exit(1 if errors or left else 0)


if __name__ == "__main__":
    main()
