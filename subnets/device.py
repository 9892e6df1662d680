"""Device selection for miners: one torch device per worker, CUDA when visible, otherwise CPU.

The miner host starts one worker per GPU and pins each with `CUDA_VISIBLE_DEVICES`; inside a worker
`cuda:0` is then that GPU. An empty value or "-1" hides every GPU, and torch honours that too;
we check the variable first so that a worker told "no GPU" never touches the CUDA runtime.
"""

from __future__ import annotations

import os
import re

import torch

from subnets.task import ConfigError

_SPEC = re.compile(r"^(auto|cpu|cuda(?::(\d{1,3}))?)$")


def visible_gpu_ids(env: dict[str, str] | None = None) -> list[str] | None:
    """The entries of CUDA_VISIBLE_DEVICES, [] if it hides all GPUs, None if it is unset."""
    value = (os.environ if env is None else env).get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    ids: list[str] = []
    for part in value.split(","):
        part = part.strip()
        if not part or part.startswith("-"):  # CUDA stops at the first invalid entry
            break
        ids.append(part)
    return ids


def cuda_count(env: dict[str, str] | None = None) -> int:
    """How many GPUs this process may use (0 without CUDA)."""
    ids = visible_gpu_ids(env)
    if ids == []:
        return 0
    if not torch.cuda.is_available():
        return 0
    count = torch.cuda.device_count()
    return count if ids is None else min(count, len(ids))


def select_device(spec: str = "auto", env: dict[str, str] | None = None) -> torch.device:
    """`auto`: the first visible GPU, else CPU. `cpu`, `cuda` or `cuda:N` ask for one; a GPU that is
    not there is a `ConfigError` rather than a silent fall-back, so an operator sees the mistake."""
    match = _SPEC.match(spec) if isinstance(spec, str) else None
    if match is None:
        raise ConfigError(f"device {spec!r}: expected auto, cpu, cuda or cuda:N")
    if spec == "cpu":
        return torch.device("cpu")
    count = cuda_count(env)
    if spec == "auto":
        return torch.device("cuda:0") if count else torch.device("cpu")
    index = int(match.group(2) or 0)
    if index >= count:
        raise ConfigError(f"device {spec!r}: {count} visible GPU(s)")
    return torch.device(f"cuda:{index}")


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that timings measure the work and not the launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
