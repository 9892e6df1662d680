"""The registry through which subnets/ plugs its command groups into `tensornet`.

subnets/ sits above node/ (it imports node's client kit), so node/ must never import subnets/. The subnet groups
(miner, validator, client) are named instead by entry points in pyproject.toml, group `tensornet.commands`: each
maps a group name to a module that exports `register(app)`.
"""

from __future__ import annotations

from importlib import metadata
from types import ModuleType

GROUP = "tensornet.commands"


def load(name: str) -> ModuleType | None:
    """The module registered for command group `name`, or None if no installed package registers one."""
    for entry in metadata.entry_points(group=GROUP, name=name):
        return entry.load()
    return None


def available(name: str) -> bool:
    """Whether a package registers command group `name`, without importing it."""
    return bool(metadata.entry_points(group=GROUP, name=name))
