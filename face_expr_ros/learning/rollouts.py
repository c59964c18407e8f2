"""The policy's own listener tracks over recorded conversations, to train the next policy on.

Behaviour cloning trains on histories the network never produces itself: at run time the
``listener_past`` input is the policy's own output, which is quieter and differently timed than
any recorded listener. Trained on recorded histories, the network reads its own quiet past as
"this listener is quiet" and stays quiet: its errors compound (Ross, Gordon & Bagnell,
AISTATS 2011, the argument for DAgger). DAgger's cure is to visit the states the learner
reaches and label them with the expert's action. Here the expert (the recorded listener) cannot
be queried again, but its actions do not depend on what our policy did, so the recorded
continuation is a fair label for any history: a window whose history comes from a rollout and
whose target is the recording teaches "whatever you have been doing, do what this person does
next" (the same pairing as data-as-demonstrator, Venkatraman, Hebert & Bagnell, AAAI 2015, and
scheduled sampling, Bengio et al., NeurIPS 2015).

A rollout plays one conversation closed loop, frame by frame through the streaming runtime, as
that conversation's own listener (its persona, ``persona.py``), with the runtime's sampling
settings. The file is an ``.npz`` with one (frames, 55) array per conversation id and a JSON
``meta`` entry naming the policy and the data it came from.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from face_expr_ros import expression as ex
from face_expr_ros.learning.shards import Conversation, Manifest, iter_conversations, read_manifest

F32 = NDArray[np.float32]
META = "meta"


class RolloutError(ValueError):
    """A rollout file that cannot serve the conversations it is asked for."""


def open_playback(model_dir: str | Path, data: str | Path, split: str, backend: str = "onnxruntime",
                  **policy_kwargs: float | str) -> tuple[Any, Any, list[Conversation]]:
    """What playing a split closed loop needs: the policy in ``model_dir`` (one thread,
    *uncalibrated*: the frames its network reads back, ``runtime.Policy.step``), the transcript
    embedder it was trained with, and the split's conversations that have a listener."""
    from face_expr_ros.eval.evaluate import TranscriptEmbedder, trained_text_mode
    from face_expr_ros.perception.text_encoder import TextEncoder, default_encoder_dir
    from face_expr_ros.policy.runtime import Policy

    policy = Policy.load(model_dir, backend, threads=1, calibrate=False, **policy_kwargs)
    minilm = trained_text_mode(model_dir) == "minilm"
    embedder = TranscriptEmbedder(TextEncoder.ensure(default_encoder_dir()) if minilm else None)
    conversations = [c for c in iter_conversations(data, split) if c.metadata.get("has_listener", True)]
    if not conversations:
        raise RolloutError(f"{data}: no conversations with a listener in split {split!r}")
    return policy, embedder, conversations


def collect_rollouts(model_dir: str | Path, data: str | Path, split: str = "train", seed: int = 0,
                     backend: str = "onnxruntime", progress: bool = True) -> tuple[dict[str, F32], dict[str, object]]:
    """Play every conversation of ``split`` (those with a listener) through the policy in
    ``model_dir`` as its own recorded listener; returns the tracks by conversation id and the
    metadata to store beside them."""
    from tqdm import tqdm

    from face_expr_ros.eval.evaluate import run_policy

    policy, embedder, conversations = open_playback(model_dir, data, split, backend)
    tracks: dict[str, F32] = {}
    for k, conv in enumerate(tqdm(conversations, desc=f"rollouts ({split})", unit="conv", disable=not progress)):
        persona = policy.persona_space.embed(conv.arrays["listener_expression"], conv.arrays["speaker_expression"])
        tracks[conv.conversation_id] = run_policy(policy, conv, embedder.rows(conv), seed + k, policy.temperature,
                                                  persona=persona)
    manifest = read_manifest(data)
    meta = {"model": str(model_dir), "data": str(data), "data_hash": manifest.data_hash(),
            "shards": shard_fingerprints(manifest, split),
            "split": split, "seed": seed, "backend": backend, "temperature": policy.temperature,
            "token_temperature": policy.token_temperature}
    return tracks, meta


def shard_fingerprints(manifest: Manifest, split: str) -> dict[str, str]:
    """Conversation id -> the content fingerprint of its shard (``Manifest.fingerprints``)."""
    return {c["id"]: c["sha256"][:16] for c in manifest.entries(split)}


def save_rollouts(path: str | Path, tracks: dict[str, F32], meta: dict[str, object]) -> None:
    if META in tracks:
        raise RolloutError(f"a conversation may not be called {META!r}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **tracks, **{META: np.array(json.dumps(meta))})


def load_rollouts(path: str | Path, conversations: Sequence[Conversation],
                  fingerprints: dict[str, str] | None = None) -> list[F32]:
    """The rollout track of each of ``conversations``, in order; every one must be present, as long
    as its conversation, (frames, 55) and finite, and, given the conversations' shard
    ``fingerprints``, played on the same content (a file from other data that reuses the ids)."""
    path = Path(path)
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise RolloutError(f"{path}: not a readable rollout file ({err})") from None
    with npz:
        if META not in npz.files:
            raise RolloutError(f"{path}: no '{META}' entry; write it with `face-expr rollout`")
        played = json.loads(str(npz[META])).get("shards", {})
        out = []
        for conv in conversations:
            cid = conv.conversation_id
            if fingerprints is not None and cid in played and played[cid] != fingerprints.get(cid):
                raise RolloutError(f"{path}: track {cid} was played on another version of that conversation "
                                   f"(shard {played[cid]}, here {fingerprints.get(cid)})")
            if cid not in npz.files:
                raise RolloutError(f"{path}: no track for conversation {cid}; the file was made from other data "
                                   f"({json.loads(str(npz[META]))['data']})")
            track = npz[cid]
            if track.shape != (conv.n_frames, ex.DIM) or not np.isfinite(track).all():
                raise RolloutError(f"{path}: track {cid} has shape {track.shape} or non-finite values; expected "
                                   f"({conv.n_frames}, {ex.DIM}), finite")
            out.append(track.astype(np.float32))
    return out
