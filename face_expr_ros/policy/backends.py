"""Inference back-ends behind one interface: PyTorch (reference), ONNX Runtime (CPU), TensorRT (GPU).

A back-end maps numpy inputs to numpy logits in two calls, ``encode(inputs) -> (h, code_logits)``
and ``head(h, code) -> (base_logits, delta_logits)``; sampling is done by the caller
(``sampling.py``), so back-ends are interchangeable and comparable token for token.

TensorRT engines are built from the same ONNX files and cached under ``engines/``; the file name
is keyed by the ONNX file's sha256, the TensorRT version, the GPU name and the precision, so an
engine is rebuilt whenever any of them changes (a TensorRT engine is only valid for the exact
TensorRT version and GPU model it was built on). A timing cache (shared by all builds on the
same GPU and TensorRT version) makes rebuilds faster.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from face_expr_ros.policy.export import ENCODER_FILE, ENCODER_OUTPUTS, HEAD_FILE, HEAD_OUTPUTS, file_sha256
from face_expr_ros.policy.network import INPUT_NAMES

F32 = NDArray[np.float32]
I64 = NDArray[np.int64]
BACKENDS = ("torch", "onnxruntime", "tensorrt")


class Backend(Protocol):
    name: str

    def encode(self, inputs: dict[str, F32]) -> tuple[F32, F32]: ...

    def head(self, h: F32, code: I64) -> tuple[F32, F32]: ...


class TorchBackend:
    """The reference: the PyTorch module in eval mode, no autograd."""

    name = "torch"

    def __init__(self, net: Any, threads: int | None = None) -> None:
        import torch

        self._torch = torch
        if threads is not None:
            torch.set_num_threads(threads)
        self.net = net.eval()

    def encode(self, inputs: dict[str, F32]) -> tuple[F32, F32]:
        torch = self._torch
        with torch.inference_mode():
            h, c = self.net.encode(*(torch.from_numpy(np.ascontiguousarray(inputs[n])) for n in INPUT_NAMES))
        return h.numpy(), c.numpy()

    def head(self, h: F32, code: I64) -> tuple[F32, F32]:
        torch = self._torch
        with torch.inference_mode():
            b, d = self.net.head(torch.from_numpy(np.ascontiguousarray(h)), torch.from_numpy(code.astype(np.int64)))
        return b.numpy(), d.numpy()


class OnnxRuntimeBackend:
    """ONNX Runtime on the CPU; ``threads`` intra-op threads (2 suits a 2-core robot computer)."""

    name = "onnxruntime"

    def __init__(self, model_dir: str | Path, threads: int = 2, providers: list[str] | None = None) -> None:
        import onnxruntime as ort

        model_dir = Path(model_dir)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # No busy-waiting workers: on a 2-core robot computer a spinning ORT thread steals the core
        # that the numpy sampling right after the graph needs (measured: median 2 ms -> 10 ms).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = providers or ["CPUExecutionProvider"]
        self.sessions = {}
        for key, file in (("encode", ENCODER_FILE), ("head", HEAD_FILE)):
            path = model_dir / file
            if not path.is_file():
                raise FileNotFoundError(f"ONNX file not found: {path} (export it with face_expr_ros.policy.export)")
            try:
                self.sessions[key] = ort.InferenceSession(str(path), opts, providers=providers)
            except Exception as err:  # noqa: BLE001 - ORT raises several private exception types
                raise ValueError(f"{path}: ONNX Runtime cannot load it ({err})") from None

    def encode(self, inputs: dict[str, F32]) -> tuple[F32, F32]:
        h, c = self.sessions["encode"].run(list(ENCODER_OUTPUTS), {n: inputs[n] for n in INPUT_NAMES})
        return h, c

    def head(self, h: F32, code: I64) -> tuple[F32, F32]:
        b, d = self.sessions["head"].run(list(HEAD_OUTPUTS), {"h": h, "code": code.astype(np.int64)})
        return b, d


# --------------------------------------------------------------------------- TensorRT
def engine_cache_key(onnx_sha256: str, trt_version: str, gpu_name: str, fp16: bool) -> str:
    """File-name-safe key: any change of ONNX content, TensorRT version, GPU or precision differs."""
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", gpu_name).strip("-").lower() or "unknown-gpu"
    ver = re.sub(r"[^A-Za-z0-9.]+", "-", trt_version)
    return f"{onnx_sha256[:16]}-trt{ver}-{gpu}-{'fp16' if fp16 else 'fp32'}"


class EngineCache:
    """Engines under ``root`` (default ``engines/``), one file per cache key, plus a timing cache.

    ``get_or_build`` returns the serialized engine for an ONNX file, calling ``build`` only when no
    engine with the same key exists; it also removes stale engines of the same ONNX stem so the
    folder does not grow without bound after model updates.
    """

    def __init__(self, root: str | Path, trt_version: str, gpu_name: str) -> None:
        self.root = Path(root)
        self.trt_version, self.gpu_name = trt_version, gpu_name

    def engine_path(self, onnx_path: str | Path, fp16: bool) -> Path:
        onnx_path = Path(onnx_path)
        key = engine_cache_key(file_sha256(onnx_path), self.trt_version, self.gpu_name, fp16)
        return self.root / f"{onnx_path.stem}-{key}.engine"

    @property
    def timing_cache_path(self) -> Path:
        # Timings depend on the GPU and TensorRT version only, so every model shares one cache.
        key = engine_cache_key("", self.trt_version, self.gpu_name, False).removeprefix("-").removesuffix("-fp32")
        return self.root / f"timing-{key}.cache"

    def get_or_build(self, onnx_path: str | Path, fp16: bool,
                     build: Callable[[Path, bool, Path], bytes]) -> tuple[bytes, bool]:
        """(serialized engine, built now?); ``build(onnx_path, fp16, timing_cache_path)``."""
        path = self.engine_path(onnx_path, fp16)
        if path.is_file() and path.stat().st_size > 0:
            return path.read_bytes(), False
        self.root.mkdir(parents=True, exist_ok=True)
        blob = build(Path(onnx_path), fp16, self.timing_cache_path)
        for stale in self.root.glob(f"{Path(onnx_path).stem}-*-{'fp16' if fp16 else 'fp32'}.engine"):
            stale.unlink()
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(blob)
        tmp.replace(path)  # atomic: a crash mid-write never leaves a truncated engine under the key
        path.with_suffix(".json").write_text(json.dumps({
            "onnx": str(onnx_path), "onnx_sha256": file_sha256(onnx_path), "tensorrt": self.trt_version,
            "gpu": self.gpu_name, "fp16": fp16}, indent=1) + "\n")
        return blob, True


def tensorrt_available() -> bool:
    """TensorRT importable and a CUDA device visible (through torch, which we already depend on)."""
    if importlib.util.find_spec("tensorrt") is None:
        return False
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - a broken CUDA install must mean "not available", not a crash
        return False


def select_backend(requested: str = "auto", *, trt_ok: bool | None = None) -> str:
    """Back-end name for ``requested`` in ``auto | torch | onnxruntime | tensorrt``.

    ``auto`` picks TensorRT when it is importable and a GPU is visible, else ONNX Runtime.
    Asking for ``tensorrt`` explicitly on a machine without it is an error, not a silent fallback.
    """
    ok = tensorrt_available() if trt_ok is None else trt_ok
    if requested == "auto":
        return "tensorrt" if ok else "onnxruntime"
    if requested not in BACKENDS:
        raise ValueError(f"unknown back-end {requested!r}; use auto or one of {', '.join(BACKENDS)}")
    if requested == "tensorrt" and not ok:
        raise RuntimeError("back-end 'tensorrt' requested but TensorRT or a CUDA GPU is not available; "
                           "use 'onnxruntime'")
    return requested


def build_tensorrt_engine(onnx_path: Path, fp16: bool, timing_cache_path: Path, max_batch: int = 8,
                          workspace_bytes: int = 1 << 28) -> bytes:  # pragma: no cover - needs a GPU
    """Serialized TensorRT 10 engine for one ONNX file (batch profile 1 .. ``max_batch``)."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"{onnx_path}: TensorRT cannot parse it: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    cache_blob = timing_cache_path.read_bytes() if timing_cache_path.is_file() else b""
    timing_cache = config.create_timing_cache(cache_blob)
    config.set_timing_cache(timing_cache, ignore_mismatch=False)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        rest = tuple(tensor.shape)[1:]
        profile.set_shape(tensor.name, (1, *rest), (1, *rest), (max_batch, *rest))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"{onnx_path}: TensorRT engine build failed")
    timing_cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    return bytes(serialized)


