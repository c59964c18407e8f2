"""Word/character error rate on hand-computed cases."""

from __future__ import annotations

import math

import pytest

from face_expr_ros.eval.text_metrics import (
    character_error_rate,
    edit_counts,
    normalize,
    wer_details,
    word_error_rate,
)


def test_identical_is_zero():
    assert word_error_rate("the cat sat", "the cat sat") == 0.0


def test_one_substitution():
    c = wer_details("the cat sat", "the hat sat")
    assert (c.substitutions, c.deletions, c.insertions, c.reference_length) == (1, 0, 0, 3)
    assert c.rate == pytest.approx(1 / 3)


def test_deletion_and_insertion():
    c = wer_details("a b c d", "a c d e f")
    # b deleted, e and f inserted: 3 edits over 4 reference words.
    assert (c.substitutions, c.deletions, c.insertions) == (0, 1, 2)
    assert c.rate == pytest.approx(0.75)


def test_asr_example_from_pocketsphinx():
    ref = "please open the door the weather is nice today"
    hyp = "please open up on the weather is nice today"
    # the->up, door->on: two substitutions over nine words.
    assert word_error_rate(ref, hyp) == pytest.approx(2 / 9)


def test_wer_can_exceed_one_and_empty_cases():
    assert word_error_rate("yes", "no no no") == pytest.approx(3.0)
    assert word_error_rate("", "") == 0.0
    assert math.isinf(word_error_rate("", "hello"))
    assert word_error_rate("hello world", "") == 1.0


def test_normalisation():
    assert normalize("  Hello, WORLD!  It's   me. ") == "hello world it's me"
    assert word_error_rate("Hello, world.", "hello world") == 0.0
    assert word_error_rate("Hello, world.", "hello world", normalise=False) == 1.0


def test_edit_counts_is_symmetric_in_total_cost():
    a, b = "kitten sitting on a mat".split(), "sitting kitten on the mat too".split()
    assert edit_counts(a, b).errors == edit_counts(b, a).errors


def test_character_error_rate():
    # kitten -> sitting: the classic Levenshtein distance of 3.
    assert character_error_rate("kitten", "sitting") == pytest.approx(3 / 6)
    assert character_error_rate("안녕하세요", "안녕하세오") == pytest.approx(1 / 5)
