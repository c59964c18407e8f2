"""Personas: the space fitted on training listeners, choosing one, and the runtime holding it."""

from __future__ import annotations

import numpy as np
import pytest

from face_expr_ros import expression as ex
from face_expr_ros.policy.fixtures import make_policy, synthetic_actions
from face_expr_ros.policy.model_dir import PolicyInputError
from face_expr_ros.policy.persona import PersonaError, PersonaSpace, parse_choice, track_statistics
from face_expr_ros.policy.runtime import Observation, Policy

SMILE = ex.indices(("mouthSmileLeft", "mouthSmileRight"))


def _speakers(n=12, seed=0):
    """Speakers who hold a smile, of a level that differs from conversation to conversation."""
    levels = np.random.default_rng(seed).uniform(0.0, 0.6, n)
    tracks = [np.zeros((400, ex.DIM), np.float32) for _ in range(n)]
    for track, level in zip(tracks, levels):
        track[:, SMILE] = level
    return tracks


def _listeners(n=12, speakers=None):
    """Listeners who differ in how much they move (a gain) and in how much they smile (an offset);
    with ``speakers``, each also smiles back its speaker's smile (the conversation's share)."""
    tracks = []
    for k in range(n):
        track = synthetic_actions(400, seed=k) * (0.2 + 0.1 * k)
        track[:, SMILE] += 0.3 * (k % 3) + (speakers[k][:, SMILE] if speakers is not None else 0.0)
        tracks.append(ex.clamp(track))
    return tracks


def _fit(n=12, dim=4):
    speakers = _speakers(n)
    listeners = _listeners(n, speakers)
    return PersonaSpace.fit(listeners, speakers, dim=dim), listeners, speakers


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return make_policy(tmp_path_factory.mktemp("persona") / "policy", seed=4)


def test_track_statistics_are_means_then_spreads():
    track = synthetic_actions(50, seed=1)
    stats = track_statistics(track)
    np.testing.assert_allclose(stats[:ex.DIM], track.mean(0), atol=1e-6)
    np.testing.assert_allclose(stats[ex.DIM:], track.std(0), atol=1e-6)
    for bad, match in [(track[:1], "shape"), (track[:, :3], "shape"), (np.full_like(track, np.nan), "NaN")]:
        with pytest.raises(PersonaError, match=match):
            track_statistics(bad)
    with pytest.raises(PersonaError, match="speaker track contains NaN"):
        track_statistics(np.full_like(track, np.nan), "speaker")


def test_fitted_space_is_whitened_and_reproduces_its_listeners():
    space, listeners, speakers = _fit()
    assert space.bank.shape == (12, 4)
    np.testing.assert_allclose(space.bank.mean(0), 0.0, atol=1e-5)  # the origin is the average listener
    np.testing.assert_allclose(space.bank.std(0, ddof=1), 1.0, atol=1e-4)  # unit variance per component
    np.testing.assert_allclose(space.embed(listeners[5], speakers[5]), space.bank[5], atol=1e-5)
    # The first component is how much the listener moves: it orders them by their gain.
    order = np.argsort(np.argsort(space.bank[:, 0]))
    assert abs(np.corrcoef(order, np.arange(12))[0, 1]) > 0.95


def _r2(bank, target):
    """How much of ``target``'s variance a linear function of the personas explains."""
    x = np.c_[np.ones(len(bank)), bank]
    fit = x @ np.linalg.lstsq(x, target, rcond=None)[0]
    return 1.0 - np.sum((target - fit) ** 2) / np.sum((target - target.mean()) ** 2)


def test_the_speakers_share_is_not_part_of_the_persona():
    n = 30
    space, listeners, speakers = _fit(n)
    speaker_smile = np.array([s[0, SMILE[0]] for s in speakers])
    own_smile = 0.3 * (np.arange(n) % 3)  # the listener's own offset
    # Fitted without the speakers (all the same), the smile the speaker caused is part of the persona...
    blind = PersonaSpace.fit(listeners, [np.zeros((400, ex.DIM))] * n, dim=4)
    assert _r2(blind.bank, speaker_smile) > 0.3
    # ...with them, the personas do not tell the speaker, and the listener's own smile is still there.
    assert _r2(space.bank, speaker_smile) < 0.1
    assert _r2(space.bank, own_smile) > 0.85
    # The same listener heard with a more cheerful speaker moves less than without the adjustment
    # (not to zero: the ridge keeps N / (N + 0.5 N) = 2/3 of the regression here).
    cheerful = speakers[4].copy()
    cheerful[:, SMILE] += 0.2
    again = ex.clamp(listeners[4] + (cheerful - speakers[4]))
    moved = np.linalg.norm(space.embed(again, cheerful) - space.bank[4])
    assert moved < 0.6 * np.linalg.norm(blind.embed(again, cheerful) - blind.bank[4])
    with pytest.raises(PersonaError, match="12 listener tracks but 11 speaker tracks"):
        PersonaSpace.fit(listeners[:12], speakers[:11], dim=4)


def test_components_past_the_data_rank_are_zero():
    space = PersonaSpace.fit(_listeners(3), _speakers(3), dim=8)  # 3 listeners span at most 2 centred directions
    assert space.dim == 8
    np.testing.assert_array_equal(space.bank[:, 2:], 0.0)
    assert np.abs(space.bank[:, :2]).max() > 0.1


def test_choose_sample_mean_index_and_bad_choices():
    space, _, _ = _fit()
    np.testing.assert_array_equal(space.choose("mean"), np.zeros(4, np.float32))
    np.testing.assert_array_equal(space.choose(3), space.bank[3])
    drawn = np.array([space.choose("sample", np.random.default_rng(s)) for s in range(40)])
    assert all(any(np.array_equal(d, b) for b in space.bank) for d in drawn)
    assert len({tuple(d) for d in drawn}) > 5
    with pytest.raises(PersonaError, match="persona index 12 out of range: the model knows 12"):
        space.choose(12)
    with pytest.raises(PersonaError, match="persona must be one of"):
        space.choose("loud")


