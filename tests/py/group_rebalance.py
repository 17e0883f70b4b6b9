"""Rebalancing confluent-kafka consumer groups.

usage:
  group_rebalance.py members BOOTSTRAP TOPIC PARTITIONS STRATEGY
      with partition.assignment.strategy=STRATEGY (range or
      cooperative-sticky): A joins, B joins, C joins, B leaves, while a
      producer keeps writing. After each step the assignments are disjoint,
      cover every partition and are balanced; with cooperative-sticky no
      member ever gives up a partition it keeps, and a partition moves only
      from its owner to a new owner; B's LeaveGroup is acted on well within
      the session timeout; the broker reports STRATEGY as the assignor; no
      produced record is lost.
  group_rebalance.py static BOOTSTRAP TOPIC PARTITIONS
      two static members (group.instance.id); each in turn is closed and
      restarted with the same instance id within session.timeout.ms: it gets
      its old partitions back and the other member sees no rebalance.
"""

import sys
import time

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from common import Deadline, check, check_eq, emit, fail

SESSION_MS = 10000


def log(msg):
    print(f"[group_rebalance] {msg}", file=sys.stderr, flush=True)


class Member:
    """One consumer with its rebalance events and the records it received."""

    def __init__(self, name, bootstrap, group, topic, strategy, instance=None):
        self.name = name
        self.events = []
        self.records = []
        conf = {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "client.id": name,
            "partition.assignment.strategy": strategy,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
            "auto.commit.interval.ms": 200,
            "session.timeout.ms": SESSION_MS,
            "heartbeat.interval.ms": 500,
        }
        if instance:
            conf["group.instance.id"] = instance
        self.c = Consumer(conf)
        self.c.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                         on_lost=self._on_lost)
        self.closed = False

    def _on_assign(self, _c, parts):
        self.events.append(("assign", sorted(p.partition for p in parts)))

    def _on_revoke(self, _c, parts):
        self.events.append(("revoke", sorted(p.partition for p in parts)))

    def _on_lost(self, _c, parts):
        self.events.append(("lost", sorted(p.partition for p in parts)))

    def owned(self):
        return {tp.partition for tp in self.c.assignment()}

    def poll(self):
        m = self.c.poll(0.02)
        if m is None:
            return
        if m.error():
            log(f"{self.name}: {m.error()}")
            return
        self.records.append((m.partition(), m.offset(), m.value().decode()))

    def close(self):
        self.c.close()
        self.closed = True


class Producing:
    """A producer writing one unique value every few polls."""

    def __init__(self, bootstrap, topic, partitions):
        self.p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
        self.topic, self.partitions, self.n = topic, partitions, 0
        self.delivered = {}

    def _done(self, err, msg):
        if err is None:
            self.delivered[msg.value().decode()] = (msg.partition(), msg.offset())

    def tick(self):
        self.p.produce(self.topic, f"v-{self.n}".encode(), partition=self.n % self.partitions,
                       on_delivery=self._done)
        self.n += 1
        self.p.poll(0)

    def finish(self):
        check_eq(self.p.flush(30), 0, "undelivered records")
        check_eq(len(self.delivered), self.n, "delivered records")


def pump(members, seconds, producer=None, until=None):
    """Polls every live member for up to `seconds` (until `until()` holds)."""
    dl = Deadline(seconds)
    while not dl.expired():
        for m in members:
            if not m.closed:
                m.poll()
        if producer:
            producer.tick()
        if until and until():
            return True
    return False


