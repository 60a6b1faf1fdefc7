"""API keys, one scheme for every server classemo runs (Serve's HTTP API, the live lesson page): `Bearer <key>`.

Keys come from the environment (`CLASSEMO_API_KEYS`, comma-separated) and/or a file (one key per line, `#` starts a
comment line). Only their SHA-256 digests are kept, in memory. A presented key is hashed and compared with every
stored digest by `hmac.compare_digest`, without stopping at a match, so the time a check takes says nothing about
which key matched or how much of one. With no keys at all a server is open: the callers decide whether to allow it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from pathlib import Path

KEYS_ENV = "CLASSEMO_API_KEYS"


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
