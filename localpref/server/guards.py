"""ASGI middleware that refuses a request before it reaches a route.

- ``HostCheck``: bound to a loopback address, the server answers only requests whose ``Host``
  header names a loopback host, so a web page on another site cannot reach it through DNS
  rebinding (its requests carry the attacker's host name).
- ``ApiKeyCheck``: with a key set, every route but ``/health`` needs ``Authorization: Bearer
  KEY`` (the scheme in any case, as HTTP allows; the key compared in constant time).
- ``BodyLimit``: a body over ``MAX_BODY_BYTES`` (1 MiB) is a 413, declared or streamed; a
  compressed one (a ``Content-Encoding`` other than ``identity``) a 415, as it is not read.
- ``CorsWithErrors``: Starlette's CORS for the ``--cors-origin`` origins, with a refused
  preflight in the OpenAI error shape instead of Starlette's plain text.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response

from localpref.errors import SettingsError
from localpref.server.errors import ApiError, error_body

MAX_BODY_BYTES = 1 << 20

Scope = dict[str, Any]


def is_loopback_host(host: str) -> bool:
    """Whether a host name or address is this machine's loopback (``localhost`` included)."""
    name = host.strip().lower().rstrip(".")
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*$")
_BRACKETED = re.compile(r"^\[[^\[\]]+\](:\d*)?$")


def _is_ipv6(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).version == 6
    except ValueError:
        return False


def checked_origin(text: str) -> str:
    """A ``--cors-origin`` as browsers send it in ``Origin`` (scheme and host in lower case,
    the port as a number and only where it is not the scheme's default, no trailing slash:
    ``http://a.example/`` copied from the address bar never matched), or ``*``, or ``null``
    (what a ``file://`` page or a sandboxed frame sends); one sentence for what is not an
    origin (a path, a query, no scheme or host)."""
    value = text.strip()
    if value in ("*", "null"):
        return value
    try:
        parts = urlsplit(value.removesuffix("/"))
        port = parts.port  # (a port that is not a number raises)
    except ValueError:  # (also a bracket left open: "http://[::1")
        parts, port = None, None
    scheme = parts.scheme.lower() if parts else ""
    if (parts is None or not _SCHEME.match(scheme) or not parts.hostname or parts.path
            or parts.query or parts.fragment or parts.username is not None
            or value.endswith("//")):
        raise SettingsError(f"--cors-origin takes an origin such as http://localhost:3000 (a "
                            "scheme, a host and a port where it is not the default, nothing "
                            "after; null for file:// pages), or *; not "
                            f"{text!r}.")
    host = parts.hostname.lower()
    if "[" in parts.netloc or "]" in parts.netloc:  # only an IPv6 address, whole, in brackets
        if not _BRACKETED.match(parts.netloc) or not _is_ipv6(host):
            raise SettingsError(f"--cors-origin takes an origin such as http://[::1]:3000 for an "
                                f"IPv6 address; not {text!r}.")
        host = f"[{host}]"
    if port is not None and (scheme, port) not in (("http", 80), ("https", 443)):
        host = f"{host}:{port}"
    return f"{scheme}://{host}"


def host_name(header: str) -> str:
    """The host of a ``Host`` header, without its port (``[::1]:8765`` -> ``::1``)."""
    header = header.strip()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def _refuse(send: Any, error: ApiError) -> None:
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class TrailingSlash:
    """Serve ``/v1/chat/completions/`` as ``/v1/chat/completions``: the trailing slashes of
    one of ``paths`` (the routes without a parameter), or of a path under one of
    ``prefixes`` (``/v1/models/ID/``), are taken off before anything else reads the path
    (the key check and the routes included). Starlette's own answer was a bodyless 307,
    which a client that does not follow a POST's redirect (httpx, urllib) read as an empty,
    non-JSON answer. Only slashes as sent are (an id's encoded ``%2F`` is the id's), and
    another path is left as it came (a 404 names it so)."""

    def __init__(self, app: Any, paths: frozenset[str], prefixes: tuple[str, ...]) -> None:
        self.app = app
        self.paths = paths
        self.prefixes = prefixes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        raw = scope.get("raw_path") or path.encode()
        # the slashes as sent (an id's trailing %2F is decoded into the path, not sent as one)
        slashes = min(len(path) - len(path.rstrip("/")), len(raw) - len(raw.rstrip(b"/")))
        stripped = path[:-slashes] if slashes else path
        routed = stripped in self.paths or (
            stripped.startswith(self.prefixes) and stripped not in self.prefixes)
        if scope["type"] == "http" and slashes and routed:
            scope = {**scope, "path": stripped, "raw_path": raw[:-slashes]}
        await self.app(scope, receive, send)


