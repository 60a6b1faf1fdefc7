"""API keys of the classemo Serve application: `Authorization: Bearer <key>`, checked before any route runs.

Keys come from the environment (`CLASSEMO_API_KEYS`, comma-separated) and/or a file (`api_keys_file`), kept only as
SHA-256 digests and compared in constant time: the scheme is `classemo.apikeys`, shared with the live lesson page.
The check is an ASGI middleware: it runs for every path
(a route added later cannot forget it) and before the body is read (an unauthenticated client cannot make the server
buffer a 512 MiB upload). With no keys at all the API is open, which the ingress logs as a warning at start.
"""

from __future__ import annotations

import re
from typing import Any, Callable
from urllib.parse import parse_qs

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from classemo.apikeys import KEYS_ENV, auth_problem, key_matches, load_key_digests  # noqa: F401 - re-exported

# A browser opening a stream's live page by its link cannot set a header, nor can its EventSource: these two routes
# also take the key as ?key= (as `classemo live`'s page does).
KEY_IN_QUERY = re.compile(r"^/v1/streams/[0-9a-f]{32}/(page|events)$")
PUBLIC_PATHS = frozenset({"/healthz", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
BEARER = HTTPBearer(scheme_name="APIKey", auto_error=False,
                    description="An API key of this server, sent as `Authorization: Bearer <key>`; required when the "
                                f"server has keys ({KEYS_ENV} or api_keys_file)")


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
        header = Headers(scope=scope).get("authorization")
        if header is None and KEY_IN_QUERY.match(path):
            key = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("key", [""])[0]
            header = f"Bearer {key}" if key else None
        problem = None if path in PUBLIC_PATHS else auth_problem(header, digests)
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
