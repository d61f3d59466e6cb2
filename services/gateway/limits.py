"""Refuse an upload that is too large before reading it, not after.

Starlette parses a multipart body completely (spooling files to disk) before the route runs,
so the route's own streamed size check (`save_upload`) only starts once everything arrived. This
ASGI middleware answers 413 at once when Content-Length says the body is too large, and stops
reading a body without Content-Length (chunked) as soon as it passes the limit: at most the limit
(plus one chunk) is ever read or stored.
"""
from __future__ import annotations

import json
from typing import Callable


class _TooLarge(Exception):
    pass


class BodyLimit:
    def __init__(self, app, limits: Callable[[str], int | None], message: Callable[[str], str]):
        """limits(path) -> the most bytes a POST to it may send (None: no limit here)."""
        self.app, self.limits, self.message = app, limits, message

    async def _refuse(self, send, path: str) -> None:
        body = json.dumps({"detail": self.message(path)}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        limit = self.limits(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if limit is None:
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return await self._refuse(send, scope["path"])   # the body is never read
        seen = 0
        over = False
        started = False

        async def counting_receive():
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    over = True
                    raise _TooLarge()
            return message

        async def guarded_send(message):
            nonlocal started
            if over:
                return   # the app's answer to the aborted body (a 400 from the form parser) is replaced
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _TooLarge:
            pass
        if over and not started:
            await self._refuse(send, scope["path"])
