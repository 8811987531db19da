"""Request size limits, enforced before a handler reads anything.

A rating's body is under 100 bytes; without a limit a client could make the
server buffer and parse megabytes per request. Bodies over `MAX_BODY_BYTES`
are refused with 413 and the usual JSON reason: by their Content-Length when
they declare one, else (chunked) as soon as the bytes received pass it.
"""

from __future__ import annotations

from typing import Any

import orjson

MAX_BODY_BYTES = 16 * 1024
# An URL this long is not one the API's routes need.
MAX_QUERY_BYTES = 4 * 1024

Scope = dict[str, Any]
Message = dict[str, Any]


class RequestLimits:
    """ASGI middleware: 413 for a body over `max_body`, 400 for a query over `max_query`."""

    def __init__(self, app: Any, max_body: int = MAX_BODY_BYTES, max_query: int = MAX_QUERY_BYTES):
        self.app = app
        self.max_body = max_body
        self.max_query = max_query

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if len(scope.get("query_string", b"")) > self.max_query:
            # 400, which every route declares, rather than 414: clients and schema
            # checkers read 400 as "the request is wrong", and it is.
            detail = f"the query string is over {self.max_query:,} bytes"
            await _refuse(send, 400, "query_too_long", detail)
            return
        headers = dict(scope.get("headers", ()))
        declared = headers.get(b"content-length")
        bodiless = scope["method"] in ("GET", "HEAD") and b"transfer-encoding" not in headers
        if bodiless and declared in (None, b"0"):  # no body: nothing to count
            await self.app(scope, receive, send)
            return
        too_large = f"the body is over {self.max_body:,} bytes"
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            await _refuse(send, 413, "content_too_large", too_large)
            return
        received = 0
        started = refused = False

        async def counted_receive() -> Message:
            # Past the limit, the 413 goes out now and the app is told the client left:
            # an exception here would be taken for a malformed body (FastAPI's 400).
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request" and not refused:
                received += len(message.get("body", b""))
                if received > self.max_body:
                    refused = True
                    if not started:
                        await _refuse(send, 413, "content_too_large", too_large)
                    return {"type": "http.disconnect"}
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if refused:  # the answer was the 413
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except Exception:
            if not refused:
                raise


async def _refuse(send: Any, status: int, error: str, detail: str) -> None:
    await send_json(send, status, orjson.dumps({"error": error, "detail": detail}))


async def send_json(send: Any, status: int, body: bytes) -> None:
    """A whole JSON answer through ASGI's `send`, from middleware that answers itself."""
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
