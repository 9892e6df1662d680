"""An error raised inside `async with open_host(...)` / `open_stack(...)` reaches the caller unchanged."""

from __future__ import annotations

import pytest

from p2pnet.host import open_host
from p2pnet.nodekey import keypair_from_seed
from p2pnet.stack import open_stack


class Boom(Exception):
    pass


async def test_error_inside_open_host_propagates() -> None:
    with pytest.raises(Boom):
        async with open_host(keypair_from_seed(b"\x01" * 32)):
            raise Boom("inside the host block")


async def test_error_inside_open_stack_propagates() -> None:
    with pytest.raises(Boom):
        async with open_stack(keypair_from_seed(b"\x02" * 32)):
            raise Boom("inside the stack block")
