"""API keys of the classemo Serve application: `Authorization: Bearer <key>`, checked before any route runs.

Keys come from the environment (`CLASSEMO_API_KEYS`, comma-separated) and/or a file (`api_keys_file`: one key per
line, `#` starts a comment line). Only their SHA-256 digests are kept, in memory. A presented key is hashed and
compared with every stored digest by `hmac.compare_digest`, without stopping at a match, so the time a check takes
says nothing about which key matched or how much of one. The check is an ASGI middleware: it runs for every path
(a route added later cannot forget it) and before the body is read (an unauthenticated client cannot make the server
buffer a 512 MiB upload). With no keys at all the API is open, which the ingress logs as a warning at start.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

KEYS_ENV = "CLASSEMO_API_KEYS"
PUBLIC_PATHS = frozenset({"/healthz", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
BEARER = HTTPBearer(scheme_name="APIKey", auto_error=False,
                    description="An API key of this server, sent as `Authorization: Bearer <key>`; required when the "
                                f"server has keys ({KEYS_ENV} or api_keys_file)")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def load_key_digests(keys_file: str | None = None, environ: Mapping[str, str] = os.environ) -> tuple[bytes, ...]:
    """SHA-256 digests of the configured keys (the keys themselves are not kept).

    Args:
        keys_file: A file of keys, one per line; blank lines and lines starting with `#` are skipped.
        environ: Where `CLASSEMO_API_KEYS` is read (comma-separated keys).

    Returns:
        One digest per distinct key; empty when no key is configured (an open API).

    Raises:
        ValueError: if `keys_file` is given but holds no key (a typo must not leave the API open).
        FileNotFoundError: if `keys_file` does not exist.
    """
    keys = [k.strip() for k in environ.get(KEYS_ENV, "").split(",")]
    if keys_file:
        path = Path(keys_file).expanduser()
        lines = [line.strip() for line in path.read_text().splitlines()]
        in_file = [line for line in lines if line and not line.startswith("#")]
        if not in_file:
            raise ValueError(f"api_keys_file {path} holds no key (one per line, '#' for comments)")
        keys += in_file
    return tuple(dict.fromkeys(_digest(k) for k in keys if k))


def key_matches(presented: str, digests: tuple[bytes, ...]) -> bool:
    """Whether `presented` is one of the keys, compared in constant time against every stored digest."""
    digest = _digest(presented)
    match = False
    for stored in digests:
        match |= hmac.compare_digest(stored, digest)
    return match


def auth_problem(header: str | None, digests: tuple[bytes, ...]) -> tuple[str, str] | None:
    """Why a request's Authorization header is refused, or None when it is accepted.

    Returns:
        `(detail, WWW-Authenticate value)` for a 401; the detail never repeats what the client sent.
    """
    if not digests:
        return None
    if not header:
        return ("missing API key: send the header 'Authorization: Bearer <key>'", 'Bearer realm="classemo"')
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return ("malformed Authorization header: expected 'Bearer <key>'",
                'Bearer realm="classemo", error="invalid_request"')
    if not key_matches(key.strip(), digests):
        return "invalid API key", 'Bearer realm="classemo", error="invalid_token"'
    return None


class ApiKeyAuth:
    """ASGI middleware: 401 with `WWW-Authenticate: Bearer` for a request without a valid key, on every path but
    `PUBLIC_PATHS`. The digests live on `app.state.api_key_digests` (set by the ingress replica)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path, root = scope["path"], scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):] or "/"
        digests = getattr(scope["app"].state, "api_key_digests", ())
        problem = None if path in PUBLIC_PATHS else auth_problem(Headers(scope=scope).get("authorization"), digests)
        if problem is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # policy violation; no websocket route today
        else:
            detail, challenge = problem
            await JSONResponse({"detail": detail}, 401, headers={"WWW-Authenticate": challenge})(scope, receive, send)


def document_bearer(app: FastAPI) -> None:
    """Put the Bearer scheme (`BEARER`, FastAPI's HTTPBearer) and a 401 on every non-public operation of the
    OpenAPI, so /docs shows the lock; the middleware, not a dependency, enforces it."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()  # FastAPI caches it on app.openapi_schema: this edits it once
        schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
        if BEARER.scheme_name not in schemes:
            schemes[BEARER.scheme_name] = BEARER.model.model_dump(mode="json", by_alias=True, exclude_none=True)
            refused = {"description": "Missing, malformed or invalid API key",
                       "content": {"application/json": {"schema": {
                           "type": "object", "properties": {"detail": {"type": "string"}}, "required": ["detail"]}}}}
            for path, operations in schema.get("paths", {}).items():
                if path in PUBLIC_PATHS:
                    continue
                for operation in operations.values():
                    operation["security"] = [{BEARER.scheme_name: []}]
                    operation.setdefault("responses", {}).setdefault("401", refused)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
