#!/usr/bin/env python3
"""Renders charts/rivulet into the single manifests/install.yaml for kubectl.

Uses helm-python-sdk (Helm's own Go SDK through a C library in the wheel),
so no helm binary and no network are needed:

    .venv/bin/pip install helm-python-sdk
    .venv/bin/python charts/render.py > manifests/install.yaml

operator/tests/install.rs runs this and fails when install.yaml is stale.
"""

import sys
from pathlib import Path

import helm_python as helm

NAMESPACE = "rivulet-system"
RELEASE = "rivulet"

HEADER = f"""\
# Rivulet operator: CRDs, RBAC and the operator Deployment in namespace
# {NAMESPACE}. Generated from charts/rivulet with default values by
# charts/render.py; do not edit. Install with:
#   kubectl apply --server-side -f manifests/install.yaml
---
apiVersion: v1
kind: Namespace
metadata:
  name: {NAMESPACE}
  labels:
    app.kubernetes.io/name: rivulet-operator
    pod-security.kubernetes.io/enforce: restricted
"""

# Apply order: CRDs and RBAC before the Deployment that needs them.
ORDER = ["crds.yaml", "serviceaccount.yaml", "rbac.yaml", "service.yaml", "deployment.yaml"]


def main() -> int:
    chart = helm.Chart.load(Path(__file__).parent / "rivulet")
    rendered = chart.render(name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs = {}
    for path, text in rendered.items():
        name = path.rsplit("/", 1)[-1]
        if name.endswith(".txt") or not text.strip():
            continue
        docs[name] = text
    unknown = sorted(set(docs) - set(ORDER))
    out = [HEADER]
    for name in ORDER + unknown:
        if name not in docs:
            continue
        for doc in docs[name].split("\n---\n"):
            body = "\n".join(l for l in doc.strip().splitlines() if l.strip() != "---").strip()
            if body and not all(l.startswith("#") for l in body.splitlines()):
                out.append(f"---\n# Source: {name}\n{body}\n")
    sys.stdout.write("".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
