"""Latency of ``Policy.step`` at batch 1: ONNX Runtime (CPU) vs PyTorch eager, same run.

Usage::

    .venv/bin/python benchmarks/bench_policy_latency.py [--model-dir models/policy] [--steps 3000]

The headline number re-plans on *every* step (``replan_every=1``: encode + head + numpy
sampling + chunk decoding + blending + output smoothing each frame), the worst case of the 30 Hz
loop; the default schedule (``runtime.DEFAULT_REPLAN_EVERY``) is reported beside it. Sampling
uses the runtime's defaults, the model directory's output calibration included. Without ``--model-dir`` an untrained
network of the default size with spread logits (``policy.fixtures``) is used: the latency of the
graph does not depend on the weights, only top-p sorting does a little (peaked distributions are
cheaper). Targets: ONNX Runtime median <= 2 ms and p99 <= 4 ms. Results go to a table on stdout
and to ``benchmarks/results/policy_latency.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from face_expr_ros import expression as ex
from face_expr_ros.policy.fixtures import make_policy
from face_expr_ros.policy.model_dir import load_policy
from face_expr_ros.policy.network import count_parameters, flops_per_plan
from face_expr_ros.policy.runtime import DEFAULT_REPLAN_EVERY, Observation, Policy

RESULTS = Path(__file__).resolve().parent / "results" / "policy_latency.json"


def observations(n: int, audio_dim: int, seed: int = 0) -> list[Observation]:
    """A stream with the gaps a robot sees: faces lost now and then, audio drop-outs, text updates."""
    rng = np.random.default_rng(seed)
    text = rng.normal(size=384).astype(np.float32)
    text /= np.linalg.norm(text)
    out = []
    for k in range(n):
        face = None if k % 50 > 45 else ex.clamp(rng.uniform(0.0, 0.4, ex.DIM) * (ex.UPPER > 0))
        audio = None if k % 97 == 0 else rng.normal(-6.0, 3.0, audio_dim).astype(np.float32)
        out.append(Observation(face, audio, text if k > 30 else None))
    return out


def time_steps(policy: Policy, obs: list[Observation], warmup: int) -> np.ndarray:
    for o in obs[:warmup]:
        policy.step(o)
    times = np.empty(len(obs) - warmup)
    for i, o in enumerate(obs[warmup:]):
        t0 = time.perf_counter()
        policy.step(o)
        times[i] = time.perf_counter() - t0
    return times * 1e3


def time_call(fn: object, n: int = 500) -> float:
    for _ in range(50):
        fn()  # type: ignore[operator]
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts) * 1e3)


def stats(ms: np.ndarray) -> dict[str, float]:
    return {"median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max()), "mean_ms": float(ms.mean()),
            "steps": int(ms.size)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    tmp = None
    if args.model_dir is None:
        tmp = tempfile.TemporaryDirectory()
        model_dir = make_policy(Path(tmp.name) / "policy")[2]
        source = "untrained default-size network (policy.fixtures.make_policy)"
    else:
        model_dir, source = args.model_dir, str(args.model_dir)
    bundle = load_policy(model_dir)
    cfg = bundle.config
    obs = observations(args.steps + args.warmup, cfg.audio_dim)

    rows: dict[str, dict[str, float]] = {}
    for backend in ("onnxruntime", "torch"):
        for replan in (1, DEFAULT_REPLAN_EVERY):
            policy = Policy.load(model_dir, backend, threads=args.threads, replan_every=replan, seed=0)
            rows[f"{backend} replan_every={replan}"] = stats(time_steps(policy, obs, args.warmup))

    # Where the time of one ONNX Runtime plan goes.
    policy = Policy.load(model_dir, "onnxruntime", threads=args.threads)
    for o in obs[:64]:
        policy.step(o)
    x = policy.inputs()
    be = policy.backend
    h, c = be.encode(x)
    sample = policy.sample(h, c)  # the runtime's own settings (eyelids, code persistence)
    code = sample.code
    parts = {
        "encode (ONNX Runtime)": time_call(lambda: be.encode(x)),
        "head (ONNX Runtime)": time_call(lambda: be.head(h, code)),
        "sample code+tokens incl. head": time_call(lambda: policy.sample(h, c)),
        "decode chunk": time_call(lambda: bundle.tokenizer.decode_chunk(sample.base[0], sample.deltas[0])),
    }
    if bundle.calibration is not None:
        frame = policy.step(obs[64])
        parts["output calibration (every frame)"] = time_call(lambda: bundle.calibration.apply(frame))
    flops = flops_per_plan(cfg)
    n_params = count_parameters(bundle.net)

    print(f"policy: {source}")
    print(f"parameters: {n_params:,}   FLOPs per plan (2 x MACs of matrix products): {flops['total'] / 1e6:.1f} M "
          f"(encoders {flops['encoders'] / 1e6:.1f}, transformer {flops['transformer'] / 1e6:.1f}, "
          f"head {flops['head'] / 1e6:.1f})")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f}; threads={args.threads}")
    print(f"\n{'back-end / schedule':<30}{'median':>9}{'p90':>9}{'p99':>9}{'max':>9}  ms, {args.steps} steps")
    for name, r in rows.items():
        print(f"{name:<30}{r['median_ms']:>9.3f}{r['p90_ms']:>9.3f}{r['p99_ms']:>9.3f}{r['max_ms']:>9.3f}")
    print("\none ONNX Runtime plan, median ms:")
    for name, ms in parts.items():
        print(f"  {name:<34}{ms:.3f}")
    head = rows["onnxruntime replan_every=1"]
    ok = head["median_ms"] <= 2.0 and head["p99_ms"] <= 4.0
    print(f"\ntarget (ONNX Runtime, re-plan every step): median <= 2 ms, p99 <= 4 ms: {'MET' if ok else 'NOT MET'}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "policy": source, "architecture": cfg.to_dict(), "parameters": n_params, "flops_per_plan": flops,
        "threads": args.threads, "cpus": os.cpu_count(), "load_average_1min": os.getloadavg()[0],
        "python": platform.python_version(), "results": rows, "plan_breakdown_median_ms": parts,
        "target_met": ok,
    }, indent=1) + "\n")
    print(f"wrote {args.out}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
