"""One synthetic dyadic conversation: script, speaker, timeline, faces and listener.

:func:`generate_conversation` is a pure function of its arguments: the same seed gives
byte-identical arrays. The split is chosen first (from the seed, unless given), then a
script and a speaker from that split's pools (:func:`~face_expr_ros.sim.scripts.split_pools`),
so that splits are disjoint by script and by speaker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from face_expr_ros.expression import FPS
from face_expr_ros.sim.listeners import ListenerParams, listener_track, sample_listener
from face_expr_ros.sim.scripts import (
    SPLIT_FRACTIONS,
    SPLITS,
    Script,
    SpeakerProfile,
    make_script,
    split_of,
    split_pools,
)
from face_expr_ros.sim.speaker import speaker_track
from face_expr_ros.sim.speech import Timeline, model_timeline, synthesize_timeline


@dataclass
class Conversation:
    """A generated conversation. Tracks are float32 (T, 55) at ``FPS``; audio is in the timeline."""

    seed: int
    split: str
    script: Script
    speaker: SpeakerProfile
    timeline: Timeline
    speaker_track: NDArray[np.float32] = field(repr=False)
    listener: ListenerParams
    listener_track: NDArray[np.float32] = field(repr=False)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return self.timeline.duration_s

    @property
    def audio(self) -> NDArray[np.int16] | None:
        return self.timeline.audio

    def relisten(self, params: ListenerParams, seed: int | None = None) -> NDArray[np.float32]:
        """Another listener's track in this same context (e.g. for preference pairs)."""
        return listener_track(params, self.timeline, self.speaker_track, self.seed if seed is None else seed)


def generate_conversation(
    seed: int,
    *,
    split: str | None = None,
    with_audio: bool = False,
    style: str | None = None,
    style_mix: dict[str, float] | None = None,
    script_id: int | None = None,
    speaker_id: int | None = None,
) -> Conversation:
    """Generate conversation ``seed``.

    ``split``: 'train'/'val'/'test' or None (drawn 80/10/10 from the seed). ``with_audio``
    runs espeak-ng (slow path); otherwise word timings come from the duration model.
    ``style``: force a listener style, else drawn from ``style_mix``
    (default :data:`~face_expr_ros.sim.listeners.DEFAULT_STYLE_MIX`). ``script_id`` /
    ``speaker_id`` override the draws (then the split is reported as whatever they imply).
    """
    rng = np.random.default_rng([seed, 0xC0DE])
    if split is None:
        split = SPLITS[int(rng.choice(len(SPLITS), p=np.array(SPLIT_FRACTIONS)))]
    else:
        rng.random()  # keep the draw sequence independent of whether split was given
    pools = split_pools(split)
    # Both draws are always made so that overriding one id does not change the other draws.
    drawn_script = int(pools.script_ids[int(rng.integers(len(pools.script_ids)))])
    drawn_speaker = int(pools.speaker_ids[int(rng.integers(len(pools.speaker_ids)))])
    sid = drawn_script if script_id is None else script_id
    spk = drawn_speaker if speaker_id is None else speaker_id
    script = make_script(sid)
    profile = SpeakerProfile.from_id(spk)
    sub = int(rng.integers(2**31))
    timeline = (synthesize_timeline if with_audio else model_timeline)(script.utterances, profile, sub)
    s_track = speaker_track(timeline, profile, sub, audio=timeline.audio)
    params = sample_listener(rng, style=style, mix=style_mix)
    l_track = listener_track(params, timeline, s_track, sub)
    meta = {
        "seed": seed,
        "split": split if (script_id is None and speaker_id is None) else split_of(sid, spk),
        "script_id": sid,
        "speaker_id": spk,
        "listener_style": params.style,
        "listener_params": params.to_dict(),
        "duration_s": timeline.duration_s,
        "n_frames": timeline.n_frames(FPS),
        "fps": FPS,
        "with_audio": with_audio,
        "emotions": [u.emotion for u in timeline.utterances],
    }
    return Conversation(seed, str(meta["split"]), script, profile, timeline, s_track, params, l_track, meta)
