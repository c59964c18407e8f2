"""Script generator, speaker profiles and split assignment."""

from face_expr_ros.sim.scripts import (
    EMOTIONS,
    HESITATIONS,
    SPLITS,
    SpeakerProfile,
    make_script,
    split_of,
    split_of_script,
    split_of_speaker,
    split_pools,
)


def test_at_least_300_distinct_utterances_all_emotions_and_questions():
    utts = [u for sid in range(120) for u in make_script(sid).utterances]
    texts = {u.text for u in utts}
    assert len(texts) >= 300
    assert {u.emotion for u in utts} == set(EMOTIONS)
    assert sum(u.is_question for u in utts) >= 30
    assert all(u.text.endswith("?") for u in utts if u.is_question)
    hes = [u for u in utts if u.hesitant]
    assert hes and all(any(h.lower() in u.text.lower() for h in HESITATIONS) for u in hes)
    ids = [u.utt_id for u in utts]
    assert len(ids) == len(set(ids))


def test_script_is_pure_function_of_id():
    assert make_script(17) == make_script(17)
    assert make_script(17) != make_script(18)
    s = make_script(5)
    assert all(u.script_id == 5 for u in s.utterances)
    assert s.utterances[0].emotion == s.arc[0]


def test_speaker_profile_deterministic_and_varied():
    a, b = SpeakerProfile.from_id(3), SpeakerProfile.from_id(3)
    assert a == b
    profiles = [SpeakerProfile.from_id(i) for i in range(50)]
    assert len({p.voice for p in profiles}) > 10
    assert all(140 <= p.rate_wpm <= 190 and 0 <= p.pitch <= 99 for p in profiles)


def test_splits_disjoint_by_script_and_speaker():
    pools = {s: split_pools(s) for s in SPLITS}
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1:]:
            assert not set(pools[a].script_ids) & set(pools[b].script_ids)
            assert not set(pools[a].speaker_ids) & set(pools[b].speaker_ids)
    assert all(len(p.script_ids) > 100 and len(p.speaker_ids) > 10 for p in pools.values())
    assert all(split_of_script(i) == "val" for i in pools["val"].script_ids)
    for sid in range(200):
        for spk in range(0, 400, 37):
            s = split_of(sid, spk)
            assert s is None or (s == split_of_script(sid) == split_of_speaker(spk))
    frac = len(pools["train"].script_ids) / sum(len(p.script_ids) for p in pools.values())
    assert 0.75 < frac < 0.85
