"""Print deploy/prometheus/alerts.yml as a Prometheus Operator PrometheusRule.

    python deploy/prometheus/rule_crd.py > deploy/k8s/optional/prometheusrule.yaml

tests/unit/platform/test_deploy.py fails when the two drift.
"""
from __future__ import annotations

import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
HEADER = """# deploy/prometheus/alerts.yml as a PrometheusRule, for the Prometheus Operator. Generated:
#   python deploy/prometheus/rule_crd.py > deploy/k8s/optional/prometheusrule.yaml
"""


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data):
        return True


def _str(dumper, data):
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\n" in data else None)


_Dumper.add_representer(str, _str)


def render(alerts: Path = HERE / "alerts.yml") -> str:
    rule = {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
        "metadata": {"name": "ai-coach", "labels": {
            "app.kubernetes.io/name": "ai-coach", "app.kubernetes.io/part-of": "ai-coach",
            "app.kubernetes.io/component": "monitoring"}},
        "spec": yaml.safe_load(alerts.read_text()),
    }
    return HEADER + yaml.dump(rule, Dumper=_Dumper, sort_keys=False, width=110)


if __name__ == "__main__":
    sys.stdout.write(render())