class HostCheck:
    """Refuse (400) requests whose Host header is not a loopback name."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            host = _header(scope, b"host")
            if host is None or not is_loopback_host(host_name(host)):
                told = "The request has no Host header" if host is None else \
                    f"The Host header {host!r} is not a loopback name"
                await _refuse(send, ApiError(
                    400, f"{told}; this server only answers requests addressed to "
                    "localhost.", code="invalid_host"))
                return
        await self.app(scope, receive, send)


class ApiKeyCheck:
    """Refuse (401) requests without the right ``Authorization: Bearer KEY`` (``bearer``,
    ``BEARER``: the scheme is case-insensitive)."""

    def __init__(self, app: Any, key: str, open_paths: tuple[str, ...] = ("/health",)) -> None:
        self.app = app
        self.expected = key.encode()
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if (scope["type"] == "http" and scope.get("method") != "OPTIONS"
                and scope.get("path") not in self.open_paths):
            header = (_header(scope, b"authorization") or "").strip()
            scheme, _, credentials = header.partition(" ")
            given = header.encode("latin-1")
            key = credentials.strip().encode("latin-1") if scheme.lower() == "bearer" else b""
            if not hmac.compare_digest(key, self.expected):
                if not given:
                    message = "This server needs an API key: send 'Authorization: Bearer KEY'."
                elif scheme.lower() != "bearer":
                    # (its text is not echoed: it may be the key itself, sent bare)
                    message = ("The Authorization header is not of the Bearer scheme; send "
                               "'Authorization: Bearer KEY'.")
                else:
                    message = "The API key is wrong."
                await _refuse(send, ApiError(401, message, code="invalid_api_key",
                                             headers={"WWW-Authenticate": "Bearer"}))
                return
        await self.app(scope, receive, send)


def body_too_large(limit: int = MAX_BODY_BYTES) -> ApiError:
    """The 413 of a body over ``limit`` bytes (a batch line's body gets the same)."""
    return ApiError(413, f"The request body is over {limit // 1024} KiB.",
                    code="request_too_large")


class BodyLimit:
    """Refuse (413) bodies over ``limit`` bytes, whether declared or streamed."""

    def __init__(self, app: Any, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    def _too_large(self) -> ApiError:
        return body_too_large(self.limit)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        encoding = (_header(scope, b"content-encoding") or "").strip()
        codings = [c.strip().lower() for c in encoding.split(",")]  # (a list, as HTTP allows)
        if any(coding not in ("", "identity") for coding in codings):
            await _refuse(send, ApiError(
                415, f"The request body's Content-Encoding {encoding!r} is not supported; send "
                "it uncompressed.", code="unsupported_media_type", param="Content-Encoding"))
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self.limit:
            await _refuse(send, self._too_large())
            return
        # Read the body (at most the limit) before the app sees it, then replay it.
        messages = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.limit:
                await _refuse(send, self._too_large())
                return
            if not message.get("more_body", False):
                break
        replay = iter(messages)

        async def replayed() -> Any:
            for message in replay:
                return message
            return await receive()

        await self.app(scope, replayed, send)


class CorsWithErrors(CORSMiddleware):
    """Starlette's CORS middleware; a preflight it refuses (an origin, method or header not
    allowed) is answered as every other error is: JSON in the OpenAI shape, status 400."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        # Starlette's text, e.g. "Disallowed CORS origin"
        refused = bytes(response.body).decode("utf-8", "replace").strip()
        kept = {name: value for name, value in response.headers.items()
                if name.lower() not in ("content-type", "content-length")}
        return JSONResponse(error_body(400, f"{refused}: this server answers pages from the "
                                       "origins given with --cors-origin only.",
                                       code="cors_refused"), status_code=400, headers=kept)
