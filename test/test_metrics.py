"""Metrics on small hand-computed cases: every function has a case whose answer is worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from face_expr_ros import expression as ex
from face_expr_ros.eval import metrics as M


def _brute_dtw(x, y):
    n, m = len(x), len(y)
    c = np.linalg.norm(np.asarray(x, float)[:, None] - np.asarray(y, float)[None], axis=2)
    d = np.full((n + 1, m + 1), np.inf)
    d[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i, j] = c[i - 1, j - 1] + min(d[i - 1, j - 1], d[i - 1, j], d[i, j - 1])
    return d[n, m]


# ------------------------------------------------------------------ L2 / FD / P-FD
def test_l2_is_mean_per_frame_euclidean_distance():
    g = np.array([[0.0, 0.0], [3.0, 4.0]])
    l_ = np.array([[0.0, 0.0], [0.0, 0.0]])
    assert M.l2(g, l_) == pytest.approx(2.5)  # (0 + 5) / 2
    with pytest.raises(ValueError, match="differ in shape"):
        M.l2(g, l_[:1])


def test_frechet_distance_of_identical_gaussians_is_zero_and_of_shifted_means_is_squared_shift():
    cov = np.array([[2.0, 0.5], [0.5, 1.0]])
    assert M.frechet_distance([1, 2], cov, [1, 2], cov) == pytest.approx(0.0, abs=1e-9)
    assert M.frechet_distance([0, 0], cov, [3, 4], cov) == pytest.approx(25.0)


def test_frechet_distance_of_scaled_isotropic_gaussians():
    # C1 = I, C2 = 4 I in 3-d: Tr(I + 4I - 2 * 2I) = 3 * (1 + 4 - 4) = 3.
    assert M.frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), 4 * np.eye(3)) == pytest.approx(3.0)
    # Singular covariances (a channel that never moves) stay finite and real.
    c1 = np.diag([1.0, 0.0])
    c2 = np.diag([0.25, 0.0])
    assert M.frechet_distance([0, 0], c1, [0, 0], c2) == pytest.approx((1 - 0.5) ** 2)


def test_fd_from_frames_matches_gaussian_stats_and_detects_a_shift():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 3))
    assert M.fd(x, x) == pytest.approx(0.0, abs=1e-9)
    assert M.fd(x + np.array([1.0, 0.0, 0.0]), x) == pytest.approx(1.0, abs=1e-6)
    # Running sums over chunks give the same Gaussian as the whole.
    stats = M.GaussianStats(3).update(x[:1000]).merge(M.GaussianStats(3).update(x[1000:]))
    np.testing.assert_allclose(stats.mean, x.mean(0), atol=1e-12)
    np.testing.assert_allclose(stats.cov, np.cov(x.T, bias=True), atol=1e-10)


def test_paired_fd_sees_wrong_pairing_that_fd_misses():
    rng = np.random.default_rng(1)
    s = rng.normal(size=(3000, 2))
    listener = s.copy()  # the GT listener copies the speaker
    shuffled = listener[rng.permutation(len(listener))]  # same frames, wrong times
    assert M.fd(shuffled, listener) == pytest.approx(0.0, abs=1e-9)
    # Paired: GT has cov(s, l) = var(s) = 1 per channel, shuffled ~0. Hand value: 2 * 2 * (2 - sqrt(2)) ~ 2.34
    # would need exact independence; check it is clearly positive instead.
    assert M.paired_fd(s, shuffled, listener) > 1.5
    assert M.paired_fd(s, listener, listener) == pytest.approx(0.0, abs=1e-9)


# ------------------------------------------------------------------ variation, diversity, PCC, affect
def test_temporal_variance_and_variation():
    x = np.array([[0.0, 1.0], [2.0, 1.0]])  # var: channel 0 = 1, channel 1 = 0
    assert M.temporal_variance(x) == pytest.approx(0.5)
    assert M.variation(x) == pytest.approx(0.5)
    assert M.frvar([x, np.zeros((2, 2))]) == pytest.approx(0.25)


def test_si_diversity_is_mean_pairwise_l2():
    a = np.zeros((2, 2))
    b = np.array([[3.0, 4.0], [3.0, 4.0]])  # 5 from a at every frame
    c = np.array([[0.0, 1.0], [0.0, 1.0]])  # 1 from a, sqrt(9 + 9) from b
    assert M.si_diversity([a, b, c]) == pytest.approx((5 + 1 + math.sqrt(18)) / 3)
    assert M.si_diversity([a, a]) == 0.0
    assert math.isnan(M.si_diversity([a]))


def test_channel_pcc_and_rpcc():
    t = np.linspace(0, 1, 50)
    s = np.stack([np.sin(6 * t), np.cos(5 * t), np.zeros_like(t)], axis=1)
    np.testing.assert_allclose(M.channel_pcc(s, s), [1.0, 1.0, 0.0])
    np.testing.assert_allclose(M.channel_pcc(s, -2 * s + 1), [-1.0, -1.0, 0.0])
    # PCC averages over the two moving speaker channels only.
    assert M.speaker_listener_pcc(s, s) == pytest.approx(1.0)
    listener = s.copy()
    listener[:, 1] = 0.0  # second channel frozen: its correlation counts as 0
    assert M.speaker_listener_pcc(s, listener) == pytest.approx(0.5)
    assert M.rpcc(s, listener, s) == pytest.approx(0.5)
    assert M.rpcc(s, s, s) == pytest.approx(0.0)


def test_affect_l2_is_rms_valence_difference():
    g = np.zeros((4, ex.DIM))
    l_ = np.zeros((4, ex.DIM))
    for name in ("mouthSmileLeft", "mouthSmileRight"):
        g[:2, ex.index(name)] = 0.5  # valence 0.5 in the first two frames, 0 after
    assert M.affect_l2(g, l_) == pytest.approx(math.sqrt((0.25 + 0.25) / 4))
    assert M.affect_l2(l_, l_) == 0.0


# ------------------------------------------------------------------ REACT
def test_ccc_hand_cases():
    x = np.array([[1.0], [2.0], [3.0]])
    assert M.ccc(x, x) == pytest.approx(1.0)
    # Mirror image about its mean: CCC -1. About 0 instead (means 2 and -2): 2(-2/3) / (4/3 + 16) = -1/13.
    assert M.ccc(x, 4 - x) == pytest.approx(-1.0)
    assert M.ccc(x, -x) == pytest.approx(-1 / 13)
    # y = x + 1: cov = 2/3, var = 2/3 each, mean diff 1 -> 2 (2/3) / (4/3 + 1) = 4/7.
    assert M.ccc(x, x + 1) == pytest.approx(4 / 7)
    # Both constant and equal: left out; alone -> NaN. Constant but different -> 0.
    assert math.isnan(M.ccc(np.ones((3, 1)), np.ones((3, 1))))
    assert M.ccc(np.ones((3, 1)), np.zeros((3, 1))) == 0.0
    both = np.concatenate([x, np.ones((3, 1))], axis=1)
    assert M.ccc(both, both) == pytest.approx(1.0)


def test_frcorr_takes_the_closest_appropriate_reaction():
    x = np.array([[1.0], [2.0], [3.0]])
    assert M.frcorr(x, [-x, x + 1, x]) == pytest.approx(1.0)
    assert M.frcorr(x, [-x, x + 1]) == pytest.approx(4 / 7)
    with pytest.raises(ValueError):
        M.frcorr(x, [])


def test_dtw_known_small_case():
    # a = 0 1 2, b = 0 0 1 2 (1-d): b's repeated 0 aligns to a's 0 at no cost -> 0.
    a = np.array([[0.0], [1.0], [2.0]])
    b = np.array([[0.0], [0.0], [1.0], [2.0]])
    assert M.dtw(a, b) == pytest.approx(0.0)
    # a = 0 2, b = 1: both frames of a align to b's only frame -> |0-1| + |2-1| = 2.
    assert M.dtw([[0.0], [2.0]], [[1.0]]) == pytest.approx(2.0)
    # a = 0 0 5, b = 0 5 5: path (0,0)(1,0)(2,1)(2,2) costs 0 -> 0; Euclidean frame cost in 2-d: 3-4-5.
    assert M.dtw([[0.0], [0.0], [5.0]], [[0.0], [5.0], [5.0]]) == pytest.approx(0.0)
    assert M.dtw([[0.0, 0.0]], [[3.0, 4.0], [3.0, 4.0]]) == pytest.approx(10.0)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 9), st.integers(1, 9), st.integers(0, 10_000))
def test_dtw_matches_the_textbook_recursion(n, m, seed):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(n, 3)), rng.normal(size=(m, 3))
    assert M.dtw(x, y) == pytest.approx(_brute_dtw(x, y), rel=1e-9, abs=1e-12)
    assert M.dtw(x, y) == pytest.approx(M.dtw(y, x), rel=1e-9)


def test_frdist_is_per_frame_dtw_to_the_closest_reaction():
    x = np.zeros((6, 2))
    far = np.ones((6, 2))  # every frame sqrt(2) away
    assert M.frdist(x, [far], factor=1) == pytest.approx(math.sqrt(2))
    assert M.frdist(x, [far, x], factor=1) == 0.0
    # 3x downsampling averages blocks: 6 frames -> 2.
    np.testing.assert_allclose(M.downsample(np.arange(12.0).reshape(6, 2), 3), [[2, 3], [8, 9]])


def test_mean_pairwise_mse_frdiv_and_frdvs():
    a, b, c = np.zeros((2, 1)), np.ones((2, 1)), np.full((2, 1), 3.0)
    # pairs: (a,b) 1, (a,c) 9, (b,c) 4 -> 14/3.
    assert M.mean_pairwise_mse([a, b, c]) == pytest.approx(14 / 3)
    assert M.frdiv([a, b, c]) == pytest.approx(14 / 3)
    assert M.frdiv([a, a, a]) == 0.0
    assert math.isnan(M.frdiv([a]))
    assert M.frdvs([a, b, c]) == pytest.approx(14 / 3)
    merged = M.SpreadStats().update(a).merge(M.SpreadStats().update(b).update(c))
    assert merged.value() == pytest.approx(14 / 3)
    with pytest.raises(ValueError, match="equal-size"):
        M.SpreadStats().update(a).update(np.zeros((3, 1)))


def test_frsyn_finds_the_lag_of_a_delayed_copy():
    rng = np.random.default_rng(2)
    s = rng.normal(size=(300, 4)).cumsum(axis=0)
    s -= s.mean(0)
    delay = 12  # frames: 0.4 s at 30 Hz
    listener = np.concatenate([np.zeros((delay, 4)), s[:-delay]])
    lags, r = M.lagged_correlation(s, listener, 30)
    assert (lags[np.argmax(r, axis=0)] == delay).all()
    assert M.frsyn(s, listener) == pytest.approx(delay / 30.0)
    assert M.frsyn(s, s) == 0.0
    assert math.isnan(M.frsyn(s, np.zeros_like(s)))  # nothing moves: undefined


def test_fd_terms_of_diagonal_gaussians_charge_the_spread_and_nothing_else():
    terms = M.fd_terms([0, 0], np.diag([1.0, 4.0]), [0, 0], np.diag([4.0, 4.0]))
    # (sqrt 1 - sqrt 4)^2 + 0 = 1, all of it the first channel's spread.
    assert terms["fd"] == pytest.approx(1.0)
    assert terms["mean"] == pytest.approx(0.0)
    assert terms["covariance"] == pytest.approx(1.0)
    assert terms["at_reference_spread"] == pytest.approx(0.0, abs=1e-9)
    assert terms["at_reference_correlation"] == pytest.approx(1.0)  # both already uncorrelated


def test_fd_terms_separate_a_correlation_from_a_mean_shift():
    c1 = np.array([[1.0, 0.5], [0.5, 1.0]])  # eigenvalues 1.5 and 0.5
    terms = M.fd_terms([3, 4], c1, [0, 0], np.eye(2))
    trace_term = 4.0 - 2.0 * (np.sqrt(1.5) + np.sqrt(0.5))
    assert terms["fd"] == pytest.approx(25.0 + trace_term)
    assert terms["mean"] == pytest.approx(25.0)
    assert terms["at_reference_correlation"] == pytest.approx(25.0)  # with I as correlation: equal covariances
    assert terms["at_reference_spread"] == pytest.approx(terms["fd"])  # spreads already equal


def test_fd_terms_leave_a_channel_that_does_not_move_as_it_is():
    terms = M.fd_terms([0, 0], np.diag([0.0, 1.0]), [0, 0], np.eye(2))
    assert terms["at_reference_spread"] == pytest.approx(1.0)  # no gain can spread a constant channel


def test_within_between_splits_the_pooled_covariance_exactly():
    within, between = M.within_between([[[0.0], [0.0]], [[2.0], [2.0]]])
    assert within[0, 0] == pytest.approx(0.0)
    assert between[0, 0] == pytest.approx(1.0)  # run means 0 and 2 about the pooled mean 1
    rng = np.random.default_rng(0)
    runs = [rng.normal(k, 1.0 + k, size=(50 + 10 * k, 3)) for k in range(4)]
    within, between = M.within_between(runs)
    pooled = np.concatenate(runs)
    np.testing.assert_allclose(within + between, np.cov(pooled.T, bias=True), atol=1e-10)
    assert np.trace(between) > 1.0  # the runs' means lie 1 apart per channel
    with pytest.raises(ValueError, match="at least one run"):
        M.within_between([])
