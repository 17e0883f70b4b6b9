"""The client side of the topology matrix (tests/tests/topology.rs): one
cluster shape, every everyday client operation, with confluent-kafka
(librdkafka) and kafka-python.

usage:
  topology_clients.py create BOOTSTRAP PREFIX PARTITIONS RF MIN_ISR
      creates, with the AdminClient, PREFIX (PARTITIONS partitions),
      PREFIX-one (1 partition), PREFIX-kp and PREFIX-kcat (PARTITIONS each),
      all with replication factor RF and, when MIN_ISR > 0,
      min.insync.replicas=MIN_ISR (else the broker default applies).
      Prints {"topics": {name: partitions}}.
  topology_clients.py run BOOTSTRAP PREFIX PARTITIONS GROUPS
      on the topics `create` made (the test waits until every broker has
      them in sync), in this order:
        produce      acks=0, acks=1, acks=all and idempotent producers each
                     write 8 records per partition of PREFIX and PREFIX-one,
                     with create-times that grow within each partition;
        consume      everything is read back: each acknowledged record at its
                     offset, once, with its key, value, headers and time;
        time         offsets_for_times answers the first offset at or after
                     a time, and -1 past the last record;
        groups       one consumer per group id in GROUPS (comma-separated;
                     the test picks them so their coordinators are different
                     brokers) reads a prefix of every partition and commits
                     its end; a new consumer per group resumes exactly there;
        delete       DeleteRecords to the middle of every partition moves the
                     low watermark, and reading starts there;
        partitions   CreatePartitions adds two partitions to PREFIX and an
                     acks=all producer writes to them at once: retriable
                     errors while they come up are fine, a timeout is not;
        kafka-python acks=all produce to PREFIX-kp, a group consumer reads and
                     commits, and a new one resumes after the commit.

Every step runs even when an earlier one failed, so one run names every
broken behaviour of a topology: each problem goes to stderr as
`FAIL: [step] ...` when it is found, the JSON summary on stdout lists them
under "failures", and the exit status is 1 when there is any. Every wait is
bounded: a broker that never answers makes a step fail, not hang.
"""

import faulthandler
import logging
import sys
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass

from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_CREATE_TIME,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic, OffsetSpec
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KpTopicPartition
from kafka.errors import KafkaError as KpError

from common import Deadline, emit, fail

# Records per partition each producer writes.
PER_PARTITION = 8
# A produce that is not acknowledged by then has failed; flush waits longer.
MESSAGE_TIMEOUT_MS = 15000
FLUSH_S = MESSAGE_TIMEOUT_MS / 1000 + 10
# Admin requests and their futures.
ADMIN_TIMEOUT_S = 20
# Bound of every read loop and of the group joins.
READ_S = 30
# Partitions CreatePartitions adds.
NEW_PARTITIONS = 2
# How long the new partitions may refuse writes with retriable errors.
NEW_PARTITIONS_S = 25
# The whole `run`, however its steps fare: below the test's bound.
RUN_LIMIT_S = 200
# How many examples a failure shows.
EXAMPLES = 5

# The producers, in the order they write: the time base of each one is
# above the previous one's, so create-times grow within every partition.
MODES = {
    "acks0": {"acks": 0, "enable.idempotence": False},
    "acks1": {"acks": 1, "enable.idempotence": False},
    "acksall": {"acks": "all", "enable.idempotence": False},
    "idempotent": {"enable.idempotence": True},
}


@dataclass
class Rec:
    """One stored record as a consumer read it."""
    offset: int
    key: bytes
    value: bytes
    ts: int
    headers: list


class Problems:
    """The failures of a run: printed when found, summarized at the end."""

    def __init__(self):
        self.items = []
        self.step = "setup"

    def add(self, msg):
        line = f"[{self.step}] {msg}"
        print(f"FAIL: {line}", file=sys.stderr, flush=True)
        self.items.append(line)

    def check(self, cond, msg):
        if not cond:
            self.add(msg)
        return cond


