"""Dataset shards: one conversation per file, per-frame arrays at 30 Hz, a versioned schema.

A dataset is a folder with ``manifest.json`` (schema version, how it was made, one entry per
conversation with its split and content hash) and one ``<conversation_id>.npz`` per
conversation. Every file is checked against ``SCHEMA`` when read: a version, field, dtype or
shape mismatch is an error naming the file and the field, never a silent misread.

Synthetic and real data share this format; ``listener_expression`` is absent (all NaN is not
allowed) only in real recordings without a listener video, where ``has_listener`` is False.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from face_expr_ros import expression as ex

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class FieldSpec:
    dtype: str
    trailing: tuple[int | str, ...]  # per-frame shape; a string is a size fixed per dataset
    meaning: str


# Per-frame arrays, all with T rows (frame k covers time k / 30 s).
SCHEMA: dict[str, FieldSpec] = {
    "speaker_expression": FieldSpec("float32", (ex.DIM,), "speaker's 55-d expression"),
    "speaker_face_present": FieldSpec("bool", (), "the speaker's face is visible"),
    "listener_expression": FieldSpec("float32", (ex.DIM,), "listener's 55-d expression (the actions)"),
    "audio_logmel": FieldSpec("float32", ("n_mels",), "log-mel energies of the speaker's audio"),
    "audio_energy": FieldSpec("float32", (), "RMS energy in dB"),
    "audio_pitch": FieldSpec("float32", (), "F0 in Hz, 0 when unvoiced"),
    "audio_voiced": FieldSpec("float32", (), "probability that the frame is voiced"),
    "audio_vad": FieldSpec("bool", (), "voice activity"),
    "words_heard": FieldSpec("int32", (), "number of transcript words ended by this frame"),
}


class ShardError(ValueError):
    """A shard or dataset that does not match the schema; the text names file and field."""


@dataclass
class Conversation:
    """One conversation in shard form: per-frame arrays plus metadata and word timings."""

    conversation_id: str
    arrays: dict[str, NDArray[Any]]
    words: list[tuple[str, float, float]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return int(self.arrays["speaker_expression"].shape[0])

    def transcript_until(self, frame: int) -> str:
        """The running transcript: every word that ended by ``frame``."""
        n = int(self.arrays["words_heard"][frame])
        return " ".join(w for w, _, _ in self.words[:n])


def fit_frames(values: NDArray[Any], n: int) -> NDArray[Any]:
    """Trim or edge-pad a per-frame array to ``n`` frames, keeping its dtype (zeros when empty).

    Streams framed separately (video, audio features) can differ by a frame at the end.
    """
    if len(values) >= n:
        return values[:n]
    pad = np.repeat(values[-1:], n - len(values), axis=0) if len(values) else np.zeros((n, *values.shape[1:]))
    return np.concatenate([values, pad.astype(values.dtype)])


def words_heard_per_frame(words: list[tuple[str, float, float]], n_frames: int,
                          fps: float = ex.FPS) -> NDArray[np.int32]:
    ends = np.sort(np.array([end for _, _, end in words], dtype=np.float64))
    times = np.arange(n_frames) / fps
    return np.searchsorted(ends, times, side="right").astype(np.int32)


def validate(conv: Conversation, source: str = "conversation") -> dict[str, int]:
    """Check arrays against SCHEMA; returns the dataset-level sizes (e.g. n_mels)."""
    sizes: dict[str, int] = {}
    missing = [k for k in SCHEMA if k not in conv.arrays]
    extra = [k for k in conv.arrays if k not in SCHEMA]
    if missing or extra:
        raise ShardError(f"{source}: fields missing {missing}, unexpected {extra}")
    n = conv.n_frames
    for name, spec in SCHEMA.items():
        arr = conv.arrays[name]
        if arr.dtype != np.dtype(spec.dtype):
            raise ShardError(f"{source}: field {name!r} has dtype {arr.dtype}, schema says {spec.dtype}")
        if arr.ndim != 1 + len(spec.trailing) or arr.shape[0] != n:
            raise ShardError(f"{source}: field {name!r} has shape {arr.shape}, expected ({n}, *{spec.trailing})")
        for got, want in zip(arr.shape[1:], spec.trailing):
            if isinstance(want, str):
                if sizes.setdefault(want, got) != got:
                    raise ShardError(f"{source}: field {name!r}: {want}={got}, elsewhere {sizes[want]}")
            elif got != want:
                raise ShardError(f"{source}: field {name!r} has shape {arr.shape}, expected ({n}, *{spec.trailing})")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise ShardError(f"{source}: field {name!r} contains NaN or inf")
    return sizes


def _deterministic_npz(arrays: Mapping[str, NDArray[Any]]) -> bytes:
    """An .npz whose bytes depend only on the arrays (fixed zip timestamps and order)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            payload = io.BytesIO()
            np.lib.format.write_array(payload, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            archive.writestr(info, payload.getvalue())
    return buffer.getvalue()


def _meta_array(payload: Mapping[str, Any]) -> NDArray[np.uint8]:
    return np.frombuffer(json.dumps(payload, sort_keys=True).encode(), dtype=np.uint8)


def write_conversation(folder: str | Path, conv: Conversation) -> tuple[Path, str]:
    """Write one shard; returns its path and sha256."""
    validate(conv, conv.conversation_id)
    data = dict(conv.arrays)
    data["__meta__"] = _meta_array({
        "schema_version": SCHEMA_VERSION, "conversation_id": conv.conversation_id,
        "metadata": conv.metadata, "words": [[w, round(s, 4), round(e, 4)] for w, s, e in conv.words],
    })
    blob = _deterministic_npz(data)
    path = Path(folder) / f"{conv.conversation_id}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)
    return path, hashlib.sha256(blob).hexdigest()


def read_conversation(path: str | Path) -> Conversation:
    """Read and check one shard."""
    path = Path(path)
    if not path.is_file():
        raise ShardError(f"shard not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise ShardError(f"{path}: not a readable shard ({err})") from None
    if "__meta__" not in arrays:
        raise ShardError(f"{path}: no __meta__ record; not a face_expr_ros shard")
    meta = json.loads(arrays.pop("__meta__").tobytes().decode())
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ShardError(
            f"{path}: schema version {version}, this face_expr_ros reads version {SCHEMA_VERSION}; "
            "rebuild the dataset with `face-expr data synth` or `face-expr data build`"
        )
    conv = Conversation(meta["conversation_id"], arrays, [tuple(w) for w in meta["words"]], meta["metadata"])
    validate(conv, str(path))
    return conv


@dataclass
class Manifest:
    """What a dataset folder holds and how it was made."""

    created_by: dict[str, Any]
    conversations: list[dict[str, Any]] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    def entries(self, split: str | None = None) -> list[dict[str, Any]]:
        """The manifest rows of ``split`` (all rows for None)."""
        if split is not None and split not in SPLITS:
            raise ShardError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        return [c for c in self.conversations if split is None or c["split"] == split]

    def ids(self, split: str | None = None) -> list[str]:
        return [c["id"] for c in self.entries(split)]

    def fingerprints(self, split: str | None = None) -> list[str]:
        """Short content hashes (16 hex digits of each shard's sha256) of ``split``, sorted.

        Shards are written byte-for-byte deterministically, so the same conversation has the same
        fingerprint in any dataset folder: this is how ``face-expr eval`` recognises conversations a
        model was trained on even when they sit in another folder under another split.
        """
        return sorted(c["sha256"][:16] for c in self.entries(split))

    def data_hash(self) -> str:
        """One hash over every shard's hash: identifies the data a model was trained on."""
        joined = "".join(sorted(c["sha256"] for c in self.conversations))
        return hashlib.sha256(joined.encode()).hexdigest()


def write_manifest(folder: str | Path, manifest: Manifest) -> Path:
    path = Path(folder) / MANIFEST
    payload = {"schema_version": manifest.schema_version, "created_by": manifest.created_by,
               "data_hash": manifest.data_hash(), "conversations": manifest.conversations}
    path.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")
    return path


def read_manifest(folder: str | Path) -> Manifest:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise ShardError(f"no {MANIFEST} in {folder}: not a dataset folder")
    try:
        payload = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ShardError(f"{path}: not valid JSON ({err})") from None
    if payload.get("schema_version") != SCHEMA_VERSION:
        raise ShardError(
            f"{path}: schema version {payload.get('schema_version')}, this face_expr_ros reads "
            f"version {SCHEMA_VERSION}; rebuild the dataset"
        )
    return Manifest(payload["created_by"], payload["conversations"])


def iter_conversations(folder: str | Path, split: str | None = None) -> Iterator[Conversation]:
    folder = Path(folder)
    for conversation_id in read_manifest(folder).ids(split):
        yield read_conversation(folder / f"{conversation_id}.npz")
