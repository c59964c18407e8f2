"""Output calibration: the transport map on hand-computed cases, its file, the model directory,
the runtime (published frames calibrated, history not), and `face-expr calibrate` end to end."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from scipy.ndimage import uniform_filter1d
from test_sft import _cfg, write_tiny_dataset

from face_expr_ros import cli
from face_expr_ros import expression as ex
from face_expr_ros.eval.metrics import GaussianStats, frechet_distance
from face_expr_ros.learning import shards
from face_expr_ros.learning.sft import train
from face_expr_ros.policy.calibration import (
    CALIBRATION_FILE,
    FACE_CHANNELS,
    CalibrationError,
    OutputCalibration,
    gaussian_transport,
    quantile_knots,
)
from face_expr_ros.policy.fixtures import make_policy
from face_expr_ros.policy.model_dir import PolicyFileError, add_calibration, load_policy
from face_expr_ros.policy.runtime import Observation, Policy


def _random_cov(rng: np.random.Generator, d: int, scale: float = 1.0) -> np.ndarray:
    m = rng.normal(size=(d, d)) * scale
    return m @ m.T + 0.1 * scale**2 * np.eye(d)


def test_one_channel_is_stretched_by_the_ratio_of_standard_deviations():
    a = gaussian_transport([[4.0]], [[9.0]])
    assert a == pytest.approx(np.array([[1.5]]))  # sqrt(9 / 4)
    assert gaussian_transport([[1.0]], [[100.0]], max_gain=3.0) == pytest.approx(np.array([[3.0]]))  # capped


def test_the_map_carries_one_covariance_onto_the_other_and_is_symmetric():
    rng = np.random.default_rng(0)
    c_p, c_r = _random_cov(rng, 5), _random_cov(rng, 5)
    a = gaussian_transport(c_p, c_r, max_gain=1e6)
    np.testing.assert_allclose(a, a.T, atol=1e-10)
    np.testing.assert_allclose(a @ c_p @ a, c_r, rtol=1e-8, atol=1e-8)
    assert np.linalg.eigvalsh(a).min() > 0
    np.testing.assert_allclose(gaussian_transport(c_r, c_r), np.eye(5), atol=1e-8)  # nothing to change


def test_a_static_channel_is_not_stretched_into_anything():
    c_p = np.diag([1.0, 0.0])
    c_r = np.diag([4.0, 1.0])
    a = gaussian_transport(c_p, c_r)
    np.testing.assert_allclose(a, np.diag([2.0, 0.0]), atol=1e-12)


def test_bad_covariances_are_refused():
    with pytest.raises(CalibrationError, match="square"):
        gaussian_transport(np.eye(3), np.eye(2))
    with pytest.raises(CalibrationError, match="NaN"):
        gaussian_transport(np.diag([1.0, np.nan]), np.eye(2))
    with pytest.raises(CalibrationError, match="max_gain"):
        gaussian_transport(np.eye(2), np.eye(2), max_gain=0.0)


def _fitted(rng: np.random.Generator, channels=range(ex.DIM)) -> tuple[OutputCalibration, np.ndarray, np.ndarray]:
    """A calibration fitted from narrow frames to wide ones (both inside the limits), and the frames."""
    base = rng.random((4000, ex.DIM)).astype(np.float32)
    narrow = ex.clamp(0.4 + 0.1 * (base - 0.5))
    wide = ex.clamp(0.45 + 0.25 * (base - 0.5) @ np.diag(rng.uniform(0.5, 1.0, ex.DIM)))
    g, r = GaussianStats(ex.DIM).update(narrow), GaussianStats(ex.DIM).update(wide)
    return OutputCalibration.fit(g.mean, g.cov, r.mean, r.cov, channels=channels, meta={"note": "test"}), narrow, wide


def test_fitted_calibration_matches_the_target_gaussian_and_stays_inside_the_limits():
    rng = np.random.default_rng(1)
    cal, narrow, wide = _fitted(rng)
    mapped = cal.apply(narrow)
    before = frechet_distance(*_moments(narrow), *_moments(wide))
    after = frechet_distance(*_moments(mapped), *_moments(wide))
    assert after < 0.01 * before
    assert cal.meta["note"] == "test" and cal.meta["largest_gain"] <= cal.meta["max_gain"]
    extreme = np.full((2, ex.DIM), 5.0, np.float32)
    extreme[1] = -5.0
    out = cal.apply(extreme)
    assert ex.is_valid(out) and (out >= ex.LOWER).all() and (out <= ex.UPPER).all()
    np.testing.assert_allclose(cal.apply(narrow[0]), mapped[0], atol=1e-6)  # one frame as a batch of one
    with pytest.raises(CalibrationError, match="channels"):
        cal.apply(np.zeros(3))


def test_by_default_the_head_and_the_eyelids_pass_the_affine_map_unchanged():
    cal, narrow, wide = _fitted(np.random.default_rng(4), channels=FACE_CHANNELS)
    mapped = cal.apply(narrow)
    unchanged = [*range(ex.N_BLENDSHAPES, ex.DIM), *ex.EYELIDS]
    np.testing.assert_allclose(mapped[:, unchanged], narrow[:, unchanged], atol=1e-6)
    face = list(FACE_CHANNELS)
    np.testing.assert_allclose(mapped[:, face].std(0), wide[:, face].std(0), rtol=0.05)
    assert len(cal.meta["channels"]) == ex.N_BLENDSHAPES - 2 and "headPitch" not in cal.meta["channels"]
    assert "eyeBlinkLeft" not in cal.meta["channels"] and cal.meta["quantile_mapped"] == []
    with pytest.raises(CalibrationError, match="no channels"):
        OutputCalibration.fit(cal.source_mean, np.eye(ex.DIM), cal.target_mean, np.eye(ex.DIM), channels=[])


def test_quantile_knots_on_hand_computed_cases():
    # Uniform on [0, 1] onto uniform on [0, 2]: the map is x -> 2x.
    knots = quantile_knots(np.linspace(0, 1, 101), np.linspace(0, 2, 101), levels=11)
    np.testing.assert_allclose(knots, [np.linspace(0, 1, 11), np.linspace(0, 2, 11)], atol=1e-6)
    # A source resting at one value over half its levels maps it to the mean of those target levels.
    knots = quantile_knots([0.0, 0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 2.0, 3.0, 4.0], levels=5)
    np.testing.assert_allclose(knots, [[0.0, 1.0, 2.0, 3.0], [0.5, 2.0, 3.0, 4.0]], atol=1e-6)
    with pytest.raises(CalibrationError, match="NaN"):
        quantile_knots([0.0, np.nan], [0.0, 1.0])
    with pytest.raises(CalibrationError, match="at least 2"):
        quantile_knots([0.0], [0.0, 1.0])


def _blinking(rng: np.random.Generator, n: int, width: int, rest: float, droop: float) -> np.ndarray:
    """Eyelid closure (n,): a level wandering around ``rest`` (by ``droop``, over about a second)
    and 0.3 blinks a second, each a half sine ``width`` frames long peaking at 0.8-1."""
    lids = np.clip(rest + droop * uniform_filter1d(rng.normal(size=n), 30) * np.sqrt(30), 0.0, 1.0)
    shape = np.sin(np.pi * (np.arange(width) + 0.5) / width)
    for start in np.flatnonzero(rng.random(n - width) < 0.3 / ex.FPS):
        lids[start:start + width] = np.maximum(lids[start:start + width], rng.uniform(0.8, 1.0) * shape)
    return lids


def _blinks(lids: np.ndarray) -> int:
    return int(((lids[1:] >= 0.5) & (lids[:-1] < 0.5)).sum())  # as the raters count them


def test_the_eyelid_quantile_map_keeps_the_blinks_the_affine_map_loses():
    """A policy whose eyelids droop (a wandering half-closure) besides blinking, against recorded
    listeners whose eyelids rest open: matching mean and variance, the affine map shrinks the
    blinks with the droop until none crosses half closed; the monotone quantile map sends the
    droop to open and keeps the blinks, at the recorded rate and with the recorded distribution."""
    rng = np.random.default_rng(7)
    policy_lids = _blinking(rng, 60_000, 6, rest=0.25, droop=0.2)
    recorded_lids = _blinking(rng, 60_000, 5, rest=0.0, droop=0.0)
    lids = list(ex.EYELIDS)
    frames_p = np.zeros((len(policy_lids), ex.DIM), np.float32)
    frames_r = np.zeros_like(frames_p)
    frames_p[:, lids] = policy_lids[:, None]
    frames_r[:, lids] = recorded_lids[:, None]
    g, r = GaussianStats(ex.DIM).update(frames_p), GaussianStats(ex.DIM).update(frames_r)
    affine = OutputCalibration.fit(g.mean, g.cov, r.mean, r.cov, channels=range(ex.N_BLENDSHAPES))
    quantile = OutputCalibration.fit(g.mean, g.cov, r.mean, r.cov, eyelids_from=frames_p[:, lids],
                                     eyelids_to=frames_r[:, lids])
    assert _blinks(affine.apply(frames_p)[:, lids[0]]) < 0.1 * _blinks(recorded_lids)
    mapped = quantile.apply(frames_p)[:, lids[0]]
    assert abs(_blinks(mapped) - _blinks(recorded_lids)) < 0.4 * _blinks(recorded_lids)
    assert (np.diff(mapped[np.argsort(policy_lids, kind="stable")]) >= -1e-6).all()  # monotone
    assert mapped.mean() == pytest.approx(recorded_lids.mean(), abs=0.002)
    assert mapped.std() == pytest.approx(recorded_lids.std(), rel=0.05)
    assert quantile.meta["quantile_mapped"] == ["eyeBlinkLeft", "eyeBlinkRight"]
    with pytest.raises(CalibrationError, match="both the affine map and the quantile map"):
        OutputCalibration.fit(g.mean, g.cov, r.mean, r.cov, channels=range(ex.N_BLENDSHAPES),
                              eyelids_from=policy_lids, eyelids_to=recorded_lids)
    with pytest.raises(CalibrationError, match="needs both"):
        OutputCalibration.fit(g.mean, g.cov, r.mean, r.cov, eyelids_from=policy_lids)


def _moments(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = GaussianStats(ex.DIM).update(frames)
    return s.mean, s.cov


def test_calibration_files_round_trip_and_bad_ones_name_the_file_and_field(tmp_path):
    cal, narrow, _ = _fitted(np.random.default_rng(2))
    path = tmp_path / "cal.npz"
    cal.save(path)
    back = OutputCalibration.load(path)
    np.testing.assert_array_equal(back.apply(narrow), cal.apply(narrow))
    assert back.meta == cal.meta
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CalibrationError, match=r"corrupt\.npz: not a readable calibration file"):
        OutputCalibration.load(corrupt)
    short = tmp_path / "short.npz"
    with open(short, "wb") as f:
        np.savez(f, source_mean=cal.source_mean, target_mean=cal.target_mean, matrix=cal.matrix[:3],
                 meta=np.array("{}"))
    with pytest.raises(CalibrationError, match=r"short\.npz: calibration field 'matrix' has shape \(3, 55\)"):
        OutputCalibration.load(short)
    with pytest.raises(CalibrationError, match="'source_mean' contains NaN"):
        OutputCalibration(np.full(ex.DIM, np.nan), cal.target_mean, cal.matrix)
    # With an eyelid map: it round-trips, and a broken one names its field.
    lids = list(ex.EYELIDS)
    rng = np.random.default_rng(5)
    g, r = GaussianStats(ex.DIM).update(narrow), GaussianStats(ex.DIM).update(narrow + 0.01)
    with_lids = OutputCalibration.fit(g.mean, g.cov, r.mean, r.cov, eyelids_from=rng.random(500),
                                      eyelids_to=rng.random(500) ** 2)
    with_lids.save(path)
    back = OutputCalibration.load(path)
    np.testing.assert_array_equal(back.eyelid_knots, with_lids.eyelid_knots)
    np.testing.assert_array_equal(back.apply(narrow), with_lids.apply(narrow))
    assert not np.allclose(back.apply(narrow)[:, lids], narrow[:, lids], atol=1e-3)
    flat = with_lids.eyelid_knots.copy()
    flat[0, 3] = flat[0, 2]
    with pytest.raises(CalibrationError, match="'eyelid_knots': source quantiles must increase"):
        OutputCalibration(with_lids.source_mean, with_lids.target_mean, with_lids.matrix, eyelid_knots=flat)
    with pytest.raises(CalibrationError, match="'eyelid_knots' has shape"):
        OutputCalibration(with_lids.source_mean, with_lids.target_mean, with_lids.matrix,
                          eyelid_knots=flat[:1])
    with pytest.raises(CalibrationError, match="must pass the affine map unchanged"):
        OutputCalibration(cal.source_mean, cal.target_mean, cal.matrix, eyelid_knots=with_lids.eyelid_knots)


@pytest.fixture(scope="module")
def calibrated_dir(tmp_path_factory):
    _, _, path = make_policy(tmp_path_factory.mktemp("calpolicy") / "policy")
    cal, _, _ = _fitted(np.random.default_rng(3))
    add_calibration(path, cal)
    return path, cal


def test_the_model_directory_checks_its_calibration(calibrated_dir, tmp_path):
    path, cal = calibrated_dir
    bundle = load_policy(path)
    assert bundle.calibration is not None
    np.testing.assert_array_equal(bundle.calibration.matrix, cal.matrix)
    broken = shutil.copytree(path, tmp_path / "broken")
    data = bytearray((broken / CALIBRATION_FILE).read_bytes())
    data[-40] ^= 0xFF
    (broken / CALIBRATION_FILE).write_bytes(bytes(data))
    with pytest.raises(PolicyFileError, match=r"calibration\.npz: sha256 differs"):
        load_policy(broken)
    (broken / CALIBRATION_FILE).unlink()
    with pytest.raises(PolicyFileError, match=r"missing file calibration\.npz"):
        load_policy(broken)


def _track(policy: Policy, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(99)
    policy.reset(seed)
    out = []
    for t in range(n):
        audio = rng.normal(size=policy.cfg.audio_dim).astype(np.float32)
        speaker = ex.clamp(rng.random(ex.DIM) * 0.3) if t % 17 else None
        out.append(policy.step(Observation(speaker, audio, None)))
    return np.stack(out)


def test_the_runtime_publishes_calibrated_frames_and_remembers_raw_ones(calibrated_dir):
    path, cal = calibrated_dir
    raw = _track(Policy.load(path, "onnxruntime", calibrate=False), 90, seed=5)
    calibrated = _track(Policy.load(path, "onnxruntime"), 90, seed=5)
    # Frame for frame the map of the raw run: had the network read calibrated frames as its
    # history, its plans (and so the runs) would have parted after the first re-plan.
    np.testing.assert_allclose(calibrated, cal.apply(raw), atol=1e-5)
    assert not np.allclose(calibrated, raw, atol=1e-3)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("caldata"))


def test_face_expr_calibrate_fits_on_the_training_split_and_eval_refuses_it(tiny_data, tmp_path, capsys):
    policy_dir = train(_cfg(tiny_data, tmp_path / "run", steps=20))
    assert cli.main(["calibrate", "--model", str(policy_dir), "--data", str(tiny_data), "--no-progress"]) == 0
    assert "training conversations" in capsys.readouterr().out
    bundle = load_policy(policy_dir)
    meta = bundle.calibration.meta
    manifest = shards.read_manifest(tiny_data)
    assert meta["fitted_on"] == sorted(manifest.fingerprints("train")) and meta["data_hash"] == manifest.data_hash()
    assert meta["conversations"] == len(manifest.ids("train")) and meta["frames"] > 0
    assert bundle.calibration.eyelid_knots is not None and meta["quantile_mapped"] == ["eyeBlinkLeft", "eyeBlinkRight"]
    assert json.loads((policy_dir / "manifest.json").read_text())["files"][CALIBRATION_FILE]
    from face_expr_ros.eval.evaluate import EvalConfig, seen_in_training

    ids = manifest.ids("train")
    # The calibration's own record is checked, not just the network's: without `trained_on` the
    # training conversations are still refused while the calibration is applied.
    untrained = shutil.copytree(policy_dir, tmp_path / "no_trained_on")
    config = json.loads((untrained / "config.json").read_text())
    del config["trained_on"]
    (untrained / "config.json").write_text(json.dumps(config))

    def seen(calibrate: bool) -> list[str]:
        cfg = EvalConfig(tiny_data, "train", untrained, baselines=(), calibrate=calibrate)
        return seen_in_training(cfg, ids)["policy"]

    assert seen(True) == ids and seen(False) == []
    assert cli.main(["calibrate", "--model", str(policy_dir), "--data", str(tiny_data), "--samples", "0"]) == 2
    assert "samples must be >= 1" in capsys.readouterr().out
    assert cli.main(["calibrate", "--model", str(tmp_path / "nowhere"), "--data", str(tiny_data)]) == 2
    assert "policy directory not found" in capsys.readouterr().out
    # --with-head adds the head pose to the affine map; the eyelids keep their quantile map.
    head_dir = shutil.copytree(policy_dir, tmp_path / "with_head")
    assert cli.main(["calibrate", "--model", str(head_dir), "--data", str(tiny_data), "--with-head",
                     "--no-progress"]) == 0
    with_head = load_policy(head_dir).calibration
    assert "headPitch" in with_head.meta["channels"] and "eyeBlinkLeft" not in with_head.meta["channels"]
    assert with_head.eyelid_knots is not None