class _TrtGraph:  # pragma: no cover - needs a GPU
    """One deserialized engine with torch CUDA tensors as its I/O buffers."""

    def __init__(self, blob: bytes, logger: Any) -> None:
        import tensorrt as trt
        import torch

        self.torch, self.trt = torch, trt
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(blob)
        if self.engine is None:
            raise RuntimeError("TensorRT could not deserialize the cached engine; delete it to rebuild")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        torch = self.torch
        keep = []
        with torch.cuda.stream(self.stream):
            for name in self.inputs:
                t = torch.from_numpy(np.ascontiguousarray(feeds[name])).cuda(non_blocking=True)
                keep.append(t)
                self.context.set_input_shape(name, tuple(t.shape))
                self.context.set_tensor_address(name, t.data_ptr())
            outs = []
            for name in self.outputs:
                shape = tuple(self.context.get_tensor_shape(name))
                dtype = torch.float32 if self.engine.get_tensor_dtype(name) == self.trt.float32 else torch.float16
                out = torch.empty(shape, dtype=dtype, device="cuda")
                self.context.set_tensor_address(name, out.data_ptr())
                outs.append(out)
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed")
        self.stream.synchronize()
        return [o.float().cpu().numpy() for o in outs]


class TensorRTBackend:  # pragma: no cover - needs a GPU
    """TensorRT 10 engines built from the policy's two ONNX files, cached by ``EngineCache``."""

    name = "tensorrt"

    def __init__(self, model_dir: str | Path, engines_dir: str | Path = "engines", fp16: bool = False) -> None:
        import tensorrt as trt
        import torch

        model_dir = Path(model_dir)
        self.logger = trt.Logger(trt.Logger.WARNING)
        cache = EngineCache(engines_dir, trt.__version__, torch.cuda.get_device_name(0))
        self.graphs = {}
        for key, file in (("encode", ENCODER_FILE), ("head", HEAD_FILE)):
            blob, _ = cache.get_or_build(model_dir / file, fp16, build_tensorrt_engine)
            self.graphs[key] = _TrtGraph(blob, self.logger)

    def encode(self, inputs: dict[str, F32]) -> tuple[F32, F32]:
        out = dict(zip(self.graphs["encode"].outputs, self.graphs["encode"].run(inputs)))
        return out["h"], out["code_logits"]

    def head(self, h: F32, code: I64) -> tuple[F32, F32]:
        out = dict(zip(self.graphs["head"].outputs, self.graphs["head"].run({"h": h, "code": code})))
        return out["base_logits"], out["delta_logits"]