def log(msg):
    print(f"[topology] {msg}", file=sys.stderr, flush=True)


class KpTrail(logging.Handler):
    """The last lines kafka-python logged (DEBUG), kept to show on failure."""

    def __init__(self, lines=200):
        super().__init__(logging.DEBUG)
        self.lines = deque(maxlen=lines)
        self.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        self.logger = logging.getLogger("kafka")
        self.level_before = self.logger.level
        self.logger.addHandler(self)
        self.logger.setLevel(logging.DEBUG)

    # Lines that repeat on every poll or only show raw bytes.
    NOISE = ("need_rejoin", "Send: bytearray", "Recv: b'", "sent ", "received ")

    def emit(self, record):
        msg = record.getMessage()
        if not any(n in msg for n in self.NOISE):
            self.lines.append(self.format(record)[:400])

    def stop(self):
        self.logger.removeHandler(self)
        self.logger.setLevel(self.level_before)

    def dump(self):
        print(f"--- the last {len(self.lines)} lines kafka-python logged ---", file=sys.stderr)
        for line in self.lines:
            print(f"  {line}", file=sys.stderr)
        print("---", file=sys.stderr, flush=True)


def err_name(err):
    return err.name() if isinstance(err, KafkaError) else str(err)


def tp_name(tp):
    return f"{tp[0]}[{tp[1]}]"


def create(bootstrap, prefix, partitions, rf, min_isr):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    config = {"min.insync.replicas": str(min_isr)} if min_isr > 0 else {}
    topics = {prefix: partitions, f"{prefix}-one": 1,
              f"{prefix}-kp": partitions, f"{prefix}-kcat": partitions}
    new = [NewTopic(name, num_partitions=n, replication_factor=rf, config=config)
           for name, n in topics.items()]
    futures = admin.create_topics(new, request_timeout=ADMIN_TIMEOUT_S,
                                  operation_timeout=ADMIN_TIMEOUT_S)
    for name, future in futures.items():
        try:
            future.result(timeout=ADMIN_TIMEOUT_S + 5)
        except KafkaException as e:
            fail(f"create topic {name} ({topics[name]} partitions, RF {rf}): {e}")
    emit({"topics": topics})


