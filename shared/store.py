"""Object storage on the minio SDK (MinIO in production, SeaweedFS in the embedded stack).

Keys are deterministic functions of the analysis id and the step (see `keys`), so a retried
or duplicated step overwrites its own output instead of adding a second copy.
"""
from __future__ import annotations

import io
import json
import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import urllib3
from minio import Minio
from minio.error import InvalidResponseError, S3Error, ServerError

from shared.settings import Settings

T = TypeVar("T")
_ID = re.compile(r"^[a-f0-9]{32}$")
_TRANSIENT_CODES = {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "XMinioServerNotInitialized"}


class ObjectNotFound(KeyError):
    pass


class StoreUnavailable(ConnectionError):
    """The object store did not answer after retries (transient: the message is retried)."""


class StoreError(RuntimeError):
    """The object store answered a definite no other than a missing object (access denied, no such
    bucket...). `code` is the S3 error code. The storage SDK's own exceptions never leave this module."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code


class keys:
    """Every object key the system writes, and the only place one is built. Only validated names
    reach these functions (an id, sport, version or file name that is not one raises ValueError).

        analyses/<id>/...                    one analysis (source, frames, documents, status, result)
        sessions/<sid>/session.json          a multi-camera session, and its alignment.json
        models/<sport>/<version>/<file>      the judge's model registry; models/<sport>/current.json
        exemplars/manifest.json, <path>      the suggest service's exemplar library
        auth/keys/<sha256>.json              API keys (hashed)
    """

    SPORT_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
    VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
    _FILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    _DIGEST_RE = re.compile(r"^[a-f0-9]{64}$")

    @staticmethod
    def _check(analysis_id: str) -> str:
        if not _ID.match(analysis_id or ""):
            raise ValueError(f"not an analysis id: {analysis_id!r}")
        return f"analyses/{analysis_id}"

    @staticmethod
    def analyses_prefix() -> str:
        return "analyses/"

    @staticmethod
    def analysis_id_of(prefix: str) -> str:
        """The id in a listed analyses/<id>/ prefix (not checked: a foreign prefix gives a foreign name)."""
        return prefix.rstrip("/").split("/")[-1]

    @classmethod
    def source(cls, aid: str, ext: str) -> str:
        if not re.fullmatch(r"[a-z0-9]{1,5}", ext):
            raise ValueError(f"bad extension {ext!r}")
        return f"{cls._check(aid)}/source.{ext}"

    @classmethod
    def frame(cls, aid: str, index: int) -> str:
        return f"{cls._check(aid)}/frames/{index:06d}.jpg"

    @classmethod
    def tracking(cls, aid: str) -> str:
        return f"{cls._check(aid)}/tracking.json"

    @classmethod
    def clip_poses(cls, aid: str, clip: int) -> str:
        return f"{cls._check(aid)}/poses/clip-{clip:05d}.json"

    @classmethod
    def poses_prefix(cls, aid: str) -> str:
        return f"{cls._check(aid)}/poses/"

    @classmethod
    def clip_judged(cls, aid: str, clip: int) -> str:
        return f"{cls._check(aid)}/judged/clip-{clip:05d}.json"

    @classmethod
    def judged_prefix(cls, aid: str) -> str:
        return f"{cls._check(aid)}/judged/"

    @classmethod
    def verdict(cls, aid: str) -> str:
        return f"{cls._check(aid)}/verdict.json"

    @classmethod
    def partial_verdict(cls, aid: str) -> str:
        """The judge's latest provisional verdict while the analysis runs (PartialVerdictDocument)."""
        return f"{cls._check(aid)}/partial.json"

    @classmethod
    def result(cls, aid: str) -> str:
        return f"{cls._check(aid)}/result.json"

    @classmethod
    def result_summary(cls, aid: str) -> str:
        """result.json less its per-frame arrays (shared/result.py ResultSummary)."""
        return f"{cls._check(aid)}/result-summary.json"

    @classmethod
    def result_frames(cls, aid: str, chunk: int) -> str:
        """Chunk `chunk` of the result's per-frame data as columns (shared/result.py ResultFrames)."""
        if chunk < 0:
            raise ValueError(f"bad chunk {chunk!r}")
        return f"{cls._check(aid)}/result-frames/{chunk:05d}.json"

    @classmethod
    def result_frames_prefix(cls, aid: str) -> str:
        return f"{cls._check(aid)}/result-frames/"

    @classmethod
    def annotated_video(cls, aid: str) -> str:
        return f"{cls._check(aid)}/annotated.mp4"

    @classmethod
    def render_segment(cls, aid: str, first_frame: int, content_hash: str) -> str:
        """One pre-rendered H.264 segment of the annotated video (services/suggest/annotate.py): frames
        from `first_frame`, named by the hash of exactly what is drawn on them, so that a key, once
        stored, never needs rewriting and a changed pose, colour or revision gets a new one."""
        if first_frame < 0 or not re.fullmatch(r"[0-9a-f]{16,64}", content_hash):
            raise ValueError(f"bad render segment {first_frame!r} {content_hash!r}")
        return f"{cls._check(aid)}/render/{first_frame:06d}-{content_hash}.mp4"

    @classmethod
    def render_prefix(cls, aid: str) -> str:
        return f"{cls._check(aid)}/render/"

    @classmethod
    def status(cls, aid: str, stage: str) -> str:
        if not re.fullmatch(r"[a-z]+", stage):
            raise ValueError(f"bad stage {stage!r}")
        return f"{cls._check(aid)}/status/{stage}.json"

    @classmethod
    def status_prefix(cls, aid: str) -> str:
        return f"{cls._check(aid)}/status/"

    @classmethod
    def request(cls, aid: str) -> str:
        return f"{cls._check(aid)}/request.json"

    @classmethod
    def selection(cls, aid: str) -> str:
        """The user's latest athlete switch (gateway): revision, track id, the AthleteSelected sent."""
        return f"{cls._check(aid)}/selection.json"

    @classmethod
    def watchdog(cls, aid: str) -> str:
        return f"{cls._check(aid)}/watchdog.json"

    @classmethod
    def biomech(cls, aid: str, name: str) -> str:
        """A biomechanics artifact (plots, CSV) beside the result."""
        if not cls._FILE_RE.match(name or ""):
            raise ValueError(f"bad file name {name!r}")
        return f"{cls._check(aid)}/biomech/{name}"

    @classmethod
    def biomech_ahead(cls, aid: str, fingerprint: str, name: str) -> str:
        """Biomechanics computed when the last clip was posed, before the final verdict (suggest):
        named by the fingerprint of the poses they were computed from; the final verdict copies
        them beside the result when its poses have the same fingerprint."""
        if not re.fullmatch(r"[0-9a-f]{16,64}", fingerprint) or not cls._FILE_RE.match(name or ""):
            raise ValueError(f"bad biomechanics {fingerprint!r} {name!r}")
        return f"{cls._check(aid)}/biomech-ahead/{fingerprint}/{name}"

    @classmethod
    def biomech_ahead_prefix(cls, aid: str) -> str:
        return f"{cls._check(aid)}/biomech-ahead/"

    # -- multi-camera sessions: sessions/<sid>/... ------------------------------------------
    @staticmethod
    def _session(sid: str) -> str:
        if not _ID.match(sid or ""):
            raise ValueError(f"not a session id: {sid!r}")
        return f"sessions/{sid}"

    @classmethod
    def session(cls, sid: str) -> str:
        return f"{cls._session(sid)}/session.json"

    @classmethod
    def session_alignment(cls, sid: str) -> str:
        return f"{cls._session(sid)}/alignment.json"

    @classmethod
    def session_alignment_request(cls, sid: str) -> str:
        """The gateway's record of its alignment requests (when, how often re-driven)."""
        return f"{cls._session(sid)}/alignment-request.json"

    @classmethod
    def session_alignment_status(cls, sid: str) -> str:
        """The align worker's progress on a session."""
        return f"{cls._session(sid)}/status/align.json"

    # -- the model registry ----------------------------------------------------------------
    @staticmethod
    def models_prefix() -> str:
        return "models/"

    @classmethod
    def _sport(cls, sport: str) -> str:
        if not cls.SPORT_RE.match(sport or ""):
            raise ValueError(f"not a sport name: {sport!r}")
        return f"models/{sport}"

    @classmethod
    def model_versions_prefix(cls, sport: str) -> str:
        return f"{cls._sport(sport)}/"

    @classmethod
    def model_file(cls, sport: str, version: str, name: str) -> str:
        """models/<sport>/<version>/<name> (pack.json, model.joblib, report.json, a phase model...)."""
        if not cls.VERSION_RE.match(version or ""):
            raise ValueError(f"not a model version: {version!r}")
        if not cls._FILE_RE.match(name or ""):
            raise ValueError(f"bad file name {name!r}")
        return f"{cls._sport(sport)}/{version}/{name}"

    @classmethod
    def model_current(cls, sport: str) -> str:
        return f"{cls._sport(sport)}/current.json"

    # -- the exemplar library --------------------------------------------------------------
    @staticmethod
    def exemplars_manifest() -> str:
        return "exemplars/manifest.json"

    @classmethod
    def exemplar(cls, path: str) -> str:
        """exemplars/<path>: a clip or its data, path relative to the library (as in its manifest)."""
        parts = (path or "").split("/")
        if any(p in ("", ".", "..") for p in parts) or any(ord(c) < 32 or c == "\\" for c in path):
            raise ValueError(f"bad exemplar path {path!r}")
        return f"exemplars/{path}"

    # -- API keys --------------------------------------------------------------------------
    @staticmethod
    def api_keys_prefix() -> str:
        return "auth/keys/"

    @classmethod
    def api_key(cls, digest: str) -> str:
        if not cls._DIGEST_RE.match(digest or ""):
            raise ValueError("not a key digest")
        return f"auth/keys/{digest}.json"


