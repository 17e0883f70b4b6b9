#!/usr/bin/env python3
"""Live data for the dashboards, then their pictures: starts a 3-broker
`rivulet dev` cluster, the operator (its /metrics only: no Kubernetes here,
so it reconciles nothing), a real Prometheus scraping both every 5 s with
Rivulet's alert rules, and produce/consume load with confluent-kafka on
three topics (one group stops half-way, so its lag grows). After
--minutes it renders every dashboard with scripts/render_dashboards.py and
stops everything (--keep leaves it running until Ctrl-C).

    cargo build --bins
    pip install confluent-kafka matplotlib
    python3 scripts/monitoring_demo.py --minutes 4 --out dashboards-png

Needs `prometheus` on PATH (Debian/Ubuntu package `prometheus`).
"""

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

import render_dashboards  # noqa: E402

# (topic, partitions, replication factor, records per second, consumer group)
LOAD = [
    ("orders", 6, 3, 400, "billing"),
    ("payments", 3, 3, 150, "ledger"),
    ("clicks", 4, 2, 250, "analytics"),
]
# This group stops half-way through, so the lag panels have something to show.
STALLS = "analytics"

# A kubeconfig whose API server does not exist: the operator serves its
# /metrics and keeps retrying its watches.
NOWHERE_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: none, user: {token: none}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def binary(name, given):
    if given:
        return given
    built = ROOT / "target/debug" / name
    return str(built) if built.exists() else name


class Processes:
    """Everything started, stopped in reverse order."""

    def __init__(self):
        self.procs = []

    def start(self, name, argv, log, **kw):
        print(f"starting {name}: {' '.join(map(str, argv))}", flush=True)
        stdout = kw.pop("stdout") if "stdout" in kw else open(log, "w")
        proc = subprocess.Popen(argv, stdout=stdout, stderr=subprocess.STDOUT, **kw)
        self.procs.append((name, proc))
        return proc

    def stop(self, name=None):
        for n, proc in reversed(self.procs):
            if (name is None or n == name) and proc.poll() is None:
                proc.send_signal(signal.SIGINT if n == "rivulet dev" else signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()


def start_cluster(procs, rivulet, data):
    dev = procs.start("rivulet dev", [rivulet, "dev", "--brokers", "3", "--data-dir", data / "cluster"],
                      None, stdout=subprocess.PIPE, text=True)
    bootstrap = None
    for line in dev.stdout:
        print("  " + line.rstrip())
        if re.fullmatch(r"[0-9.:,]+", line.strip()):
            bootstrap = line.strip()
        if line.startswith("Ctrl-C to stop"):
            break
    if not bootstrap:
        raise SystemExit("rivulet dev did not print its bootstrap servers")
    # Keep draining dev's output so it never blocks on a full pipe.
    log = open(data / "dev.log", "w")
    subprocess.Popen(["cat"], stdin=dev.stdout, stdout=log)
    return bootstrap


def create_topics(bootstrap):
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = [NewTopic(t, p, rf, config={"min.insync.replicas": "2"} if rf == 3 else {})
           for t, p, rf, _, _ in LOAD]
    for topic, future in admin.create_topics(new).items():
        future.result(30)
        print(f"created topic {topic}")


def prometheus_config(data, operator_port):
    text = (data / "cluster/prometheus.yml").read_text()
    text = text.replace("scrape_interval: 15s", "scrape_interval: 5s")
    text = text.replace("evaluation_interval: 15s", "evaluation_interval: 5s")
    rules = ROOT / "manifests/monitoring/rivulet-rules.yaml"
    text = text.replace("# rule_files:\n#   - /path/to/rivulet/manifests/monitoring/rivulet-rules.yaml",
                        f"rule_files:\n  - {rules}")
    if operator_port:
        text += (f"  - job_name: rivulet-operator\n    static_configs:\n"
                 f"      - targets: [\"127.0.0.1:{operator_port}\"]\n"
                 f"        labels:\n          namespace: local\n          pod: rivulet-operator-0\n")
    path = data / "prometheus.yml"
    path.write_text(text)
    return path


def wait_ready(url, timeout=60):
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url + "/-/ready", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"Prometheus at {url} not ready")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=4, help="how long to run the load before rendering")
    ap.add_argument("--out", type=Path, default=Path("dashboards-png"))
    ap.add_argument("--dir", type=Path, help="working directory (default: a temporary one)")
    ap.add_argument("--rivulet", help="the rivulet binary (default target/debug/rivulet, else PATH)")
    ap.add_argument("--operator", help="the rivulet-operator binary (default target/debug/rivulet-operator)")
    ap.add_argument("--colors", type=int, default=0, help="passed to render_dashboards.py")
    ap.add_argument("--keep", action="store_true", help="leave everything running after rendering")
    args = ap.parse_args()
    data = args.dir or Path(tempfile.mkdtemp(prefix="rivulet-monitoring-"))
    data.mkdir(parents=True, exist_ok=True)
    print(f"working in {data}")
    procs = Processes()
    try:
        bootstrap = start_cluster(procs, binary("rivulet", args.rivulet), data)
        create_topics(bootstrap)

        operator_port = free_port()
        kubeconfig = data / "kubeconfig"
        kubeconfig.write_text(NOWHERE_KUBECONFIG)
        procs.start("operator", [binary("rivulet-operator", args.operator), "--leader-election", "false",
                                 "--http-addr", f"127.0.0.1:{operator_port}"], data / "operator.log",
                    env={**os.environ, "KUBECONFIG": str(kubeconfig), "RUST_LOG": "warn"})

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        procs.start("prometheus", ["prometheus", f"--config.file={prometheus_config(data, operator_port)}",
                                   f"--storage.tsdb.path={data / 'prometheus-data'}",
                                   f"--web.listen-address=127.0.0.1:{port}"], data / "prometheus.log")
        wait_ready(url)
        print(f"Prometheus: {url}")

        load = ROOT / "tests/py/monitoring_load.py"
        for topic, _, _, rate, group in LOAD:
            procs.start(f"producer {topic}", [sys.executable, load, "produce", bootstrap, topic, str(rate)],
                        data / f"produce-{topic}.log")
            procs.start(group, [sys.executable, load, "consume", bootstrap, topic, group],
                        data / f"consume-{group}.log")
        started = time.time()
        stalled = False
        while (left := started + args.minutes * 60 - time.time()) > 0:
            if not stalled and left < args.minutes * 30:
                print(f"stopping consumer group {STALLS}: its lag grows from here")
                procs.stop(STALLS)
                stalled = True
            print(f"load running, rendering in {left:.0f}s", flush=True)
            time.sleep(min(30, left))

        render_dashboards.main(["--prometheus", url, "--minutes", str(args.minutes + 0.5),
                                "--rate-interval", "20s", "--out", str(args.out),
                                "--colors", str(args.colors)])
        if args.keep:
            print(f"Still running: Prometheus {url}, bootstrap {bootstrap}. Ctrl-C stops everything.")
            signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        procs.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
