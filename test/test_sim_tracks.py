"""Speaker and listener tracks and whole conversations."""

import numpy as np
import pytest

from face_expr_ros.eval.affect import smile, valence
from face_expr_ros.expression import DIM, index, is_valid
from face_expr_ros.sim.conversation import generate_conversation
from face_expr_ros.sim.listeners import STYLES, listener_track, sample_listener, sample_params
from face_expr_ros.sim.scripts import EMOTIONS


def test_conversation_deterministic_byte_identical():
    a, b = generate_conversation(123), generate_conversation(123)
    assert a.speaker_track.tobytes() == b.speaker_track.tobytes()
    assert a.listener_track.tobytes() == b.listener_track.tobytes()
    assert a.metadata == b.metadata
    c = generate_conversation(124)
    assert c.listener_track.tobytes() != a.listener_track.tobytes()


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_conversation_split_and_duration(split):
    for seed in range(5):
        c = generate_conversation(seed, split=split)
        assert c.split == split == c.metadata["split"]
        assert 20.0 <= c.duration_s <= 120.0
        assert c.speaker_track.shape == c.listener_track.shape == (c.timeline.n_frames(), DIM)
        assert c.speaker_track.dtype == np.float32


def test_speaker_mouth_follows_speech():
    for seed in range(5):
        c = generate_conversation(seed)
        act = c.timeline.speech_activity().astype(float)
        jaw = c.speaker_track[:, index("jawOpen")]
        assert np.corrcoef(jaw, act)[0, 1] > 0.4
        assert jaw[act > 0].mean() > 3 * jaw[act == 0].mean()


def test_all_tracks_in_range():
    for seed in range(4):
        c = generate_conversation(seed)
        assert is_valid(c.speaker_track)
        for style in STYLES:
            params = sample_params(style, np.random.default_rng(seed))
            tr = listener_track(params, c.timeline, c.speaker_track, seed)
            assert is_valid(tr), style


def _emotion_means(style, seeds, fn):
    """Mean of fn(listener) over frames of each emotion, pooled over conversations."""
    acc = {e: [] for e in EMOTIONS}
    for s in seeds:
        c = generate_conversation(s, style=style)
        emo = c.timeline.emotion_index()
        val = fn(c.listener_track)
        shift = 30  # look one second after the speech, when reactions have built up
        for k, e in enumerate(EMOTIONS):
            m = np.roll(emo == k, shift)
            m[:shift] = False
            if m.any():
                acc[e].append(val[m])
    return {e: float(np.concatenate(v).mean()) for e, v in acc.items() if v}


def test_styles_react_to_affect_as_designed():
    seeds = range(12)
    att_val = _emotion_means("attentive", seeds, valence)
    inap_smile = _emotion_means("inappropriate", seeds, smile)
    att_smile = _emotion_means("attentive", seeds, smile)
    att_brow = _emotion_means("attentive", seeds, lambda x: x[:, index("browInnerUp")])
    res_val = _emotion_means("reserved", seeds, valence)
    # Attentive: smiles back at joy, concern (browInnerUp) and negative valence at sad news.
    assert att_val["joy"] > 0.15 and att_val["sadness"] < -0.05
    assert att_brow["sadness"] > att_brow["neutral"] + 0.15
    assert att_smile["joy"] > att_smile["sadness"] + 0.2
    # Inappropriate: smiles during sad speech, more than the attentive listener does.
    assert inap_smile["sadness"] > 0.25 and inap_smile["sadness"] > att_smile["sadness"] + 0.2
    # Reserved: same direction, smaller amplitude.
    assert 0 < res_val["joy"] < 0.6 * att_val["joy"]


def test_mistimed_is_jerkier_and_frozen_is_still():
    c = generate_conversation(7)
    rng = np.random.default_rng(0)
    tracks = {s: listener_track(sample_params(s, rng), c.timeline, c.speaker_track, 7) for s in STYLES}
    face = [i for i in range(52) if i not in (index("eyeBlinkLeft"), index("eyeBlinkRight"))]
    jerk = {s: np.mean(np.diff(t[:, face], n=3, axis=0) ** 2) for s, t in tracks.items()}
    motion = {s: np.abs(np.diff(t, axis=0)).mean() for s, t in tracks.items()}
    assert jerk["mistimed"] > 5 * jerk["attentive"]
    assert motion["frozen"] < 0.3 * motion["attentive"] < motion["mistimed"]


def test_style_mix_draws_every_style():
    rng = np.random.default_rng(0)
    drawn = {sample_listener(rng).style for _ in range(200)}
    assert drawn == set(STYLES)
