"""A policy directory on disk: save, load, and check everything before it drives a face.

Layout::

    model.safetensors   weights (and the audio normalisation buffers)
    config.json         format/version, architecture (PolicyConfig: W, H, feature sizes...),
                        per-sample input shapes, the tokenizer's sha256, training provenance
    tokenizer.json      the ActionTokenizer (bin edges, chunk codec)
    persona.npz         the PersonaSpace (projection + the training listeners' personas)
    policy.onnx         encoder graph   (see export.py)
    policy_head.onnx    head graph
    calibration.npz     optional: the output calibration (calibration.py, `face-expr calibrate`)
    manifest.json       sha256 of every file above except itself

Loading checks, in order, and stops at the first problem with an error naming the file and the
field: the files exist, their hashes match the manifest (corruption, partial copies), the config
parses and is valid, the tokenizer parses and its hash equals ``config.json['tokenizer_sha256']``
and its sizes match the architecture, and every weight tensor is present with the right shape.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from face_expr_ros import expression as ex
from face_expr_ros.policy.calibration import CALIBRATION_FILE, CalibrationError, OutputCalibration
from face_expr_ros.policy.export import ENCODER_FILE, HEAD_FILE, OPSET, export_onnx, file_sha256
from face_expr_ros.policy.network import INPUT_NAMES, ListenerPolicy, PolicyConfig
from face_expr_ros.policy.persona import PersonaError, PersonaSpace
from face_expr_ros.policy.tokenizer import ActionTokenizer, TokenizerError

FORMAT = "face_expr_ros.policy"
VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
PERSONA_FILE = "persona.npz"
MANIFEST_FILE = "manifest.json"


class PolicyFileError(ValueError):
    """A policy directory that cannot be used; the text names the file and, if any, the field."""


class PolicyInputError(ValueError):
    """Network inputs of the wrong shape or with NaN/inf; the text names the field."""


@dataclass
class PolicyBundle:
    """What a policy directory holds, checked."""

    net: ListenerPolicy
    tokenizer: ActionTokenizer
    config: PolicyConfig
    persona: PersonaSpace
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)  # config.json (provenance, data hash...)
    calibration: OutputCalibration | None = None


def check_tokenizer_matches(cfg: PolicyConfig, tok: ActionTokenizer, source: str = "tokenizer") -> None:
    pairs = {"horizon": (tok.horizon, cfg.horizon), "n_keyframes": (tok.n_keyframes, cfg.n_keyframes),
             "n_bins": (tok.n_bins, cfg.n_bins), "n_deltas": (tok.n_deltas, cfg.n_deltas)}
    for name, (got, want) in pairs.items():
        if got != want:
            raise PolicyFileError(f"{source}: field {name!r} is {got}, the model's architecture has {want}")


def save_policy(out_dir: str | Path, net: ListenerPolicy, tokenizer: ActionTokenizer,
                persona: PersonaSpace | None = None, *, extra: dict[str, Any] | None = None,
                export: bool = True) -> Path:
    """Write a complete policy directory (ONNX graphs too unless ``export`` is False).

    Without a ``persona`` space (models made without data) the directory knows only the average
    listener."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    check_tokenizer_matches(net.cfg, tokenizer)
    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    save_file(tensors, str(out / WEIGHTS_FILE), metadata={"format": FORMAT})
    tokenizer.save(out / TOKENIZER_FILE)
    persona = persona if persona is not None else PersonaSpace.neutral(net.cfg.persona_dim)
    if persona.dim != net.cfg.persona_dim:
        raise ValueError(f"persona space has dim {persona.dim}, the architecture has persona_dim "
                         f"{net.cfg.persona_dim}")
    persona.save(out / PERSONA_FILE)
    config = {
        "format": FORMAT, "version": VERSION, "architecture": net.cfg.to_dict(),
        "inputs": {k: list(v) for k, v in net.cfg.input_shapes().items()},
        "expression_names": list(ex.EXPRESSION_NAMES), "fps": ex.FPS,
        "tokenizer_sha256": tokenizer.sha256, **(extra or {}),
    }
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=1, sort_keys=True) + "\n")
    files = [WEIGHTS_FILE, CONFIG_FILE, TOKENIZER_FILE, PERSONA_FILE]
    if export:
        export_onnx(net, out)
        files += [ENCODER_FILE, HEAD_FILE]
    manifest = {
        "format": FORMAT, "version": VERSION, "files": {f: file_sha256(out / f) for f in files},
        "onnx_opset": OPSET, "torch": torch.__version__, "python": platform.python_version(),
    }
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return out


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise PolicyFileError(f"policy directory {path.parent}: missing file {path.name}")
    try:
        payload = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PolicyFileError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(payload, dict):
        raise PolicyFileError(f"{path}: expected a JSON object")
    return payload


