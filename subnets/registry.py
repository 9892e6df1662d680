"""Task name -> task class: how the miner host and the validator loop find a subnet's code.

A subnet on chain names its task; both sides look it up here. Shipped tasks are registered on
import; a new subnet calls `register` once (see spec/subnets.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from subnets.compute import ComputeTask
from subnets.task import ConfigError, Task, UnknownTaskError
from subnets.text import TextTask

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_TASKS: dict[str, type[Task[Any, Any]]] = {}


def register(cls: type[Task[Any, Any]]) -> type[Task[Any, Any]]:
    """Add a task class under its `name`; usable as a class decorator. Names are unique."""
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise ConfigError(f"{cls!r} is not a Task subclass")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"task name {name!r}: lowercase letters, digits, '-' or '_', at most 32")
    existing = _TASKS.get(name)
    if existing is not None and existing is not cls:
        raise ConfigError(f"task name {name!r} is already taken by {existing.__module__}.{existing.__qualname__}")
    _TASKS[name] = cls
    return cls


def get(name: str) -> type[Task[Any, Any]]:
    """The class registered as `name`, or `UnknownTaskError` listing the known names."""
    cls = _TASKS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise UnknownTaskError(f"unknown subnet task {name!r}; known: {', '.join(names()) or 'none'}")
    return cls


def create(name: str, config: Mapping[str, Any] | None = None, **kwargs: Any) -> Task[Any, Any]:
    """Instantiate a task by name; `kwargs` carries side-specific arguments such as a validator secret."""
    return get(name)(config, **kwargs)


def names() -> list[str]:
    return sorted(_TASKS)


register(ComputeTask)
register(TextTask)
