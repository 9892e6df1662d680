"""Miner-side throughput of the shipped subnets, each against a baseline measured in the same run.

    python -m bench.miner --json [--device auto|cpu|cuda:N] [--shape M K N] [--repeat R]

Compute: a miner's whole answer (expand the seed, multiply on the device, return int32 bytes) in
GFLOP/s, against torch's plain float32 matmul of the same shapes on the same device; and the cost of
the validator's Freivalds check against the multiplication. Text: training steps/s and answers/s
of the reference miner, against the validator's scoring rate.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from subnets.compute import ComputeAnswer, ComputeTask, freivalds, matrices, product_from_bytes
from subnets.device import select_device, synchronize
from subnets.text import TextTask


def timed(fn: Callable[[], object], device: torch.device, repeat: int) -> float:
    """Median wall time of `fn` in seconds, after one warm-up call."""
    fn()
    synchronize(device)
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def bench_compute(device: torch.device, shape: tuple[int, int, int], repeat: int) -> dict:
    m, k, n = shape
    task = ComputeTask({"m": m, "k": k, "n": n}, secret=bytes(32))
    miner = task.load_miner(device)
    miner.prepare()
    ch = task.challenge(bytes(32))
    a, b = matrices(ch.query)
    flops = task.flops(ch.query)

    at = torch.from_numpy(a).to(device, torch.float32)
    bt = torch.from_numpy(b).to(device, torch.float32)
    t_plain = timed(lambda: at @ bt, device, repeat)  # baseline: the bare kernel, data already on the device
    t_multiply = timed(lambda: miner.multiply(a, b), device, repeat)  # host -> device -> host
    t_answer = timed(lambda: miner.answer(ch.query), device, repeat)  # + expanding the seed, encoding

    answer = miner.answer(ch.query)
    assert task.verify(ch, answer), "the miner's product failed verification"
    c = product_from_bytes(answer, m, n)
    t_generate = timed(lambda: matrices(ch.query), device, repeat)
    t_freivalds = timed(lambda: freivalds(a, b, c, ch.expected), device, repeat)
    t_score = timed(lambda: task.score_payload(ch, answer.to_bytes(), 1), device, repeat)
    bad = bytearray(answer.product)
    bad[0] ^= 1
    assert task.score(ch, ComputeAnswer(bytes(bad)), 1) == 0, "a flipped entry passed verification"
    return {
        "shape": [m, k, n],
        "gflop": flops / 1e9,
        "miner_answer_gflops": flops / t_answer / 1e9,
        "miner_multiply_gflops": flops / t_multiply / 1e9,
        "baseline_torch_matmul_gflops": flops / t_plain / 1e9,
        "miner_vs_baseline": t_plain / t_answer,
        "answer_ms": t_answer * 1e3,
        "matmul_ms": t_plain * 1e3,
        "freivalds_ms": t_freivalds * 1e3,
        "freivalds_vs_matmul": t_freivalds / t_plain,
        "validator_score_ms": t_score * 1e3,
        "validator_score_vs_miner_answer": t_score / t_answer,
        "expand_seed_ms": t_generate * 1e3,
        "answer_bytes": len(answer.to_bytes()),
    }


def bench_text(device: torch.device, steps: int, repeat: int) -> dict:
    task = TextTask()
    _ = task.corpus
    miner = task.load_miner(device, {"steps": steps})
    t0 = time.perf_counter()
    miner.prepare()
    synchronize(device)
    t_train = time.perf_counter() - t0
    ch = task.challenge(bytes(32))
    payload = task.encode_query(ch)
    t_answer = timed(lambda: task.handle(miner, payload), device, repeat)
    out = task.handle(miner, payload)
    t_score = timed(lambda: task.score_payload(ch, out), device, repeat)
    return {
        "train_steps": steps,
        "train_steps_per_s": steps / t_train,
        "train_loss_nats": miner.train_loss,
        "windows_per_answer": task.windows,
        "answers_per_s": 1 / t_answer,
        "validator_scores_per_s": 1 / t_score,
        "score": task.score_payload(ch, out),
        "corpus_bytes": len(task.corpus.text),
        "corpus_source": task.corpus.source,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--shape", type=int, nargs=3, metavar=("M", "K", "N"))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--steps", type=int, default=200, help="text miner training steps")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    shape = tuple(args.shape) if args.shape else ((256, 65536, 256) if device.type == "cuda" else (256, 4096, 256))
    result = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "numpy": np.__version__,
        "compute": bench_compute(device, shape, args.repeat),
        "text": bench_text(device, args.steps, args.repeat),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for section in ("compute", "text"):
            for key, value in result[section].items():
                print(f"{section}.{key}: {value:.4g}" if isinstance(value, float) else f"{section}.{key}: {value}")
    return result


if __name__ == "__main__":
    main()