def _public_client(settings: Settings) -> Minio | None:
    """A client for signing URLs for s3_public_url, or None when it is not set."""
    if not settings.s3_public_url:
        return None
    url = urllib3.util.parse_url(settings.s3_public_url)
    if url.scheme not in ("http", "https") or not url.host or (url.path or "/") != "/":
        raise ValueError(f"COACH_S3_PUBLIC_URL must be http(s)://host[:port], got {settings.s3_public_url!r}")
    return Minio(url.netloc, access_key=settings.s3_access_key, secret_key=settings.s3_secret_key,
                 secure=url.scheme == "https", region=settings.s3_region)


def encode_json(obj: Any) -> bytes:
    """How a JSON document is stored: a model by its aliases (`schema`), anything else compactly."""
    if hasattr(obj, "model_dump_json"):
        return obj.model_dump_json(by_alias=True).encode()
    return json.dumps(obj, separators=(",", ":")).encode()


class ObjectStore:
    """Bytes, JSON and files in and out of one bucket, with retries on transient failures."""

    def __init__(self, settings: Settings, retries: int = 5, backoff_s: float = 0.5):
        # Short timeouts and no urllib3-level retries: we retry ourselves with backoff, so an
        # unavailable store is reported instead of hanging a worker.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=3.0, read=30.0), retries=False, maxsize=16,
        )
        self.client = Minio(
            settings.s3_endpoint, access_key=settings.s3_access_key, secret_key=settings.s3_secret_key,
            secure=settings.s3_secure, region=settings.s3_region, http_client=http,
        )
        self.bucket = settings.bucket
        self.presign_client = _public_client(settings) or self.client
        self.presign_expiry_s = settings.presign_expiry_s
        self.retries = retries
        self.backoff_s = backoff_s

    def _retry(self, fn: Callable[[], T]) -> T:
        delay = self.backoff_s
        for attempt in range(self.retries):
            try:
                return fn()
            except S3Error as exc:
                if exc.code not in _TRANSIENT_CODES:
                    # the store answered a definite no (missing key, denied...): not transient
                    raise StoreError(exc.code, exc.message) from exc
                err: Exception = exc
            except (ServerError, InvalidResponseError, urllib3.exceptions.HTTPError, OSError) as exc:
                err = exc  # unreachable, restarting, or answering 5xx: worth retrying
            if attempt == self.retries - 1:
                raise StoreUnavailable(f"object store {self.client._base_url.host} unavailable: {err}") from err
            time.sleep(delay)
            delay = min(delay * 2, 8.0)
        raise AssertionError("unreachable")

    def ensure_bucket(self) -> None:
        if not self._retry(lambda: self.client.bucket_exists(self.bucket)):
            try:
                self._retry(lambda: self.client.make_bucket(self.bucket))
            except StoreError as exc:  # a concurrent creator won
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self._retry(lambda: self.client.put_object(
            self.bucket, key, io.BytesIO(data), len(data), content_type=content_type))

    def get_bytes(self, key: str) -> bytes:
        def get():
            resp = None
            try:
                resp = self.client.get_object(self.bucket, key)
                return resp.read()
            except S3Error as exc:
                if exc.code in ("NoSuchKey", "NoSuchObject"):
                    raise ObjectNotFound(key) from None
                raise   # _retry tells transient from definite
            finally:
                if resp is not None:
                    resp.close()
                    resp.release_conn()
        return self._retry(get)

    def put_json(self, key: str, obj: Any) -> None:
        self.put_bytes(key, encode_json(obj), "application/json")

    def get_json(self, key: str) -> Any:
        return json.loads(self.get_bytes(key))

    def put_file(self, key: str, path: Path, content_type: str = "application/octet-stream") -> None:
        self._retry(lambda: self.client.fput_object(self.bucket, key, str(path), content_type=content_type))

    def get_file(self, key: str, path: Path) -> Path:
        try:
            self._retry(lambda: self.client.fget_object(self.bucket, key, str(path)))
        except StoreError as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject"):
                raise ObjectNotFound(key) from None
            raise
        return path

    def exists(self, key: str) -> bool:
        try:
            self._retry(lambda: self.client.stat_object(self.bucket, key))
            return True
        except StoreError as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
                return False
            raise

    def _listing(self, prefix: str, recursive: bool) -> list:
        try:
            return self._retry(lambda: list(self.client.list_objects(self.bucket, prefix, recursive=recursive)))
        except StoreError as exc:
            if exc.code == "NoSuchBucket":   # nothing was ever stored: nothing to list
                return []
            raise

    def list(self, prefix: str) -> list[str]:
        return [o.object_name for o in self._listing(prefix, recursive=True)]

    def iter_prefixes(self, prefix: str) -> Iterator[str]:
        """Immediate 'sub-folders' under prefix (non-recursive listing)."""
        for o in self._listing(prefix, recursive=False):
            if o.is_dir:
                yield o.object_name

    def analysis_ids(self) -> list[str]:
        """Ids of the stored analyses, oldest first (ids are time-ordered)."""
        return [keys.analysis_id_of(p) for p in self.iter_prefixes(keys.analyses_prefix())]

    def delete(self, key: str) -> None:
        """Remove one object; removing a missing key is not an error (S3 semantics)."""
        self._retry(lambda: self.client.remove_object(self.bucket, key))

    def delete_prefix(self, prefix: str) -> int:
        names = self.list(prefix)
        for n in names:
            self.delete(n)
        return len(names)

    def presigned_url(self, key: str, expiry_s: int | None = None) -> str:
        """A GET URL for the key that expires, signed for the host clients use (s3_public_url)."""
        # Signing is local (region given): no request reaches the public host here.
        return self.presign_client.presigned_get_object(
            self.bucket, key, expires=timedelta(seconds=expiry_s or self.presign_expiry_s))

    def ping(self) -> bool:
        try:
            self.client.bucket_exists(self.bucket)
            return True
        except Exception:
            return False
