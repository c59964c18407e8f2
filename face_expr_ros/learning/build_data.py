"""Datasets from synthetic conversations: generation in parallel, shards, manifest.

Every conversation is a pure function of ``(base_seed + index)``, and the manifest records
nothing that depends on time or machine, so the same command gives byte-identical shards
whatever the number of worker processes.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from face_expr_ros import __version__
from face_expr_ros import expression as ex
from face_expr_ros.learning import shards
from face_expr_ros.perception import audio_features
from face_expr_ros.sim.conversation import Conversation as SimConversation
from face_expr_ros.sim.conversation import generate_conversation


@dataclass(frozen=True)
class SynthSpec:
    """What `face-expr data synth` makes; stored in the manifest as ``created_by``."""

    n_conversations: int
    seed: int = 0
    with_audio: bool = True
    style: str | None = None

    def seeds(self) -> range:
        return range(self.seed, self.seed + self.n_conversations)


def conversation_id(seed: int) -> str:
    return f"syn{seed:07d}"


def features_from_timeline(conv: SimConversation) -> audio_features.AudioFeatures:
    """Audio features of the speaker's speech, aligned with the 30 Hz tracks."""
    if conv.audio is None:
        raise ValueError(
            f"conversation {conv.seed} has no audio; generate it with with_audio=True "
            "(audio features are computed from real synthesised speech, as on the robot)"
        )
    return audio_features.compute(conv.audio, conv.timeline.sample_rate)


def shard_from_synthetic(conv: SimConversation) -> shards.Conversation:
    """A generated conversation in shard form (speech features computed from its audio)."""
    n = conv.speaker_track.shape[0]
    feats = features_from_timeline(conv)
    words = [(w.word, float(w.start), float(w.end)) for w in conv.timeline.words]
    arrays = {
        "speaker_expression": ex.clamp(conv.speaker_track),
        "speaker_face_present": np.ones(n, dtype=bool),
        "listener_expression": ex.clamp(conv.listener_track),
        "audio_logmel": shards.fit_frames(feats.log_mel.astype(np.float32), n),
        "audio_energy": shards.fit_frames(feats.rms_db.astype(np.float32), n),
        "audio_pitch": shards.fit_frames(feats.f0_hz.astype(np.float32), n),
        "audio_voiced": shards.fit_frames(feats.voiced_prob.astype(np.float32), n),
        "audio_vad": shards.fit_frames(feats.vad.astype(bool), n),
        "words_heard": shards.words_heard_per_frame(words, n),
    }
    metadata: dict[str, Any] = {**conv.metadata, "source": "synthetic", "has_listener": True,
                                "timeline": conv.timeline.to_dict()}
    return shards.Conversation(conversation_id(conv.seed), arrays, words, _jsonable(metadata))


def _jsonable(value: Any) -> Any:
    """Metadata as plain JSON types (numpy scalars and tuples become floats and lists)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float):
        return round(value, 6)
    return value


def _make_one(args: tuple[int, bool, str | None, str]) -> dict[str, Any]:
    seed, with_audio, style, folder = args
    conv = generate_conversation(seed, with_audio=with_audio, style=style)
    shard = shard_from_synthetic(conv)
    _, digest = shards.write_conversation(folder, shard)
    return {"id": shard.conversation_id, "split": conv.split, "sha256": digest,
            "style": conv.listener.style, "duration_s": round(conv.duration_s, 3),
            "script_id": int(conv.metadata["script_id"]), "speaker_id": int(conv.metadata["speaker_id"])}


def synthesize_dataset(folder: str | Path, spec: SynthSpec, workers: int = 2,
                       progress: bool = True) -> shards.Manifest:
    """Generate ``spec.n_conversations`` conversations into ``folder`` and write the manifest."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(s, spec.with_audio, spec.style, str(folder)) for s in spec.seeds()]
    entries = sorted(_run_jobs(jobs, workers, progress), key=lambda e: e["id"])
    created_by = {"command": "face-expr data synth", "face_expr_ros": __version__,
                  "n_conversations": spec.n_conversations, "seed": spec.seed,
                  "with_audio": spec.with_audio, "style": spec.style, "schema_version": shards.SCHEMA_VERSION}
    manifest = shards.Manifest(created_by, entries)
    shards.write_manifest(folder, manifest)
    return manifest


def _run_jobs(jobs: list[tuple[int, bool, str | None, str]], workers: int, progress: bool) -> Iterator[dict]:
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc="conversations", unit="conv", disable=not progress)
    if workers <= 1:
        for job in jobs:
            yield _make_one(job)
            bar.update()
    else:
        # fork keeps start-up cheap; each job only reads module state.
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            for entry in pool.imap_unordered(_make_one, jobs):
                yield entry
                bar.update()
    bar.close()
