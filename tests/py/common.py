"""Helpers shared by the client scripts that the Rust black-box tests run.

Each script exits 0 when every check passed and prints a JSON summary on
stdout; on a failed check it prints `FAIL: ...` on stderr and exits 1, so the
Rust side shows exactly which expectation broke.
"""

import json
import sys
import time

# Fixed create-times for produced records: far enough in the past that a
# broker stamping its own time instead would be noticed.
BASE_TS = 1_700_000_000_000


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def check_eq(actual, expected, what):
    if actual != expected:
        fail(f"{what}: expected {expected!r}, got {actual!r}")


def emit(obj):
    print(json.dumps(obj, sort_keys=True))


class Deadline:
    """A bounded wait: every loop in these scripts has one."""

    def __init__(self, seconds):
        self.end = time.monotonic() + seconds
        self.seconds = seconds

    def left(self):
        return max(0.0, self.end - time.monotonic())

    def expired(self):
        return time.monotonic() >= self.end
