"""Copy a trained policy into models/policy (the package's default) with its provenance.

    .venv/bin/python scripts/ship_model.py RUN/policy EVAL_DIR [--out models/policy]

The policy's manifest.json gains the commands that made it, the data hash and the evaluation
metrics of the SFT policy; `load_policy` still checks every file against the manifest's hashes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from face_expr_ros.policy.model_dir import load_policy

COMMANDS = [
    "face-expr data synth data/synth -n 360 --seed 0",
    "OMP_NUM_THREADS=1 face-expr train --data data/synth --out runs/sft --steps 3000 --seed 0 --head-step-weight 3",
    "OMP_NUM_THREADS=1 face-expr calibrate --model runs/sft/policy --data data/synth",
    "face-expr eval --data data/synth --split test --policy runs/sft/policy --out runs/eval",
    "python scripts/ship_model.py runs/sft/policy runs/eval",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("policy", type=Path, help="trained policy directory (RUN/policy)")
    parser.add_argument("eval_dir", type=Path, help="folder written by `face-expr eval` (results.json)")
    parser.add_argument("--out", type=Path, default=Path("models/policy"), help="destination (default models/policy)")
    args = parser.parse_args()
    load_policy(args.policy)  # refuse to ship anything that does not load
    if args.out.exists():
        shutil.rmtree(args.out)
    shutil.copytree(args.policy, args.out)
    config = json.loads((args.out / "config.json").read_text())
    results = json.loads((args.eval_dir / "results.json").read_text())
    manifest_path = args.out / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["provenance"] = {
        "commands": COMMANDS,
        "data_hash": config.get("data_hash"),
        "trained_steps": config.get("trained_steps"),
        "evaluation": {k: results[k] for k in results if k in ("config", "methods", "sampling_check")},
    }
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    load_policy(args.out)
    print(f"shipped {args.policy} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
