"""Amounts as users type them: tokens with up to 9 decimals, exactly (no float). They print with
protocol.economics.emission.decimal_tokens.

Apart from node.client.api_client (httpx) so that the CLI can parse its amount flags without loading the HTTP stack.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from node.errors import NodeError
from protocol.economics.emission import UNIT


def parse_amount(text: str) -> int:
    """'1.5' tokens -> 1_500_000_000 units, exactly (no float)."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise NodeError(f"amount {text!r} is not a number (use tokens, e.g. 1.5)") from None
    units = value * UNIT
    if value < 0 or units != units.to_integral_value():
        raise NodeError(f"amount {text!r} must be >= 0 with at most 9 decimals")
    return int(units)

