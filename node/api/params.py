"""What every route shares: its parameters parsed into types (400 otherwise) and its errors as one JSON line.

One parser per kind of value (spec/api.md §2), so no handler ever sees an unchecked value.
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from protocol import crypto
from protocol.errors import ProtocolError

U64_MAX = (1 << 64) - 1


def jsonable(value: Any) -> Any:
    """`value` with bytes as hex (keys too) and objects with `to_obj` as their plain form."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {(k.hex() if isinstance(k, bytes) else str(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "to_obj"):  # e.g. a neuron's axon Endpoint -> [peer_id, [multiaddr, ...]]
        return jsonable(value.to_obj())
    return value


def error(status: int, message: str, rule: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if rule:
        body["rule"] = rule
    return JSONResponse(body, status_code=status)


class ApiError(Exception):
    """A client's mistake: answered as one-line JSON with `status`, never logged."""

    def __init__(self, status: int, message: str, rule: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.rule = rule


def _param(request: Request, name: str) -> str | None:
    raw = request.path_params.get(name)
    return request.query_params.get(name) if raw is None else str(raw)


def param_int(request: Request, name: str, *, default: int | None = None, lo: int = 0, hi: int = U64_MAX) -> int:
    """Path or query parameter `name` as a decimal integer in [lo, hi] (400 otherwise)."""
    raw = _param(request, name)
    if raw is None:
        if default is None:
            raise ApiError(400, f"{name} is required")
        return default
    # ASCII digits only: int() would also take signs, spaces, underscores and other scripts' digits
    if not (0 < len(raw) <= 20 and raw.isascii() and raw.isdigit()) or not lo <= int(raw) <= hi:
        raise ApiError(400, f"{name} must be an integer in [{lo}, {hi}], got {raw[:40]!r}")
    return int(raw)


def param_hex(request: Request, name: str, size: int) -> bytes:
    """Path or query parameter `name` as exactly `size` bytes of hex (400 otherwise)."""
    raw = _param(request, name) or ""
    try:
        if len(raw) != 2 * size:
            raise ValueError
        return bytes.fromhex(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be {2 * size} hex characters, got {raw[:80]!r}") from None


def param_address(request: Request, name: str = "address") -> bytes:
    """Path or query parameter `name` as a public key, from an address or 64 hex characters (400 otherwise)."""
    raw = _param(request, name) or ""
    try:
        return crypto.parse_address(raw[:200])
    except ProtocolError as exc:
        raise ApiError(400, str(exc)) from None


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error(exc.status, exc.message, exc.rule)


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 (no such route) and 405 (wrong method), as JSON like every other error."""
    assert isinstance(exc, HTTPException)
    return error(exc.status_code, exc.detail, None)
