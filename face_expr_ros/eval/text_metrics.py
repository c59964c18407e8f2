"""Word and character error rates from the Levenshtein alignment.

``WER = (S + D + I) / N`` with S substitutions, D deletions and I insertions in the minimum
edit alignment of the hypothesis to the reference of N words (V. I. Levenshtein, "Binary codes
capable of correcting deletions, insertions and reversals", Soviet Physics Doklady 10(8), 1966;
the standard ASR scoring of NIST sclite with unit costs). It can exceed 1 when the hypothesis
has many insertions. With an empty reference WER is 0 for an empty hypothesis and ``inf``
otherwise, so that an evaluation loop never divides by zero but cannot hide insertions.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

_PUNCT = re.compile(r"[^\w\s']+")


@dataclass(frozen=True)
class ErrorCounts:
    """Edit operations of the best alignment and the reference length."""

    substitutions: int
    deletions: int
    insertions: int
    reference_length: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        if self.reference_length == 0:
            return 0.0 if self.errors == 0 else float("inf")
        return self.errors / self.reference_length


def normalize(text: str) -> str:
    """Lower case, Unicode NFKC, punctuation (except apostrophes) removed, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(_PUNCT.sub(" ", text).split())


def edit_counts(reference: Sequence[str], hypothesis: Sequence[str]) -> ErrorCounts:
    """Levenshtein alignment of two token sequences, O(len(ref) * len(hyp)) time, O(len(hyp)) memory."""
    n, m = len(reference), len(hypothesis)
    # Each cell holds (cost, subs, dels, ins); ties prefer substitution, then deletion, as sclite does.
    prev = [(j, 0, 0, j) for j in range(m + 1)]
    for i in range(1, n + 1):
        cur = [(i, 0, i, 0)]
        for j in range(1, m + 1):
            if reference[i - 1] == hypothesis[j - 1]:
                diag = prev[j - 1]
            else:
                c, s, d, ins = prev[j - 1]
                diag = (c + 1, s + 1, d, ins)
            c, s, d, ins = prev[j]
            dele = (c + 1, s, d + 1, ins)
            c, s, d, ins = cur[j - 1]
            inse = (c + 1, s, d, ins + 1)
            cur.append(min(diag, dele, inse, key=lambda t: t[0]))
        prev = cur
    _, s, d, ins = prev[m]
    return ErrorCounts(substitutions=s, deletions=d, insertions=ins, reference_length=n)


def wer_details(reference: str, hypothesis: str, *, normalise: bool = True) -> ErrorCounts:
    """Word-level error counts of two transcripts (normalised with :func:`normalize` by default)."""
    if normalise:
        reference, hypothesis = normalize(reference), normalize(hypothesis)
    return edit_counts(reference.split(), hypothesis.split())


def word_error_rate(reference: str, hypothesis: str, *, normalise: bool = True) -> float:
    """WER of ``hypothesis`` against ``reference`` (see the module docstring)."""
    return wer_details(reference, hypothesis, normalise=normalise).rate


def character_error_rate(reference: str, hypothesis: str, *, normalise: bool = True) -> float:
    """CER: the same edit distance over characters (spaces included), for unsegmented scripts."""
    if normalise:
        reference, hypothesis = normalize(reference), normalize(hypothesis)
    return edit_counts(list(reference), list(hypothesis)).rate
