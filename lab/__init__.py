"""Experiments that need more than one service (tracker + pose, ...): evaluation data, checks,
one-file pipelines. Like the tests, lab code may import any service; no service's runtime (and
no module of `shared/`) imports it. A service's own lab code is in `services/<name>/lab/`, which
may use this package. Enforced by tests/unit/platform/test_architecture.py."""
