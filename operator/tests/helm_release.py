#!/usr/bin/env python3
"""Installs, upgrades or uninstalls charts/rivulet in the cluster that
KUBECONFIG names, through helm-python-sdk (Helm's Go SDK in the wheel: no
helm binary needed). Used by operator/tests/e2e.rs:

    helm_release.py install NAMESPACE RELEASE '{"values": "as JSON"}'
    helm_release.py uninstall NAMESPACE RELEASE

`install` upgrades the release when it exists, so it can be run again.
"""

import json
import sys
from pathlib import Path

import helm_python as helm
from helm_python.errors import HelmNotFoundError

CHART = Path(__file__).resolve().parents[2] / "charts" / "rivulet"


def main() -> int:
    if len(sys.argv) < 4 or sys.argv[1] not in ("install", "uninstall"):
        print(__doc__, file=sys.stderr)
        return 2
    action, namespace, release = sys.argv[1:4]
    values = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
    config = helm.Config(namespace=namespace)
    if action == "uninstall":
        config.uninstall(release, ignore_not_found=True)
        print(f"uninstalled {release}")
        return 0
    chart = helm.Chart.load(CHART)
    try:
        config.status(release)
    except HelmNotFoundError:
        done = config.install(
            chart, release, values, namespace=namespace, create_namespace=True
        )
    else:
        done = config.upgrade(chart, release, values, namespace=namespace)
    info = done.get("info", {}) if isinstance(done, dict) else {}
    print(f"{action} {release}: {info.get('status', 'done')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
