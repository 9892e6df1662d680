"""Every bench module runs, at its smallest sizes, as `python -m bench.X --json` in a real subprocess, and prints
JSON with the keys scripts read. No timing is asserted: a figure only has to be there, with its type.

A bench that rots (a signature scheme changed under it, a flag renamed, a helper moved) fails here, not on the day
someone needs its figures.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
NUM = (int, float)  # a figure; bool is excluded in check()


def run_bench(module: str, *args: str, timeout: float = 300) -> list[Any]:
    """Run `python -m bench.<module> --json ARGS` from the repository root; the JSON values on its stdout, in order."""
    proc = subprocess.run([sys.executable, "-m", f"bench.{module}", "--json", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"bench.{module} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    values, text, pos = [], proc.stdout, 0
    decoder = json.JSONDecoder()
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            break
        value, pos = decoder.raw_decode(text, pos)
        values.append(value)
    assert values, f"bench.{module} printed no JSON"
    return values


def check(obj: dict[str, Any], schema: dict[str, type | tuple[type, ...]]) -> None:
    """Each key of `schema` is in `obj` with a value of that type (a bool never counts as a number)."""
    missing = set(schema) - set(obj)
    assert not missing, f"missing keys {sorted(missing)} in {sorted(obj)}"
    for key, want in schema.items():
        value, wants = obj[key], want if isinstance(want, tuple) else (want,)
        ok = bool in wants if isinstance(value, bool) else isinstance(value, wants)
        assert ok, f"{key}={value!r} is not {want}"


CODEC_CASE = {
    "name": str, "bytes": int, "encode_per_s": NUM, "decode_per_s": NUM, "codec_decode_per_s": NUM,
    "sign_per_s": NUM, "verify_per_s": NUM, "decode_verify_per_s": NUM, "baseline_nacl_verify_per_s": NUM,
    "baseline_nacl_sign_per_s": NUM, "baseline_cbor2_decode_per_s": NUM, "baseline_cbor2_encode_per_s": NUM,
    "decode_vs_cbor2": NUM, "verify_vs_nacl": NUM,
}


def test_bench_codec() -> None:
    """Regression: the PyNaCl baseline verified a block's whole body while its signature covers the header, so
    the bench died with BadSignatureError."""
    [out] = run_bench("codec", "--min-time", "0.005", "--repeats", "1")
    check(out, {"benchmark": str, "python": str, "machine": str, "cases": list})
    names = [c["name"] for c in out["cases"]]
    assert names[0] == "signed_tx_set_weights_64" and names[1].startswith("signed_block_"), names
    for case in out["cases"]:
        check(case, CODEC_CASE)


def test_bench_dag() -> None:
    [out] = run_bench("dag", "--blocks", "10", "--repeat", "1", "--sizes", "4")
    check(out, {"benchmark": str, "python": str, "machine": str, "research_anchor_us_per_block": dict,
                "results": list})
    [row] = out["results"]
    check(row, {"n": int, "rounds": int, "blocks": int, "commits": int, "us_per_block": NUM,
                "insert_us_per_block": NUM, "try_commit_us_per_block": NUM,
                "baseline_blake2b_parents_us_per_block": NUM, "ratio_to_baseline": (*NUM, type(None))})
    assert row["n"] == 4 and row["blocks"] == 4 * row["rounds"]


def test_bench_fuzz() -> None:
    [out] = run_bench("fuzz", "--inputs", "50", "--targets", "codec,state")
    check(out, {"bench": str, "python": str, "machine": str, "engine": str, "targets": list})
    assert [r["target"] for r in out["targets"]] == ["codec", "state"]
    for row in out["targets"]:
        check(row, {"target": str, "inputs": int, "resign": bool, "inputs_per_s": NUM, "mutants_per_s": NUM,
                    "codec_decode_per_s": NUM, "slowdown_vs_decode": NUM, "accepted": int, "crashes": int,
                    "mean_input_bytes": int})
        assert row["crashes"] == 0, row


def test_bench_yuma() -> None:
    [out] = run_bench("yuma", "--sizes", "16x4", "--runs", "1")
    check(out, {"bench": str, "uids": int, "validators": int, "runs": int, "median_ms": NUM, "min_ms": NUM,
                "median_cpu_ms": NUM, "min_cpu_ms": NUM, "baseline_reference_median_ms": NUM,
                "baseline_reference_min_ms": NUM, "baseline_reference_median_cpu_ms": NUM, "speedup_median": NUM,
                "baseline_float_numpy_ms": NUM, "goal_ms": NUM, "meets_goal": bool, "load_avg_1m": NUM})
    assert (out["uids"], out["validators"], out["runs"]) == (16, 4, 1)


def test_bench_yuma_refuses_a_bad_size() -> None:
    proc = subprocess.run([sys.executable, "-m", "bench.yuma", "--sizes", "4x8"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "1 <= VALIDATORS <= UIDS" in proc.stderr, proc.stderr


def test_bench_miner() -> None:
    [out] = run_bench("miner", "--device", "cpu", "--shape", "8", "16", "8", "--repeat", "1", "--steps", "2",
                      "--threads", "1")
    check(out, {"device": str, "device_name": str, "torch": str, "cpu_threads": int, "numpy": str, "compute": dict,
                "text": dict})
    check(out["compute"], {"shape": list, "gflop": NUM, "miner_answer_gflops": NUM, "miner_multiply_gflops": NUM,
                           "baseline_torch_matmul_gflops": NUM, "miner_vs_baseline": NUM, "answer_ms": NUM,
                           "matmul_ms": NUM, "freivalds_ms": NUM, "freivalds_vs_matmul": NUM,
                           "validator_score_ms": NUM, "validator_score_vs_miner_answer": NUM,
                           "expand_seed_ms": NUM, "answer_bytes": int})
    check(out["text"], {"train_steps": int, "train_steps_per_s": NUM, "train_loss_nats": NUM,
                        "windows_per_answer": int, "answers_per_s": NUM, "validator_scores_per_s": NUM,
                        "score": NUM, "corpus_bytes": int, "corpus_source": str})
    assert out["compute"]["shape"] == [8, 16, 8] and out["text"]["train_steps"] == 2


@pytest.mark.slow  # two sweeps of 2 libp2p node processes each
def test_bench_gossip() -> None:
    [out] = run_bench("gossip", "--nodes", "2", "--rates", "10", "--seconds", "0.5", "--settle", "0.2")
    check(out, {"bench": str, "nodes": int, "message_bytes": int, "seconds_per_rate": NUM, "figure": dict,
                "baseline": dict, "speedup": (*NUM, type(None)), "tuned": dict, "default": dict, "wall_s": NUM,
                "loadavg_1m": dict, "cpus": int})
    for mode in ("tuned", "default"):
        sweep = out[mode]
        check(sweep, {"mode": str, "nodes": int, "results": list, "skipped_rates": list, "lossless_rates": list,
                      "lossless_max_rate": int, "capped": bool})
        [row] = sweep["results"]
        check(row, {"rate": int, "published": int, "sent": int, "publish_behind_s": NUM, "achieved_rate": NUM,
                    "delivered": int, "expected": int, "delivery_ratio": NUM, "deliveries_per_s": NUM,
                    "latency_p50_ms": (*NUM, type(None)), "latency_p99_ms": (*NUM, type(None)), "settle_s": NUM,
                    "drops": dict, "pubsub_peers_min": int, "late": int})


@pytest.mark.slow  # 4 `tensornet node run` processes
def test_bench_consensus() -> None:
    # every mode that composes, in one run: load with its unloaded baseline, a large genesis, one crash
    [out] = run_bench("consensus", "--validators", "4", "--seconds", "3", "--tx-rate", "30", "--accounts", "2000",
                      "--crash", "1", timeout=600)
    check(out, {"validators": int, "seconds": NUM, "rounds_per_s": NUM, "commits_per_s": NUM,
                "commit_latency_ms_p50": (*NUM, type(None)), "commit_latency_ms_p99": (*NUM, type(None)),
                "tx_rate_offered": int, "tx_submitted": int, "tx_senders": int, "tx_refused": dict,
                "mempool_refused": dict, "tx_per_s": NUM, "state_roots_agree": bool, "height": int,
                "baseline_inprocess_rounds_per_s": NUM, "idle_rounds_per_s": NUM, "all_up_rounds_per_s": NUM,
                "crashed": int, "genesis_accounts": int})
    assert out["validators"] == 4 and out["state_roots_agree"] is True and out["height"] >= 3, out
    assert out["genesis_accounts"] == 2000 and out["crashed"] == 1 and out["tx_submitted"] > 0, out


@pytest.mark.slow  # 4 `tensornet node run` processes
def test_bench_consensus_idle() -> None:
    [out] = run_bench("consensus", "--validators", "4", "--seconds", "3", "--idle", timeout=600)
    check(out, {"rounds_per_s": NUM, "state_roots_agree": bool, "cpu_per_node_pct": NUM, "cpu_per_node_pct_max": NUM,
                "idle_interval_ms": int, "first_tx_latency_ms": NUM})
    assert out["idle_interval_ms"] == 1000 and out["cpu_per_node_pct"] >= 0, out


@pytest.mark.slow  # 4 `tensornet node run` processes under cProfile
def test_bench_consensus_profile() -> None:
    [out] = run_bench("consensus", "--validators", "4", "--seconds", "3", "--profile", "--profile-validators", "2",
                      timeout=600)
    check(out, {"rounds_per_s": NUM, "state_roots_agree": bool, "profile_ms_per_round": dict,
                "profile_cpu_ms_per_round": NUM, "profile_top": dict, "profile_method": str,
                "profile_validators": int})
    assert set(out["profile_ms_per_round"]) == {"signatures", "codec", "dag", "state", "storage", "networking",
                                                "other", "unprofiled"}, out["profile_ms_per_round"]
    check(out["profile_ms_per_round"], {k: NUM for k in out["profile_ms_per_round"]})
    assert out["profile_top"] and all(isinstance(v, NUM) for v in out["profile_top"].values()), out["profile_top"]
    assert out["profile_validators"] == 2, out  # the first two of four ran under the profiler