def test_spread_moves_drawn_personas_toward_the_average_listener_only():
    space, _, _ = _fit()
    full = space.choose("sample", np.random.default_rng(5))
    # The same draw (same generator state), scaled: the origin is the average listener.
    np.testing.assert_allclose(space.choose("sample", np.random.default_rng(5), spread=0.6), 0.6 * full, rtol=1e-6)
    np.testing.assert_array_equal(space.choose("sample", np.random.default_rng(5), spread=0.0), 0.0)
    assert np.abs(full).max() > 0.1
    # A chosen listener is that listener as recorded, and the average stays the average.
    np.testing.assert_array_equal(space.choose(3, spread=0.5), space.bank[3])
    np.testing.assert_array_equal(space.choose("mean", spread=0.5), 0.0)
    for bad in (-0.1, 2.5, float("nan")):
        with pytest.raises(PersonaError, match="persona spread must be in"):
            space.choose("sample", np.random.default_rng(0), spread=bad)


def test_parse_choice_reads_numbers_as_bank_indices():
    assert parse_choice("7") == 7 and parse_choice(" mean ") == "mean" and parse_choice("sample") == "sample"
    assert parse_choice("-1") == "-1"  # not an index: refused by PersonaSpace.choose with the allowed values
    with pytest.raises(PersonaError, match="persona must be one of"):
        PersonaSpace.neutral(2).choose(parse_choice("-1"))


def test_save_load_round_trip_and_corrupt_files(tmp_path):
    space, listeners, speakers = _fit()
    space.save(tmp_path / "p.npz")
    back = PersonaSpace.load(tmp_path / "p.npz")
    np.testing.assert_array_equal(back.bank, space.bank)
    np.testing.assert_allclose(back.embed(listeners[2], speakers[2]), space.bank[2], atol=1e-5)
    # A persona file of the sixth round (no speaker adjustment) names what it lacks.
    np.savez(tmp_path / "q.npz", center=space.center, scale=space.scale, components=space.components, bank=space.bank)
    with pytest.raises(PersonaError, match=r"q.npz: missing array\(s\) \['speaker_center', 'speaker_scale', "
                                           r"'speaker_map'\]"):
        PersonaSpace.load(tmp_path / "q.npz")
    np.savez(tmp_path / "r.npz", **{k: getattr(space, k) for k in ("center", "scale", "speaker_center",
                                                                    "speaker_scale", "speaker_map", "components")},
             bank=np.zeros((2, 5), np.float32))
    with pytest.raises(PersonaError, match=r"r.npz: arrays have inconsistent shapes"):
        PersonaSpace.load(tmp_path / "r.npz")


def _run(policy, n=48):
    obs = Observation(np.full(ex.DIM, 0.2, np.float32) * (ex.UPPER > 0), None, None)
    return np.array([policy.step(obs) for _ in range(n)])


def test_runtime_holds_the_chosen_persona_and_the_network_reads_it(saved):
    bank = Policy.load(saved[2], "onnxruntime").persona_space.bank
    assert len(bank) == 6  # the fixture's six listeners
    first = Policy.load(saved[2], "onnxruntime", persona=0, seed=1)
    np.testing.assert_array_equal(first.inputs()["persona"][0], bank[0])
    farthest = int(np.argmax(np.linalg.norm(bank - bank[0], axis=1)))
    other = Policy.load(saved[2], "onnxruntime", persona=farthest, seed=1)
    # Same seed, same observations: only the persona differs, and the face differs with it.
    assert np.abs(_run(first) - _run(other)).max() > 1e-3
    # "sample" draws a training listener at every reset, reproducibly with the seed.
    sampled = Policy.load(saved[2], "onnxruntime", seed=7, persona_spread=1.0)
    drawn = []
    for seed in range(12):
        sampled.reset(seed)
        drawn.append(int(np.flatnonzero((bank == sampled.persona).all(1))[0]))
        _run(sampled, 4)
        np.testing.assert_array_equal(sampled.inputs()["persona"][0], bank[drawn[-1]])  # held while it runs
    sampled.reset(3)
    assert np.array_equal(sampled.persona, bank[drawn[3]]) and len(set(drawn)) > 2
    shrunk = Policy.load(saved[2], "onnxruntime", seed=7, persona_spread=0.5)
    shrunk.reset(3)
    np.testing.assert_allclose(shrunk.inputs()["persona"][0], 0.5 * bank[drawn[3]], rtol=1e-6)
    mean = Policy.load(saved[2], "onnxruntime", persona="mean")
    np.testing.assert_array_equal(mean.persona, np.zeros(len(bank[0]), np.float32))


def test_set_persona_and_bad_persona_choices(saved):
    policy = Policy.load(saved[2], "onnxruntime")
    policy.set_persona(np.ones(policy.cfg.persona_dim))
    np.testing.assert_array_equal(policy.inputs()["persona"][0], 1.0)
    with pytest.raises(PolicyInputError, match=r"set_persona.persona has shape \(3,\)"):
        policy.set_persona(np.ones(3))
    with pytest.raises(PolicyInputError, match="persona contains NaN"):
        policy.set_persona(np.full(policy.cfg.persona_dim, np.nan))
    with pytest.raises(PersonaError, match="out of range"):
        Policy.load(saved[2], "onnxruntime", persona=99)
    with pytest.raises(PersonaError, match="persona spread must be in"):
        Policy.load(saved[2], "onnxruntime", persona_spread=3.0)