def load_policy(model_dir: str | Path, *, need_onnx: bool = True) -> PolicyBundle:
    """Load and check a policy directory (see the module doc for what is checked)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    root = Path(model_dir)
    if not root.is_dir():
        raise PolicyFileError(f"policy directory not found: {root}")
    manifest = _read_json(root / MANIFEST_FILE)
    listed = manifest.get("files")
    if not isinstance(listed, dict):
        raise PolicyFileError(f"{root / MANIFEST_FILE}: missing field 'files'")
    required = [WEIGHTS_FILE, CONFIG_FILE, TOKENIZER_FILE, PERSONA_FILE]
    if need_onnx:
        required += [ENCODER_FILE, HEAD_FILE]
    for name in required:
        if name not in listed:
            raise PolicyFileError(f"{root / MANIFEST_FILE}: field 'files' does not list {name}")
    for name, digest in listed.items():
        path = root / name
        if not path.is_file():
            if name in required or name == CALIBRATION_FILE:
                raise PolicyFileError(f"policy directory {root}: missing file {name}")
            continue
        if file_sha256(path) != digest:
            raise PolicyFileError(f"{path}: sha256 differs from {MANIFEST_FILE} (corrupt or modified file)")

    meta = _read_json(root / CONFIG_FILE)
    cfg_path = root / CONFIG_FILE
    if meta.get("format") != FORMAT:
        raise PolicyFileError(f"{cfg_path}: field 'format' is {meta.get('format')!r}, expected {FORMAT!r}")
    if meta.get("version") != VERSION:
        raise PolicyFileError(f"{cfg_path}: field 'version' is {meta.get('version')!r}, expected {VERSION}")
    if meta.get("expression_names") != list(ex.EXPRESSION_NAMES):
        raise PolicyFileError(f"{cfg_path}: field 'expression_names' differs from this face_expr_ros")
    if not isinstance(meta.get("architecture"), dict):
        raise PolicyFileError(f"{cfg_path}: missing field 'architecture'")
    try:
        cfg = PolicyConfig.from_dict(meta["architecture"])
    except (TypeError, ValueError) as err:
        raise PolicyFileError(f"{cfg_path}: field 'architecture': {err}") from None
    inputs = meta.get("inputs")
    if not isinstance(inputs, dict) or sorted(inputs) != sorted(INPUT_NAMES):
        names = sorted(inputs) if isinstance(inputs, dict) else inputs
        raise PolicyFileError(f"{cfg_path}: field 'inputs' names {names}, this face_expr_ros's network reads "
                              f"{sorted(INPUT_NAMES)}: the model was made by another version; retrain it")

    try:
        tok = ActionTokenizer.load(root / TOKENIZER_FILE)
    except TokenizerError as err:
        raise PolicyFileError(str(err)) from None
    if meta.get("tokenizer_sha256") != tok.sha256:
        raise PolicyFileError(
            f"{root / TOKENIZER_FILE}: sha256 {tok.sha256[:12]}... does not match field 'tokenizer_sha256' "
            f"({str(meta.get('tokenizer_sha256'))[:12]}...) of {cfg_path}: the tokenizer is not the model's")
    check_tokenizer_matches(cfg, tok, str(root / TOKENIZER_FILE))
    try:
        persona = PersonaSpace.load(root / PERSONA_FILE)
    except PersonaError as err:
        raise PolicyFileError(str(err)) from None
    if persona.dim != cfg.persona_dim:
        raise PolicyFileError(f"{root / PERSONA_FILE}: persona dim {persona.dim}, field 'persona_dim' of "
                              f"{cfg_path} is {cfg.persona_dim}")

    weights_path = root / WEIGHTS_FILE
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as err:
        raise PolicyFileError(f"{weights_path}: not a readable safetensors file ({err})") from None
    net = ListenerPolicy(cfg)
    expected = net.state_dict()
    for name, ref in expected.items():
        if name not in tensors:
            raise PolicyFileError(f"{weights_path}: missing tensor {name!r}")
        if tuple(tensors[name].shape) != tuple(ref.shape):
            raise PolicyFileError(f"{weights_path}: tensor {name!r} has shape {tuple(tensors[name].shape)}, "
                                  f"the architecture in {CONFIG_FILE} needs {tuple(ref.shape)}")
        if not torch.isfinite(tensors[name]).all():
            raise PolicyFileError(f"{weights_path}: tensor {name!r} contains NaN or inf")
    unexpected = sorted(set(tensors) - set(expected))
    if unexpected:
        raise PolicyFileError(f"{weights_path}: unexpected tensor(s) {unexpected[:5]}")
    net.load_state_dict(tensors)
    net.eval()
    calibration = None
    if CALIBRATION_FILE in listed:
        try:
            calibration = OutputCalibration.load(root / CALIBRATION_FILE)
        except CalibrationError as err:
            raise PolicyFileError(str(err)) from None
    return PolicyBundle(net, tok, cfg, persona, root, meta, calibration)


def add_calibration(model_dir: str | Path, calibration: OutputCalibration) -> Path:
    """Write ``calibration`` into a policy directory and list it in the manifest (replacing any)."""
    root = Path(model_dir)
    manifest_path = root / MANIFEST_FILE
    manifest = _read_json(manifest_path)
    if not isinstance(manifest.get("files"), dict):
        raise PolicyFileError(f"{manifest_path}: missing field 'files'")
    path = root / CALIBRATION_FILE
    calibration.save(path)
    manifest["files"][CALIBRATION_FILE] = file_sha256(path)
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return path


def check_inputs(inputs: dict[str, NDArray[Any]], cfg: PolicyConfig) -> dict[str, NDArray[np.float32]]:
    """Validate batched network inputs; returns them as contiguous float32 arrays."""
    shapes = cfg.input_shapes()
    missing = [n for n in INPUT_NAMES if n not in inputs]
    if missing:
        raise PolicyInputError(f"missing network input(s) {missing}")
    out: dict[str, NDArray[np.float32]] = {}
    batch = None
    for name in INPUT_NAMES:
        arr = np.ascontiguousarray(inputs[name], dtype=np.float32)
        if arr.ndim != 1 + len(shapes[name]) or arr.shape[1:] != shapes[name]:
            raise PolicyInputError(f"input {name!r} has shape {arr.shape}, expected (batch, "
                                   f"{', '.join(map(str, shapes[name]))})")
        if batch is None:
            batch = arr.shape[0]
        elif arr.shape[0] != batch:
            raise PolicyInputError(f"input {name!r} has batch {arr.shape[0]}, other inputs have {batch}")
        if not np.isfinite(arr).all():
            raise PolicyInputError(f"input {name!r} contains NaN or inf")
        out[name] = arr
    return out