def balanced(members, partitions):
    owned = [m.owned() for m in members]
    union = set().union(*owned)
    sizes = [len(o) for o in owned]
    return (sum(sizes) == len(union) == partitions and min(sizes) >= partitions // len(members)
            and max(sizes) <= -(-partitions // len(members)))


def wait_balanced(members, partitions, what, producer, seconds=40):
    start = time.monotonic()
    ok = pump(members, seconds, producer, lambda: balanced(members, partitions))
    owned = {m.name: sorted(m.owned()) for m in members}
    check(ok, f"{what}: no disjoint, complete, balanced assignment in {seconds} s: {owned}")
    took = time.monotonic() - start
    log(f"{what}: {owned} after {took:.1f} s")
    return took


def check_sticky(step, before, members):
    """Cooperative: a member keeps what it is not giving away, and every
    partition that moved went from its owner to a new one."""
    for m in members:
        old = before.get(m.name, set())
        now = m.owned()
        revoked = set().union(*[set(ps) for kind, ps in m.events if kind in ("revoke", "lost")])
        check_eq(revoked & now, set(),
                 f"{step}: {m.name} had partitions revoked that it owns again ({m.events})")
        check_eq(old - now, revoked & old, f"{step}: {m.name} lost partitions without a revoke")


def members_scenario(bootstrap, topic, partitions, strategy):
    group = f"{topic}-{strategy}"
    cooperative = strategy == "cooperative-sticky"
    producer = Producing(bootstrap, topic, partitions)
    all_members = []
    live = []
    for step, name in (("A joins", "A"), ("B joins", "B"), ("C joins", "C"), ("B leaves", None)):
        before = {m.name: m.owned() for m in live}
        for m in live:
            m.events.clear()
        if name:
            m = Member(name, bootstrap, group, topic, strategy)
            all_members.append(m)
            live.append(m)
        else:
            leaving = next(m for m in live if m.name == "B")
            leaving.close()
            live.remove(leaving)
        took = wait_balanced(live, partitions, step, producer)
        if not name:
            check(took < SESSION_MS / 1000 - 1,
                  f"B's LeaveGroup took {took:.1f} s to rebalance (session timeout {SESSION_MS} ms)")
        if cooperative:
            check_sticky(step, before, live)
            if step == "B leaves":
                for m in live:
                    check(before[m.name] <= m.owned(),
                          f"{step}: {m.name} lost partitions {before[m.name] - m.owned()}")

    admin = AdminClient({"bootstrap.servers": bootstrap})
    desc = admin.describe_consumer_groups([group])[group].result(timeout=15)
    check_eq(desc.partition_assignor, strategy, "assignor the broker reports")
    check_eq(sorted(mm.client_id for mm in desc.members), ["A", "C"], "members described")

    producer.finish()
    want = producer.delivered
    seen = lambda: {v for m in all_members for (_, _, v) in m.records}
    pump(live, 30, until=lambda: set(want) <= seen())
    missing = set(want) - seen()
    check(not missing, f"{len(missing)} of {len(want)} records never consumed, e.g. {sorted(missing)[:5]}")
    for m in all_members:
        for p, o, v in m.records:
            check_eq((p, o), want.get(v), f"where {m.name} received {v}")
    for m in live:
        m.close()
    emit({"strategy": strategy, "records": len(want),
          "consumed": {m.name: len(m.records) for m in all_members}})


def static_scenario(bootstrap, topic, partitions):
    group = f"{topic}-static"
    strategy = "range"
    members = {n: Member(n, bootstrap, group, topic, strategy, instance=f"inst-{n}") for n in "AB"}
    wait_balanced(list(members.values()), partitions, "A and B joined", None)
    for restarted, other in (("A", "B"), ("B", "A")):
        old = {n: m.owned() for n, m in members.items()}
        members[other].events.clear()
        start = time.monotonic()
        members[restarted].close()
        pump([members[other]], 1.0)
        members[restarted] = Member(restarted, bootstrap, group, topic, strategy,
                                    instance=f"inst-{restarted}")
        back = members[restarted]
        ok = pump(list(members.values()), SESSION_MS / 1000,
                  until=lambda: back.owned() == old[restarted])
        check(ok, f"static member {restarted} restarted: owns {back.owned()}, "
                  f"before it owned {old[restarted]} (events {back.events})")
        took = time.monotonic() - start
        log(f"{restarted} back with {sorted(back.owned())} {took:.1f} s after its close")
        # Give a rebalance, if the broker started one, time to reach `other`.
        pump(list(members.values()), 3.0)
        check_eq(members[other].events, [],
                 f"rebalance events of {other} while static member {restarted} restarted")
        check_eq(members[other].owned(), old[other], f"assignment of {other}")
        check_eq(back.owned(), old[restarted], f"assignment of restarted {restarted}")
    for m in members.values():
        m.close()
    emit({"static": "ok"})


def main():
    args = sys.argv[1:]
    if len(args) == 5 and args[0] == "members":
        members_scenario(args[1], args[2], int(args[3]), args[4])
    elif len(args) == 4 and args[0] == "static":
        static_scenario(args[1], args[2], int(args[3]))
    else:
        fail(__doc__)


if __name__ == "__main__":
    main()
