"""Baselines: shapes, validity, determinism, and that each does what its definition says."""

from __future__ import annotations

import numpy as np
import pytest

from face_expr_ros import expression as ex
from face_expr_ros.eval import baselines as B
from face_expr_ros.learning import shards
from face_expr_ros.sim.listeners import listener_track, sample_params
from face_expr_ros.sim.scripts import SpeakerProfile, Utterance
from face_expr_ros.sim.speaker import speaker_track
from face_expr_ros.sim.speech import model_timeline

N_MELS = 8
_SENTENCES = (
    ("I finally got the job, I start on Monday!", "joy", False),
    ("But my old boss was so angry with me...", "anger", False),
    ("Can you believe that?", "surprise", True),
    ("My grandmother is ill, and we are worried.", "sadness", False),
)


def tiny_conversation(seed: int, style: str = "attentive", n_utterances: int = 2, split: str = "test",
                      with_timeline: bool = True) -> shards.Conversation:
    """A short synthetic conversation (a few seconds) built from the simulator's parts.

    Audio features are fake but tied to speech activity (louder while a word is spoken), so
    retrieval on audio has something to find.
    """
    rng = np.random.default_rng(seed)
    picks = [_SENTENCES[(seed + k) % len(_SENTENCES)] for k in range(n_utterances)]
    utts = [Utterance(f"u{k}", 0, k, text, emo, q, False) for k, (text, emo, q) in enumerate(picks)]
    profile = SpeakerProfile.from_id(seed % 7)
    timeline = model_timeline(utts, profile, seed)
    speaker = ex.clamp(speaker_track(timeline, profile, seed))
    listener = ex.clamp(listener_track(sample_params(style, rng), timeline, speaker, seed))
    n = len(speaker)
    active = timeline.speech_activity()[:n]
    words = [(w.word, float(w.start), float(w.end)) for w in timeline.words]
    arrays = {
        "speaker_expression": speaker.astype(np.float32),
        "speaker_face_present": np.ones(n, bool),
        "listener_expression": listener.astype(np.float32),
        "audio_logmel": (rng.normal(-8.0, 1.0, (n, N_MELS)) + 5.0 * active[:, None]).astype(np.float32),
        "audio_energy": np.where(active, -25.0, -70.0).astype(np.float32),
        "audio_pitch": np.where(active, 140.0, 0.0).astype(np.float32),
        "audio_voiced": active.astype(np.float32),
        "audio_vad": active.copy(),
        "words_heard": shards.words_heard_per_frame(words, n),
    }
    meta = {"has_listener": True, "listener_style": style, "split": split, "source": "synthetic"}
    if with_timeline:
        meta["timeline"] = timeline.to_dict()
    return shards.Conversation(f"tiny{seed:03d}", arrays, words, meta)


@pytest.fixture(scope="module")
def train():
    return [tiny_conversation(s, style) for s, style in zip(range(10, 16), ["attentive", "reserved"] * 3)]


@pytest.fixture(scope="module")
def test_conv():
    return tiny_conversation(3, "mistimed")


def test_every_baseline_gives_a_valid_track_of_the_right_length(train, test_conv):
    for b in B.make_baselines(train):
        track = b.generate(test_conv, seed=0)
        assert track.shape == (test_conv.n_frames, ex.DIM), b.name
        assert ex.is_valid(track), b.name
        np.testing.assert_array_equal(track, b.generate(test_conv, seed=0))  # deterministic in the seed
        if not b.deterministic:
            assert not np.array_equal(track, b.generate(test_conv, seed=1)), b.name


def test_random_from_train_plays_real_training_frames(train, test_conv):
    b = B.RandomFromTrain([c.arrays["listener_expression"] for c in train[:2]])
    track = b.generate(test_conv, seed=4)
    pool = np.concatenate([c.arrays["listener_expression"] for c in train[:2]])
    # Every generated frame is one of the training frames.
    d = ((track[:, None, :] - pool[None, :, :]) ** 2).sum(-1).min(axis=1)
    assert d.max() == 0.0
    # Longer than any training track: stitched from several stretches.
    short = B.RandomFromTrain([train[0].arrays["listener_expression"][:50]])
    assert short.generate(test_conv).shape == (test_conv.n_frames, ex.DIM)


