"""API keys, per-key isolation and upload rate limits for the gateway.

Keys are random secrets shown once (`coach keys create`); only their SHA-256 is stored, in the
object store under auth/keys/<sha256>.json, so a leaked bucket listing reveals no usable key.
Every analysis and session records the key id that created it (`owner` in request.json /
session.json); any other key gets 404 for it, exactly as for an id that does not exist.

Keyless requests are accepted only when the gateway listens on loopback, the client is on
loopback and COACH_ALLOW_KEYLESS is true (the embedded stack's default, announced at start);
they act as the owner "local". Any other binding requires a key on every /v1 request.

A key is sent as `Authorization: Bearer <key>` or `X-API-Key: <key>`; for the browser's
EventSource and download links, which cannot set headers, `?api_key=<key>` is accepted too.
"""
from __future__ import annotations

import hashlib
import ipaddress
import re
import secrets
import threading
import time
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from shared.documents import AnalysisRequest
from shared.messages import utc_now
from shared.settings import Settings
from shared.store import ObjectNotFound, ObjectStore, StoreUnavailable, keys

LOCAL = "local"
_ANALYSIS_PATH = re.compile(r"^/v1/analyses/([a-f0-9]{32})(/|$)")
_SESSION_PATH = re.compile(r"^/v1/sessions/([a-f0-9]{32})(/|$)")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def is_loopback(host: str | None) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Caller:
    key_id: str


class KeyRing:
    """API keys kept hashed in the object store, with a short lookup cache."""

    def __init__(self, store: ObjectStore, cache_s: float = 30.0):
        self.store = store
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, dict | None]] = {}

    def create(self, name: str) -> tuple[str, str]:
        secret = "coach_" + secrets.token_urlsafe(32)
        digest = _digest(secret)
        key_id = digest[:12]
        self.store.put_json(keys.api_key(digest), {"key_id": key_id, "name": name[:100], "created_at": utc_now(),
                                                         "revoked": False})
        return key_id, secret

    def lookup(self, secret: str) -> dict | None:
        digest = _digest(secret)
        hit = self._cache.get(digest)
        if hit and time.monotonic() - hit[0] < self.cache_s:
            return hit[1]
        try:
            record = self.store.get_json(keys.api_key(digest))
        except ObjectNotFound:
            record = None
        if record and record.get("revoked"):
            record = None
        self._cache[digest] = (time.monotonic(), record)
        return record

    def list(self) -> list[dict]:
        return [self.store.get_json(k) for k in self.store.list(keys.api_keys_prefix())]

    def revoke(self, key_id: str) -> bool:
        for k in self.store.list(keys.api_keys_prefix()):
            rec = self.store.get_json(k)
            if rec["key_id"] == key_id:
                self.store.put_json(k, {**rec, "revoked": True, "revoked_at": utc_now()})
                self._cache.clear()
                return True
        return False


class RateLimiter:
    """Token bucket per key: `per_minute` uploads, bursts up to the same number."""

    def __init__(self, per_minute: int):
        self.rate = per_minute / 60.0
        self.capacity = float(max(1, per_minute))
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key_id: str) -> float:
        """0 if allowed, else seconds until the next upload is."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key_id, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= 1:
                self._buckets[key_id] = (tokens - 1, now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            return (1 - tokens) / self.rate


def keyless_allowed(settings: Settings) -> bool:
    return settings.allow_keyless and is_loopback(settings.gateway_host)


def owner_of(store: ObjectStore, kind: str, ident: str) -> str | None:
    """The key id that created an analysis or session; None if it does not exist."""
    try:
        if kind == "analysis":
            return AnalysisRequest.read(store, keys.request(ident)).owner or LOCAL
        return store.get_json(keys.session(ident)).get("owner", LOCAL)
    except ObjectNotFound:
        return None


def install_auth(app: FastAPI, store: ObjectStore, settings: Settings) -> KeyRing:
    ring = KeyRing(store)
    limiter = RateLimiter(settings.uploads_per_minute)
    keyless = keyless_allowed(settings)

    def deny(code: int, detail: str, **headers) -> JSONResponse:
        return JSONResponse({"detail": detail}, status_code=code, headers=headers)

    @app.middleware("http")
    async def authenticate(request: Request, call_next):
        path = request.url.path
        if not path.startswith("/v1/"):
            return await call_next(request)   # page, static files, /healthz, /metrics, /docs
        auth = request.headers.get("authorization", "")
        secret = (auth[7:].strip() if auth.lower().startswith("bearer ") else None) \
            or request.headers.get("x-api-key") or request.query_params.get("api_key")
        try:
            if secret:
                record = ring.lookup(secret)
                if record is None:
                    return deny(401, "unknown or revoked API key", **{"WWW-Authenticate": "Bearer"})
                caller = Caller(record["key_id"])
            elif keyless and is_loopback(request.client.host if request.client else None):
                caller = Caller(LOCAL)
            else:
                return deny(401, "an API key is required: send 'Authorization: Bearer <key>' (create one with `coach keys create`)",
                            **{"WWW-Authenticate": "Bearer"})
            request.state.caller = caller
            if request.method == "POST" and path in ("/v1/analyses", "/v1/sessions"):
                wait = limiter.take(caller.key_id)
                if wait > 0:
                    return deny(429, f"too many uploads; try again in {wait:.0f} s", **{"Retry-After": str(int(wait) + 1)})
            # Isolation: another key's analysis or session is indistinguishable from a missing one.
            for kind, pattern in (("analysis", _ANALYSIS_PATH), ("session", _SESSION_PATH)):
                m = pattern.match(path)
                if m and owner_of(store, kind, m.group(1)) not in (caller.key_id, None):
                    return deny(404, f"no {kind} {m.group(1)}")
        except StoreUnavailable:
            return deny(503, "storage is temporarily unavailable; try again shortly")
        return await call_next(request)

    return ring


def caller_of(request: Request) -> str:
    caller = getattr(request.state, "caller", None)
    return caller.key_id if caller else LOCAL


def cmd_keys(args) -> int:
    import json
    import sys

    ring = KeyRing(ObjectStore(Settings.from_env()))
    if args.action == "create":
        key_id, secret = ring.create(args.name or "unnamed")
        print(f"key id {key_id}; the key (shown once, store it now):\n{secret}")
        return 0
    if args.action == "list":
        rows = ring.list()
        print(json.dumps(rows, indent=1) if args.json else
              "\n".join(f"{r['key_id']}  {r['name']:<24} {r['created_at']}  {'revoked' if r.get('revoked') else 'active'}"
                        for r in rows) or "no keys")
        return 0
    if not args.key_id:
        print("coach keys revoke: name the key id (from `coach keys list`)", file=sys.stderr)
        return 2
    if ring.revoke(args.key_id):
        print(f"revoked {args.key_id} (gateways stop accepting it within 30 s)")
        return 0
    print(f"no key {args.key_id}", file=sys.stderr)
    return 1


def register(sub) -> None:
    p = sub.add_parser("keys", help="create, list and revoke gateway API keys (stored hashed)")
    p.add_argument("action", choices=["create", "list", "revoke"])
    p.add_argument("key_id", nargs="?")
    p.add_argument("--name", help="who or what the key is for (create)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_keys)