class Run:
    """One `run`: the topics, what was produced and what the log holds."""

    def __init__(self, bootstrap, prefix, partitions, groups):
        self.bootstrap = bootstrap
        self.main = prefix
        self.one = f"{prefix}-one"
        self.kp = f"{prefix}-kp"
        self.partitions = partitions
        self.groups = groups
        self.topics = {self.main: partitions, self.one: 1}
        self.tps = [(t, p) for t, n in self.topics.items() for p in range(n)]
        # An hour ago: well inside retention, and far from a broker's clock.
        self.base_ts = int(time.time() * 1000) - 3_600_000
        # (topic, partition) -> values in the order they were sent.
        self.sent = defaultdict(list)
        # (topic, value) -> (partition, offset) of each acknowledged record.
        self.acked = {}
        # (topic, value) -> error name of each failed delivery.
        self.failed = {}
        # value -> (key, ts, headers) as produced.
        self.produced = {}
        # (topic, partition) -> [Rec], offset order; and the high watermarks.
        self.log = {}
        self.hw = {}
        self.problems = Problems()
        self.summary = {}

    def conf(self, **extra):
        return {"bootstrap.servers": self.bootstrap, **extra}

    def consumer(self, group, **extra):
        return Consumer(self.conf(**{
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 500,
            "topic.metadata.refresh.interval.ms": 1000,
            **extra,
        }))

    def step(self, name, fn):
        self.problems.step = name
        log(f"{name} ...")
        started = time.monotonic()
        try:
            fn()
        except KafkaException as e:
            self.problems.add(f"client exception: {e}")
        took = round(time.monotonic() - started, 1)
        self.summary.setdefault("seconds", {})[name] = took
        log(f"{name}: {took}s")

    # --- produce -----------------------------------------------------------

    def produce(self):
        out = {}
        for idx, (mode, conf) in enumerate(MODES.items()):
            out[mode] = self.produce_mode(idx, mode, conf)
        self.summary["produce"] = out

    def produce_mode(self, idx, mode, conf):
        client_errors = Counter()
        p = Producer(self.conf(**conf, **{
            "linger.ms": 5,
            "message.timeout.ms": MESSAGE_TIMEOUT_MS,
            "request.timeout.ms": 10000,
            "retry.backoff.ms": 100,
            "error_cb": lambda e: client_errors.update([e.name()]),
        }))
        failures = Counter()

        def on_delivery(err, msg):
            key = (msg.topic(), msg.value())
            if err is None:
                self.acked[key] = (msg.partition(), msg.offset())
            else:
                self.failed[key] = err.name()
                failures[err.name()] += 1

        sent = 0
        for topic, n in self.topics.items():
            for i in range(PER_PARTITION * n):
                value = f"{mode}-{i}".encode()
                key = f"k{i}".encode()
                ts = self.base_ts + idx * 100_000 + i * 10
                headers = [("mode", mode.encode()), ("i", str(i).encode())]
                self.produced[value] = (key, ts, headers)
                self.sent[(topic, i % n)].append(value)
                p.produce(topic, value, key=key, partition=i % n, timestamp=ts,
                          headers=headers, on_delivery=on_delivery)
                sent += 1
                p.poll(0)
        left = p.flush(FLUSH_S)
        self.problems.check(left == 0, f"{mode}: {left} records without a delivery report "
                                       f"{FLUSH_S}s after sending")
        if failures:
            examples = [f"{t}/{v.decode()}: {e}" for (t, v), e in self.failed.items()
                        if v.decode().startswith(f"{mode}-")][:EXAMPLES]
            self.problems.add(f"{mode}: {sum(failures.values())} of {sent} deliveries failed "
                              f"{dict(failures)}, e.g. {examples}")
        return {"sent": sent, "failed": sum(failures.values()), "errors": dict(failures),
                "client_errors": dict(client_errors)}

    # --- consume -----------------------------------------------------------

    def watermarks(self, c, tp):
        try:
            return c.get_watermark_offsets(TopicPartition(*tp), timeout=10)
        except KafkaException as e:
            self.problems.add(f"watermarks of {tp_name(tp)}: {e}")
            return None

    def read(self, c, starts, until):
        """Reads each partition from `starts[tp]` until `until[tp]`; returns
        tp -> [Rec]."""
        got = {tp: [] for tp in starts}
        c.assign([TopicPartition(t, p, o) for (t, p), o in starts.items()])
        errors = Counter()

        def pending():
            return [tp for tp in starts
                    if (got[tp][-1].offset + 1 if got[tp] else max(starts[tp], 0)) < until[tp]]

        dl = Deadline(READ_S)
        while pending() and not dl.expired():
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error():
                errors[m.error().name()] += 1
                continue
            tp = (m.topic(), m.partition())
            kind, ts = m.timestamp()
            self.problems.check(kind == TIMESTAMP_CREATE_TIME,
                                f"{tp_name(tp)}@{m.offset()}: timestamp type {kind}")
            got[tp].append(Rec(m.offset(), m.key(), m.value(), ts, m.headers() or []))
        c.unassign()
        for tp in pending():
            self.problems.add(f"{tp_name(tp)}: read {len(got[tp])} records from "
                              f"{starts[tp]} in {READ_S}s, not up to {until[tp]} "
                              f"(consumer errors {dict(errors)})")
        return got

    def consume(self):
        c = self.consumer(f"{self.main}-reader")
        for tp in self.tps:
            marks = self.watermarks(c, tp)
            if marks is None:
                continue
            self.problems.check(marks[0] == 0, f"{tp_name(tp)}: low watermark {marks[0]}")
            self.hw[tp] = marks[1]
        self.log = self.read(c, {tp: OFFSET_BEGINNING for tp in self.hw},
                             self.hw)
        c.close()
        for tp, recs in self.log.items():
            self.check_partition(tp, recs)
        self.check_acked()
        self.summary["high_watermarks"] = {tp_name(tp): hw for tp, hw in self.hw.items()}

    def check_partition(self, tp, recs):
        offsets = [r.offset for r in recs]
        self.problems.check(offsets == list(range(len(recs))),
                            f"{tp_name(tp)}: offsets are not 0.. without gaps: {offsets}")
        sent = set(self.sent[tp])
        last_i = {}
        for r in recs:
            if r.value not in sent:
                self.problems.add(f"{tp_name(tp)}@{r.offset}: {r.value!r} was not sent here")
                continue
            key, ts, headers = self.produced[r.value]
            self.problems.check((r.key, r.ts, r.headers) == (key, ts, headers),
                                f"{tp_name(tp)}@{r.offset}: stored (key, time, headers) "
                                f"{(r.key, r.ts, r.headers)}, produced {(key, ts, headers)}")
            mode, i = r.value.decode().rsplit("-", 1)
            self.problems.check(int(i) > last_i.get(mode, -1),
                                f"{tp_name(tp)}@{r.offset}: {r.value!r} after "
                                f"{mode}-{last_i.get(mode)}: out of order or stored twice")
            last_i[mode] = int(i)

    def check_acked(self):
        """Every acknowledged record is at its offset; acks=0 records, which
        a healthy cluster does not lose, are there too."""
        stored = {(t, r.value): (p, r.offset) for (t, p), recs in self.log.items()
                  for r in recs}
        missing = [(t, v.decode(), at) for (t, v), at in self.acked.items()
                   if not v.startswith(b"acks0-") and stored.get((t, v)) != at]
        self.problems.check(not missing, f"{len(missing)} acknowledged records are not at "
                                         f"their (partition, offset): {missing[:EXAMPLES]}")
        lost = [(t, v.decode()) for (t, v) in self.acked
                if v.startswith(b"acks0-") and (t, v) not in stored]
        self.problems.check(not lost, f"{len(lost)} acks=0 records are not stored: "
                                      f"{lost[:EXAMPLES]}")

    # --- ListOffsets by time -------------------------------------------------

    def list_offsets_by_time(self):
        c = self.consumer(f"{self.main}-times")
        checked = 0
        for which in ("first", "middle", "past-end"):
            query = {}
            for tp, recs in self.log.items():
                if not recs:
                    query[tp] = (self.base_ts, -1)
                    continue
                target = {"first": recs[0].ts,
                          "middle": recs[len(recs) // 2].ts - 5,
                          "past-end": max(r.ts for r in recs) + 1}[which]
                want = next((r.offset for r in recs if r.ts >= target), -1)
                query[tp] = (target, want)
            if not query:
                continue
            got = c.offsets_for_times([TopicPartition(t, p, target)
                                       for (t, p), (target, _) in query.items()], timeout=15)
            for r in got:
                tp = (r.topic, r.partition)
                target, want = query[tp]
                if r.error is not None:
                    self.problems.add(f"{tp_name(tp)} at {which} time {target}: {r.error}")
                    continue
                self.problems.check(r.offset == want, f"{tp_name(tp)} at {which} time "
                                                      f"{target}: offset {r.offset}, "
                                                      f"expected {want}")
                checked += 1
        c.close()
        self.summary["times_checked"] = checked

    # --- consumer groups ---------------------------------------------------

    def cuts(self, gi):
        """Where group number `gi` commits on each partition: inside the log
        and different from group to group, so a resume from someone else's
        commit (or from the start) shows."""
        out = {}
        for ti, tp in enumerate(self.tps):
            hw = self.hw.get(tp, 0)
            out[tp] = 0 if hw < 2 else 1 + (gi * 5 + ti * 3) % (hw - 1)
        return out

    def groups_round(self):
        cuts = {g: self.cuts(gi) for gi, g in enumerate(self.groups)}
        members = {g: self.consumer(g) for g in self.groups}
        for c in members.values():
            c.subscribe(list(self.topics))
        self.read_prefixes(members, cuts)
        confirmed = {}
        for g, c in members.items():
            confirmed[g] = self.commit(g, c, cuts[g])
            c.close()
        first = self.resume(cuts, confirmed)
        self.summary["groups"] = {
            g: {"committed": {tp_name(tp): o for tp, o in confirmed[g].items()},
                "resumed_at": {tp_name(tp): o for tp, o in first[g].items()}}
            for g in self.groups}

    def read_prefixes(self, members, cuts):
        """Each member reads its group's prefix of every partition, from the
        start of the log, and sees what the log holds."""
        upto = {g: defaultdict(lambda: -1) for g in members}

        def behind(g):
            return [tp for tp, cut in cuts[g].items() if upto[g][tp] < cut - 1]

        dl = Deadline(READ_S)
        while any(behind(g) for g in members) and not dl.expired():
            for g, c in members.items():
                m = c.poll(0.05)
                if m is None or m.error():
                    continue
                tp = (m.topic(), m.partition())
                if upto[g][tp] == -1:
                    self.problems.check(m.offset() == 0, f"group {g}: first record of "
                                                         f"{tp_name(tp)} at {m.offset()}")
                recs = self.log.get(tp, [])
                if m.offset() < len(recs):
                    self.problems.check(recs[m.offset()].value == m.value(),
                                        f"group {g}: {tp_name(tp)}@{m.offset()} is "
                                        f"{m.value()!r}, the log has {recs[m.offset()].value!r}")
                upto[g][tp] = max(upto[g][tp], m.offset())
        for g in members:
            self.problems.check(not behind(g), f"group {g}: did not read up to its commit "
                                               f"point within {READ_S}s on "
                                               f"{[tp_name(tp) for tp in behind(g)]} "
                                               f"(assignment {members[g].assignment()})")

    def commit(self, g, c, cuts):
        """Commits `cuts` for group `g`; returns the offsets committed() then
        confirms."""
        offsets = [TopicPartition(t, p, o, metadata=g) for (t, p), o in cuts.items()]
        try:
            for r in c.commit(offsets=offsets, asynchronous=False) or []:
                if r.error is not None:
                    self.problems.add(f"group {g}: commit of {r.topic}[{r.partition}] at "
                                      f"{r.offset}: {err_name(r.error)}")
        except KafkaException as e:
            self.problems.add(f"group {g}: commit of {len(cuts)} partitions failed: "
                              f"{err_name(e.args[0])}")
        confirmed = {}
        try:
            read = c.committed([TopicPartition(t, p) for t, p in cuts], timeout=10)
        except KafkaException as e:
            self.problems.add(f"group {g}: committed() failed: {err_name(e.args[0])}")
            return confirmed
        wrong = []
        for r in read:
            tp = (r.topic, r.partition)
            if r.error is None and r.offset == cuts[tp]:
                confirmed[tp] = r.offset
            else:
                wrong.append(f"{tp_name(tp)} at {r.offset} (error {r.error}), not {cuts[tp]}")
        self.problems.check(not wrong, f"group {g}: committed() has {len(confirmed)} of "
                                       f"{len(cuts)} commits; missing: {wrong}")
        return confirmed

    def resume(self, cuts, confirmed):
        """A new consumer per group, with no fallback to the start or end
        (auto.offset.reset=error), must receive first the record at the
        committed offset of each partition that has one after it."""
        want = {g: {tp: o for tp, o in confirmed[g].items() if o < self.hw.get(tp, 0)}
                for g in self.groups}
        first = {g: {} for g in self.groups}
        members = {g: self.consumer(g, **{"auto.offset.reset": "error"})
                   for g in self.groups if want[g]}
        for c in members.values():
            c.subscribe(list(self.topics))
        dl = Deadline(READ_S)
        while any(len(first[g]) < len(want[g]) for g in members) and not dl.expired():
            for g, c in members.items():
                m = c.poll(0.05)
                if m is None or m.error():
                    continue
                first[g].setdefault((m.topic(), m.partition()), m.offset())
        for g, c in members.items():
            c.close()
            got = {tp: first[g].get(tp) for tp in want[g]}
            self.problems.check(got == want[g], f"group {g}: resumed at "
                                                f"{ {tp_name(tp): o for tp, o in got.items()} }, "
                                                f"committed "
                                                f"{ {tp_name(tp): o for tp, o in want[g].items()} }")
        return first

    # --- DeleteRecords -----------------------------------------------------

    def delete_records(self):
        admin = AdminClient(self.conf())
        targets = {tp: self.hw[tp] // 2 for tp in self.tps if tp in self.hw}
        futures = admin.delete_records([TopicPartition(t, p, o) for (t, p), o in targets.items()],
                                       request_timeout=ADMIN_TIMEOUT_S,
                                       operation_timeout=ADMIN_TIMEOUT_S)
        deleted = {}
        for tp_obj, future in futures.items():
            tp = (tp_obj.topic, tp_obj.partition)
            try:
                low = future.result(timeout=ADMIN_TIMEOUT_S + 5).low_watermark
            except KafkaException as e:
                self.problems.add(f"delete_records {tp_name(tp)} to {targets[tp]}: "
                                  f"{err_name(e.args[0])}")
                continue
            if self.problems.check(low == targets[tp], f"delete_records {tp_name(tp)} to "
                                                       f"{targets[tp]}: low watermark {low}"):
                deleted[tp] = low
        listed = admin.list_offsets({TopicPartition(*tp): OffsetSpec.earliest()
                                     for tp in deleted}, request_timeout=ADMIN_TIMEOUT_S)
        for tp_obj, future in listed.items():
            tp = (tp_obj.topic, tp_obj.partition)
            try:
                earliest = future.result(timeout=ADMIN_TIMEOUT_S + 5).offset
            except KafkaException as e:
                self.problems.add(f"list_offsets earliest {tp_name(tp)}: {err_name(e.args[0])}")
                continue
            self.problems.check(earliest == deleted[tp], f"{tp_name(tp)}: ListOffsets earliest "
                                                         f"{earliest} after deleting to "
                                                         f"{deleted[tp]}")
        c = self.consumer(f"{self.main}-after-delete")
        for tp, low in deleted.items():
            marks = self.watermarks(c, tp)
            self.problems.check(marks in (None, (low, self.hw[tp])),
                                f"{tp_name(tp)}: watermarks {marks} after deleting to {low}, "
                                f"expected {(low, self.hw[tp])}")
        nonempty = {tp: OFFSET_BEGINNING for tp, low in deleted.items() if low < self.hw[tp]}
        got = self.read(c, nonempty, {tp: deleted[tp] + 1 for tp in nonempty})
        c.close()
        for tp, recs in got.items():
            if recs:
                self.problems.check(recs[0].offset == deleted[tp],
                                    f"{tp_name(tp)}: reading from the beginning after "
                                    f"deleting to {deleted[tp]} starts at {recs[0].offset}")
        self.summary["low_watermarks"] = {tp_name(tp): o for tp, o in deleted.items()}

    # --- CreatePartitions --------------------------------------------------

    def create_partitions(self):
        admin = AdminClient(self.conf())
        total = self.partitions + NEW_PARTITIONS
        future = admin.create_partitions([NewPartitions(self.main, total)],
                                         request_timeout=ADMIN_TIMEOUT_S,
                                         operation_timeout=ADMIN_TIMEOUT_S)[self.main]
        try:
            future.result(timeout=ADMIN_TIMEOUT_S + 5)
        except KafkaException as e:
            self.problems.add(f"create_partitions {self.main} to {total}: {err_name(e.args[0])}")
            return
        new = list(range(self.partitions, total))
        p = Producer(self.conf(**{
            "acks": "all",
            "enable.idempotence": False,
            "linger.ms": 0,
            "message.timeout.ms": MESSAGE_TIMEOUT_MS,
            "request.timeout.ms": 10000,
            "retry.backoff.ms": 100,
            "topic.metadata.refresh.interval.ms": 500,
        }))
        retried = Counter()
        offsets = self.first_writes(p, new, retried)
        # Once a partition took a write, the next ones are plain.
        reports = []
        for part in offsets:
            for i in range(1, 4):
                p.produce(self.main, f"new-{part}-{i}".encode(), partition=part,
                          on_delivery=lambda err, msg: reports.append((err, msg)))
        left = p.flush(FLUSH_S)
        self.problems.check(left == 0, f"{left} records to new partitions without a "
                                       f"delivery report")
        for err, msg in reports:
            self.problems.check(err is None, f"{self.main}[{msg.partition()}]: "
                                             f"{msg.value()!r}: {err}")
        self.summary["new_partitions"] = {"offsets": offsets, "retried": dict(retried)}

    def first_writes(self, p, new, retried):
        """Writes the first record of each new partition, again after each
        retriable refusal; returns partition -> offset of those that took
        it. A timeout is a failure: the partition hung instead of refusing."""
        offsets = {}
        pending = list(new)
        last = {}
        dl = Deadline(NEW_PARTITIONS_S)
        while pending and not dl.expired():
            reports = []
            for part in pending:
                try:
                    p.produce(self.main, f"new-{part}-0".encode(), partition=part,
                              on_delivery=lambda err, msg: reports.append((err, msg)))
                except KafkaException as e:
                    last[part] = e.args[0]
            left = p.flush(FLUSH_S)
            self.problems.check(left == 0, f"{left} first records to new partitions without "
                                           f"a delivery report {FLUSH_S}s after sending")
            for err, msg in reports:
                last[msg.partition()] = err
            for part in list(pending):
                err = last.get(part)
                if err is None:
                    pending.remove(part)
                    offsets[part] = next(m.offset() for e, m in reports
                                         if e is None and m.partition() == part)
                    self.problems.check(offsets[part] == 0, f"{self.main}[{part}]: first "
                                                            f"record at {offsets[part]}")
                elif err.code() == KafkaError._MSG_TIMED_OUT or not (
                        err.retriable() or err.code() in (KafkaError._UNKNOWN_PARTITION,
                                                          KafkaError.UNKNOWN_TOPIC_OR_PART)):
                    pending.remove(part)
                    self.problems.add(f"{self.main}[{part}]: produce with acks=all right after "
                                      f"create_partitions: {err_name(err)}")
                else:
                    retried[err_name(err)] += 1
            if pending:
                time.sleep(0.2)
        for part in pending:
            self.problems.add(f"{self.main}[{part}]: still refused {NEW_PARTITIONS_S}s after "
                              f"create_partitions: {err_name(last.get(part))}")
        return offsets

    # --- kafka-python ------------------------------------------------------

    def kafka_python(self):
        # kafka-python's own log, shown when this step fails: what its
        # group coordinator and fetcher went through.
        trail = KpTrail()
        before = len(self.problems.items)
        try:
            self.kafka_python_round()
        finally:
            trail.stop()
            if len(self.problems.items) > before:
                trail.dump()

    def kafka_python_round(self):
        group = f"{self.kp}-group"
        p = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5,
                          request_timeout_ms=10000, delivery_timeout_ms=MESSAGE_TIMEOUT_MS,
                          max_block_ms=15000, retry_backoff_ms=200)

        def send(first, n):
            futures = [(f"kp-{i}", p.send(self.kp, key=f"k{i}".encode(),
                                          value=f"kp-{i}".encode(),
                                          partition=i % self.partitions))
                       for i in range(first, first + n)]
            at = {}
            failed = Counter()
            examples = []
            dl = Deadline(FLUSH_S)
            for value, f in futures:
                try:
                    md = f.get(timeout=max(0.1, dl.left()))
                    at[value] = (md.partition, md.offset)
                except KpError as e:
                    failed[type(e).__name__] += 1
                    examples.append(f"{value}: {e}")
            self.problems.check(not failed, f"kafka-python acks=all: {sum(failed.values())} of "
                                            f"{n} sends failed {dict(failed)}, e.g. "
                                            f"{examples[:2]}")
            return at

        def read(n):
            c = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=group,
                              enable_auto_commit=False, auto_offset_reset="earliest",
                              session_timeout_ms=10000, heartbeat_interval_ms=1000,
                              request_timeout_ms=15000)
            # Knowing the topic before joining spares a second join round
            # that its metadata arriving later would start. kafka-python
            # 3.0.12 loses the assignment of a leader's metadata-triggered
            # rejoin when a poll() times out between its assignment and the
            # SyncGroup answer (the member then never fetches), so the polls
            # are long enough for a whole join too.
            c.partitions_for_topic(self.kp)
            c.subscribe([self.kp])
            got = {}
            dl = Deadline(READ_S)
            while len(got) < n and not dl.expired():
                for recs in c.poll(timeout_ms=1000).values():
                    for r in recs:
                        got[r.value.decode()] = (r.partition, r.offset)
            return c, got

        first = send(0, 4 * self.partitions)
        if len(first) < 4 * self.partitions:
            p.close(timeout=10)
            return
        c, got = read(len(first))
        wrong = sorted((v, got.get(v), at) for v, at in first.items() if got.get(v) != at)
        self.problems.check(not wrong, f"kafka-python group {group}: {len(wrong)} records not "
                                       f"read where they were acknowledged (value, read at, "
                                       f"acknowledged at): {wrong[:EXAMPLES]}")
        try:
            c.commit(timeout_ms=15000)
            for part in range(self.partitions):
                ends = [o + 1 for (pp, o) in first.values() if pp == part]
                want = max(ends, default=None)
                if want is not None:
                    got_offset = c.committed(KpTopicPartition(self.kp, part), timeout_ms=10000)
                    self.problems.check(got_offset == want,
                                        f"kafka-python committed() of {self.kp}[{part}] "
                                        f"is {got_offset}, not {want}")
        except KpError as e:
            self.problems.add(f"kafka-python group {group} commit: {e!r}")
        c.close(autocommit=False, timeout_ms=10000)
        more = send(100, 2 * self.partitions)
        p.close(timeout=10)
        c, got = read(len(more))
        c.close(autocommit=False, timeout_ms=10000)
        old = sorted(v for v in got if v not in more)
        self.problems.check(got == more, f"kafka-python group {group} resumed and read "
                                         f"{len(got)} records, {len(old)} of them from before "
                                         f"the commit (e.g. {old[:EXAMPLES]}); expected "
                                         f"exactly the {len(more)} new ones")
        self.summary["kafka_python"] = {"first": len(first), "resumed": len(got)}


def run(bootstrap, prefix, partitions, groups):
    # Every wait below is bounded; this is the backstop that says where a
    # run got stuck anyway (the stacks of every thread), before the test's
    # own timeout kills the script without a word.
    faulthandler.dump_traceback_later(RUN_LIMIT_S, exit=True)
    r = Run(bootstrap, prefix, partitions, groups)
    r.step("produce", r.produce)
    r.step("consume", r.consume)
    r.step("time", r.list_offsets_by_time)
    r.step("groups", r.groups_round)
    r.step("delete", r.delete_records)
    r.step("partitions", r.create_partitions)
    r.step("kafka-python", r.kafka_python)
    r.summary["failures"] = r.problems.items
    emit(r.summary)
    if r.problems.items:
        sys.exit(1)


def main():
    args = sys.argv[1:]
    if len(args) == 6 and args[0] == "create":
        create(args[1], args[2], int(args[3]), int(args[4]), int(args[5]))
    elif len(args) == 5 and args[0] == "run":
        run(args[1], args[2], int(args[3]), [g for g in args[4].split(",") if g])
    else:
        fail(__doc__)


if __name__ == "__main__":
    main()