def test_nearest_neighbour_retrieves_the_training_listener_for_a_training_context(train):
    nn = B.NearestNeighbour.fit(train, stride=1)
    conv = train[2]
    track = nn.generate(conv)
    # On a training conversation the nearest context is (almost always) its own, so it plays back
    # its own listener: much closer than the other training listeners are.
    own = np.abs(track - conv.arrays["listener_expression"]).mean()
    other = np.abs(track - B.fit_length(train[3].arrays["listener_expression"], conv.n_frames)).mean()
    assert own < 0.3 * other
    with pytest.raises(ValueError):
        B.NearestNeighbour.fit([])


def test_nearest_neighbour_features_are_causal(train):
    conv = train[0]
    s, a = conv.arrays["speaker_expression"], np.ones((conv.n_frames, 3), np.float32)
    f = B.context_features(s, a, window=10)
    changed = s.copy()
    changed[60:] += 0.1
    g = B.context_features(changed, a, window=10)
    np.testing.assert_array_equal(f[:60], g[:60])  # the future does not leak into the past
    np.testing.assert_allclose(f[30, :ex.DIM], s[21:31].mean(0), atol=1e-6)


def test_mirror_is_a_delayed_scaled_mirror_image_without_speech(test_conv):
    m = B.Mirror(delay_s=0.5, gain=0.6, head_gain=0.3)
    out = m.generate(test_conv)
    s = test_conv.arrays["speaker_expression"]
    d = 15
    left, right = ex.index("mouthSmileLeft"), ex.index("mouthSmileRight")
    np.testing.assert_allclose(out[d:, left], 0.6 * s[:-d, right], atol=1e-6)  # left copies right, 0.5 s late
    assert np.abs(out[:d, :ex.N_BLENDSHAPES]).max() == 0.0
    assert np.abs(out[:, ex.index("jawOpen")]).max() == 0.0  # the listener does not "speak"
    yaw = ex.index("headYaw")
    assert out[:, yaw].std() == pytest.approx(0.3 * s[:-d, yaw].std(), rel=0.05)


def test_mirror_holds_the_last_face_when_it_is_lost(test_conv):
    conv = shards.Conversation(test_conv.conversation_id, dict(test_conv.arrays), test_conv.words,
                               test_conv.metadata)
    present = np.ones(conv.n_frames, bool)
    present[40:60] = False
    conv.arrays["speaker_face_present"] = present
    held = B.speaker_held(conv)
    np.testing.assert_array_equal(held[40:60], np.repeat(held[39:40], 20, axis=0))


def test_rule_style_needs_a_timeline_and_matches_the_simulator(test_conv):
    real = tiny_conversation(5, with_timeline=False)
    b = B.RuleStyle("frozen")
    assert b.available(test_conv) and not b.available(real)
    with pytest.raises(ValueError, match="no timeline"):
        b.generate(real)
    frozen, attentive = b.generate(test_conv), B.RuleStyle("attentive").generate(test_conv)
    head = ex.HEAD_SLICE
    assert frozen[:, head].std() < 0.3 * attentive[:, head].std()
    with pytest.raises(ValueError, match="unknown listener style"):
        B.RuleStyle("grumpy")


def test_make_baselines_reads_a_lazy_iterator_once_and_checks_names(train):
    seen = []

    def lazy():
        for c in train:
            seen.append(c.conversation_id)
            yield c

    made = B.make_baselines(lazy(), ("random-train", "nn-retrieval"))
    assert [b.name for b in made] == ["random-train", "nn-retrieval"]
    assert len(seen) == len(train)
    assert len(made[0].listeners) == len(train)
    with pytest.raises(ValueError, match="unknown baseline"):
        B.make_baselines(train, ("oracle",))


def test_rule_mix_resamples_the_generator_with_its_style_mix(test_conv):
    from face_expr_ros.sim.listeners import DEFAULT_STYLE_MIX

    b = B.RuleStyle("mix")
    assert b.name == "rule-mix" and "rule-mix" in B.BASELINE_NAMES
    draws = [b.draw(test_conv, seed) for seed in range(400)]
    counts = {s: sum(p.style == s for p, _ in draws) / len(draws) for s in DEFAULT_STYLE_MIX}
    for style, share in DEFAULT_STYLE_MIX.items():
        assert abs(counts[style] - share) < 0.06, (style, counts)
    # The track is the simulator's for the drawn listener, exactly as a recorded listener is made.
    params, track_seed = draws[3]
    expected = listener_track(params, B.timeline_of(test_conv), test_conv.arrays["speaker_expression"], track_seed)
    np.testing.assert_array_equal(b.generate(test_conv, seed=3), B.fit_length(expected, test_conv.n_frames))
