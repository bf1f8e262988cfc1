"""An ASGI layer in front of every route: the Host check, HTTP basic auth (--api-auth), the
request size limit, and doubled slashes in paths (clients that join a base URL ending in "/" with
"/sdapi/...").

A server on loopback answers only requests addressed to a loopback name: a web page whose domain
was re-pointed at 127.0.0.1 (DNS rebinding) sends its own Host and is refused.

The body is read here before any route sees it; past the limit it is dropped as it arrives and
answered 413, so an oversized base64 image is never held in memory.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from secrets import compare_digest


def parse_credentials(text: str) -> dict[str, str]:
    """--api-auth as A1111 reads it: 'user:pass' or 'user1:pass1,user2:pass2'. Raises ValueError."""
    credentials = {}
    for pair in text.split(","):
        user, sep, password = pair.strip().partition(":")
        if not sep or not user or not password:
            raise ValueError(f"{pair.strip()!r} is not user:password")
        credentials[user] = password
    return credentials


def basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return (user, password) if sep else None


LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


def host_name(header: str) -> str:
    """The name part of a Host header: 'localhost:7860' -> 'localhost', '[::1]:7860' -> '::1'."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rpartition(":")[0] if header.count(":") == 1 else header


class Guard:
    def __init__(self, app, credentials: dict[str, str], max_body_bytes: int, allowed_hosts: frozenset[str] | None = None):
        self.app = app
        self.credentials = credentials
        self.max_body_bytes = max_body_bytes
        self.allowed_hosts = allowed_hosts  # None: any Host (a server meant for the network)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if "//" in scope["path"]:  # a base URL given with a trailing slash: http://host:7860//sdapi/v1/...
            scope = {**scope, "path": re.sub("/{2,}", "/", scope["path"])}
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.allowed_hosts is not None and host_name(headers.get("host", "")) not in self.allowed_hosts:
            name = headers.get("host", "")
            return await _answer(send, 403, f"Host {name!r} is not this server's; it answers on 127.0.0.1 or localhost")
        if self.credentials and not self._authorised(headers.get("authorization", "")):
            return await _answer(send, 401, "Incorrect username or password", {"WWW-Authenticate": 'Basic realm="ldm serve"'})
        declared = headers.get("content-length", "")
        too_large = declared.isdigit() and int(declared) > self.max_body_bytes
        body, more = bytearray(), True
        while more:  # an oversized body is read on and dropped, so the client is there to read the 413
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left before sending its request: nothing to answer
            if not too_large:
                body += message.get("body", b"")
                too_large = len(body) > self.max_body_bytes
                if too_large:
                    body = bytearray()
            more = message.get("more_body", False)
        if too_large:
            return await _answer(send, 413, self._too_large())
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as the server would say it

        return await self.app(scope, replay, send)

    def _authorised(self, header: str) -> bool:
        given = basic_credentials(header)
        if given is None or given[0] not in self.credentials:
            return False
        return compare_digest(given[1].encode(), self.credentials[given[0]].encode())

    def _too_large(self) -> str:
        return (f"the request is larger than {self.max_body_bytes // 2**20} MB; "
                "send a smaller image or restart the server with a larger --max-body-mb")


async def _answer(send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    payload = json.dumps({"error": "HTTPException", "detail": detail, "body": "", "errors": f"{status}: {detail}"}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})
