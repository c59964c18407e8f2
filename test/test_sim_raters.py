"""Simulated raters: determinism, formulas and the intended style ranking."""

import numpy as np
import pytest

from face_expr_ros.eval.affect import valence
from face_expr_ros.expression import from_dict
from face_expr_ros.sim.conversation import generate_conversation
from face_expr_ros.sim.listeners import STYLES, listener_track, sample_params
from face_expr_ros.sim.raters import CRITERIA, RaterPanel, band, perceive


def test_valence_signs():
    assert valence(from_dict({"mouthSmileLeft": 0.8, "mouthSmileRight": 0.8})) > 0.5
    assert valence(from_dict({"mouthFrownLeft": 0.8, "mouthFrownRight": 0.8})) < -0.5
    assert valence(from_dict({"browInnerUp": 1.0})) == 0.0


def test_band():
    assert band(0.5, 0.2, 1.0) == 1.0
    assert band(0.05, 0.2, 1.0) < 0.2 and band(5.0, 0.2, 1.0) < 0.2


def test_panel_deterministic_and_seed_dependent():
    c = generate_conversation(3)
    a = RaterPanel.from_seed(5, 6).rate(c.listener_track, c.timeline)
    b = RaterPanel.from_seed(5, 6).rate(c.listener_track, c.timeline)
    other = RaterPanel.from_seed(6, 6).rate(c.listener_track, c.timeline)
    assert np.array_equal(a.scores, b.scores)
    assert not np.array_equal(a.scores, other.scores)
    assert a.scores.shape == (1, 6, 4)
    assert np.all((a.scores >= 1) & (a.scores <= 5))
    lik = RaterPanel.from_seed(5, 6).rate(c.listener_track, c.timeline, likert=True)
    assert np.array_equal(lik.scores, np.round(lik.scores))


def test_styles_ranked_as_intended():
    """On 40 contexts: attentive > reserved > mistimed on every criterion; inappropriate below
    reserved on empathy, appropriateness and overall (it differs from attentive only in affect)."""
    percepts = {s: [] for s in STYLES}
    for i in range(40):
        c = generate_conversation(1000 + i, style="attentive")
        rng = np.random.default_rng(i)
        for s in STYLES:
            tr = listener_track(sample_params(s, rng), c.timeline, c.speaker_track, i)
            percepts[s].append(perceive(tr, c.timeline))
    panel = RaterPanel.from_seed(2024, 8)
    r = {s: panel.rate_percepts(p) for s, p in percepts.items()}
    mean = {s: r[s].mean.mean(axis=0) for s in STYLES}
    overall = {s: float(r[s].overall.mean()) for s in STYLES}
    for k, crit in enumerate(CRITERIA):
        assert mean["attentive"][k] > mean["reserved"][k] > mean["mistimed"][k], crit
    for crit in ("empathy", "appropriateness"):
        k = CRITERIA.index(crit)
        assert mean["reserved"][k] > mean["inappropriate"][k] + 0.3, crit
    assert overall["attentive"] > overall["reserved"] > max(overall["mistimed"], overall["inappropriate"])
    assert overall["frozen"] < overall["reserved"]


@pytest.mark.parametrize("seed", [0, 1])
def test_percept_cues_of_styles(seed):
    c = generate_conversation(seed, style="attentive")
    rng = np.random.default_rng(seed)
    p = {s: perceive(listener_track(sample_params(s, rng), c.timeline, c.speaker_track, seed), c.timeline)
         for s in STYLES}
    assert p["inappropriate"].smile_neg > p["attentive"].smile_neg
    assert p["mistimed"].log_jerk > p["attentive"].log_jerk
    assert p["frozen"].nod_rate == 0
    assert p["attentive"].congruence > 0.5
