"""API keys, per-key isolation and upload limits, against the real gateway, store and broker."""
from __future__ import annotations

import subprocess

import pytest
from fastapi.testclient import TestClient

from services.gateway.auth import KeyRing, RateLimiter
from shared.store import ObjectStore

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory, vtest_video):
    out = tmp_path_factory.mktemp("sec") / "clip.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(vtest_video), "-frames:v", "30", "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", str(out)], check=True)
    return out


def _upload(client, clip, headers=None):
    with open(clip, "rb") as fh:
        return client.post("/v1/analyses", files={"video": ("clip.mp4", fh, "video/mp4")},
                           data={"sport": "squat"}, headers=headers or {})


def test_one_key_can_never_read_another_keys_analysis(coach_stack, gateway, short_clip):
    ring = KeyRing(ObjectStore(coach_stack.settings))
    _, key_a = ring.create("athlete A's app")
    _, key_b = ring.create("athlete B's app")
    a, b = {"Authorization": f"Bearer {key_a}"}, {"X-API-Key": key_b}
    r = _upload(gateway, short_clip, a)
    assert r.status_code == 202, r.text
    aid = r.json()["id"]
    assert gateway.get(f"/v1/analyses/{aid}", headers=a).status_code == 200
    for path in ("", "/result", "/video", "/events", "/keypoints.csv"):
        assert gateway.get(f"/v1/analyses/{aid}{path}", headers=b).status_code == 404, path
        assert gateway.get(f"/v1/analyses/{aid}{path}").status_code == 404, f"keyless on {path}"
    assert aid in [x["id"] for x in gateway.get("/v1/analyses", headers=a).json()["analyses"]]
    assert aid not in [x["id"] for x in gateway.get("/v1/analyses", headers=b).json()["analyses"]]
    # the key is stored hashed: nothing in the store contains it
    store = ObjectStore(coach_stack.settings)
    assert all(key_a not in store.get_bytes(k).decode() for k in store.list("auth/keys/"))


def test_unknown_and_revoked_keys_are_refused(coach_stack, gateway):
    ring = KeyRing(ObjectStore(coach_stack.settings))
    key_id, key = ring.create("short-lived")
    assert gateway.get("/v1/analyses", headers={"Authorization": "Bearer coach_not-a-key"}).status_code == 401
    assert gateway.get("/v1/analyses", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert ring.revoke(key_id)
    # gateways cache lookups for 30 s; any lookup after that refuses the key
    assert KeyRing(ObjectStore(coach_stack.settings)).lookup(key) is None


def test_a_gateway_bound_beyond_loopback_requires_keys_and_limits_uploads(isolated_settings, short_clip):
    from services.gateway.app import create_app

    settings = isolated_settings.with_(gateway_host="0.0.0.0", uploads_per_minute=2)
    with TestClient(create_app(settings), client=("127.0.0.1", 5000)) as client:
        r = client.get("/v1/analyses")
        assert r.status_code == 401 and "API key is required" in r.json()["detail"]
        assert client.get("/healthz").status_code == 200, "probes stay open"
        _, key = KeyRing(ObjectStore(settings)).create("tenant")
        h = {"Authorization": f"Bearer {key}"}
        assert [_upload(client, short_clip, h).status_code for _ in range(3)] == [202, 202, 429]
        r = _upload(client, short_clip, h)
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1


def test_rate_limiter_refills_over_time(monkeypatch):
    import services.gateway.auth as auth

    now = [1000.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: now[0])
    limiter = RateLimiter(per_minute=6)            # one upload every 10 s, bursts of 6
    assert all(limiter.take("k") == 0 for _ in range(6))
    assert limiter.take("k") == pytest.approx(10.0)
    assert limiter.take("other") == 0, "buckets are per key"
    now[0] += 10.0
    assert limiter.take("k") == 0
    assert limiter.take("k") > 0
