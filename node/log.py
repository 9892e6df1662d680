"""Structured logs for every tensornet process: readable lines for people, JSON lines for machines.

`configure()` runs once per process (the CLI calls it before any command); library code only calls
`get_logger(__name__)`. Logs go to stderr so that a command's stdout stays clean for `--json`.
Records from the standard `logging` module (trio, libp2p) go through the same renderer.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Literal

import structlog

LogFormat = Literal["text", "json"]
LEVELS = ("debug", "info", "warning", "error", "critical")
# Libraries that log every HTTP request at INFO (httpx: each API call a CLI command makes; hypercorn: the
# node's server): they speak from WARNING up unless the level is debug.
# hypercorn sets its own child loggers to INFO when it serves with a default config, so they are named too
CHATTY = ("httpx", "httpcore", "hypercorn", "hypercorn.error", "hypercorn.access")


class _StderrLogger:
    """Writes each line to whatever sys.stderr is *now* (test runners swap it)."""

    def msg(self, message: str) -> None:
        stream = sys.stderr
        stream.write(message + "\n")
        stream.flush()

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


class _StderrHandler(logging.StreamHandler):
    """A stdlib handler that, like `_StderrLogger`, resolves sys.stderr at each record."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def _logger_factory(*_args: Any) -> _StderrLogger:
    return _StderrLogger()


def _logger_key(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    """Name the source `logger` in both chains (structlog reserves that keyword in get_logger)."""
    if "logger_name" in event:
        event["logger"] = event.pop("logger_name")
    return event


def _renderer(fmt: LogFormat) -> Any:
    if fmt == "json":
        return structlog.processors.JSONRenderer(sort_keys=False)
    colors = sys.stderr.isatty() and "NO_COLOR" not in os.environ
    # Plain tracebacks: structlog's default (rich, with every frame's locals) costs ~60 KB and tens of
    # milliseconds per record, and would print key material and peers' payloads held in locals.
    return structlog.dev.ConsoleRenderer(colors=colors, exception_formatter=structlog.dev.plain_traceback)


def configure(fmt: LogFormat = "text", level: str = "info") -> None:
    """Set the format and threshold for structlog and stdlib logging alike; safe to call again."""
    if fmt not in ("text", "json"):
        raise ValueError(f"log format must be 'text' or 'json', got {fmt!r}")
    level = level.lower()
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")
    numeric = logging.getLevelName(level.upper())
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _logger_key,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    tail = [structlog.processors.format_exc_info] if fmt == "json" else []
    structlog.configure(
        processors=[*shared, structlog.processors.StackInfoRenderer(), *tail, _renderer(fmt)],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_logger_factory,
        cache_logger_on_first_use=False,  # so a later configure() also reaches loggers made earlier
    )
    handler = _StderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail, _renderer(fmt)],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_tensornet", False)]:
        root.removeHandler(old)
    handler._tensornet = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in CHATTY:
        logging.getLogger(name).setLevel(numeric if level == "debug" else max(numeric, logging.WARNING))


def get_logger(name: str | None = None, **context: Any) -> structlog.typing.FilteringBoundLogger:
    """A logger that tags every event with `logger=name` and any extra context given."""
    # "logger" is a reserved keyword of structlog.get_logger, so the name is bound as a first value.
    proxy = structlog.get_logger(**({"logger_name": name} if name else {}), **context)
    return proxy  # a lazy proxy: it follows a later configure()
