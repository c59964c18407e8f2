"""Seeded speaker scripts, speaker identities and split assignment.

A *script* is what a speaker says in one conversation: a topic and a sequence of
utterances whose emotions follow an arc (e.g. neutral -> sadness -> joy). Every utterance
has an id, its text, an emotion label, whether it is a question, and the ``script_id``
it belongs to, so that train/val/test splits can be made disjoint by script.

Utterances are composed from templates and word lists written for this project. A script
is a pure function of its ``script_id``; a :class:`SpeakerProfile` is a pure function of
its ``speaker_id``. Splits are assigned by hashing ids (:func:`split_of_script`,
:func:`split_of_speaker`); a conversation belongs to split *s* only when both its script
and its speaker are in *s* (:func:`split_of`), which makes the splits disjoint in both.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

import numpy as np

EMOTIONS: tuple[str, ...] = ("neutral", "joy", "sadness", "anger", "surprise", "fear")
SPLITS: tuple[str, ...] = ("train", "val", "test")
# Fractions of ids that fall in each split (by hash), 80/10/10.
SPLIT_FRACTIONS: tuple[float, float, float] = (0.8, 0.1, 0.1)
N_SCRIPT_IDS = 5000
N_SPEAKER_IDS = 400

HESITATIONS: tuple[str, ...] = ("um,", "uh,", "well...", "you know,", "hmm...", "so, um,", "I mean,", "like,")

_PEOPLE = (
    "my sister", "my brother", "my neighbour", "my friend Sam", "my aunt", "our teacher", "my boss",
    "my cousin", "my grandmother", "a colleague", "my old roommate", "the new manager", "my dad", "my mum",
)
_THINGS = (
    "the old car", "my laptop", "the garden", "the kitchen", "my phone", "the bike", "the piano",
    "our house", "the dog", "the project", "my camera", "the boat", "the tickets", "the cake",
)
_PLACES = (
    "the station", "the park", "the hospital", "the office", "the beach", "the market", "the library",
    "the airport", "the school", "the museum", "the harbour", "the mountains", "the city centre",
)
_TIMES = (
    "yesterday", "last week", "this morning", "on Sunday", "last night", "a month ago", "on Friday",
    "two days ago", "after lunch", "this weekend", "earlier today", "last summer",
)
_EVENTS = (
    "the wedding", "the interview", "the exam", "the match", "the concert", "the trip", "the move",
    "the party", "the meeting", "the race", "the audition", "the holiday", "the operation",
)
_TOPICS = (
    "family", "work", "travel", "health", "hobbies", "home", "school", "sports", "pets", "neighbours",
)

_TEMPLATES: dict[str, tuple[str, ...]] = {
    "neutral": (
        "I went to {place} {time} with {person}",
        "So {person} was talking about {event}",
        "We had to take {thing} to {place}",
        "It was just a normal day at {place}",
        "{person} mentioned {event} {time}",
        "Anyway, we looked at {thing} and then went home",
        "The plan was to meet at {place} after {event}",
        "I think {person} is still working on {thing}",
        "We spent most of {time} sorting out {thing}",
        "There is a lot going on with {event} right now",
    ),
    "joy": (
        "And guess what, {person} won {event}",
        "It was honestly the best day I have had in ages",
        "{person} surprised me with {thing} and I loved it",
        "We laughed so much at {place} {time}",
        "I finally got {thing} working and it feels great",
        "Everyone was so happy after {event}",
        "{person} said yes, can you believe how lucky that is",
        "The weather at {place} was perfect and we had a wonderful time",
        "I am really proud of how {event} turned out",
        "We are celebrating {event} {time}, it is going to be lovely",
    ),
    "sadness": (
        "But then {person} told me {thing} was gone",
        "I have been feeling really low since {event}",
        "{person} is in {place} and it is not looking good",
        "We had to say goodbye to the dog {time}",
        "I miss {person} so much, it has been hard",
        "Nothing went right at {event} and I just felt empty",
        "{person} lost the job {time}, and they are heartbroken",
        "It is sad, we will probably have to sell {thing}",
        "I cried all the way home from {place}",
        "After {event} it all felt very lonely",
    ),
    "anger": (
        "And then {person} just broke {thing} without asking",
        "I am so annoyed, they cancelled {event} at the last minute",
        "Nobody at {place} would listen, it was ridiculous",
        "{person} lied to me about {thing} again",
        "They charged us twice at {place} and refused to fix it",
        "I could not believe how rude {person} was {time}",
        "It makes me furious that {event} was such a mess",
        "Honestly, they ruined {thing} and did not even apologise",
        "I waited at {place} for three hours for nothing",
        "{person} keeps blaming me for {event} and it is not fair",
    ),
    "surprise": (
        "Wait, {person} turned up at {place} out of nowhere",
        "I could not believe it, {thing} was still there",
        "Out of the blue {person} called about {event}",
        "Suddenly the whole of {place} went quiet",
        "No way, {person} already knew about {event}",
        "It turns out {thing} was a present from {person}",
        "I opened the door and there was {person} with {thing}",
        "We found {thing} at {place} after all this time",
        "Then, all of a sudden, {event} was moved to {time}",
        "I had no idea {person} could play the piano",
    ),
    "fear": (
        "I was really scared when {thing} started smoking",
        "There was a strange noise at {place} in the middle of the night",
        "{person} did not answer the phone and I started to panic",
        "I am nervous about {event}, what if it goes wrong",
        "The car slid on the ice near {place} and I froze",
        "I got lost at {place} and my heart was pounding",
        "What if {person} does not get better",
        "Someone was following us near {place} {time}",
        "I am terrified of {event}, I cannot sleep",
        "The lights went out at {place} and nobody moved",
    ),
}
_QUESTIONS: dict[str, tuple[str, ...]] = {
    "neutral": (
        "Have you ever been to {place}",
        "Do you know {person}",
        "What would you do with {thing}",
        "Are you going to {event}",
        "Did I tell you about {event}",
    ),
    "joy": (
        "Isn't that amazing",
        "Can you believe how lucky we were",
        "Wouldn't you love to see {place}",
        "Isn't {person} the best",
    ),
    "sadness": (
        "What am I supposed to do now",
        "Why does this always happen to us",
        "Do you think it will ever get better",
        "Have you ever lost someone close",
    ),
    "anger": (
        "Can you believe they did that",
        "Who does that to someone",
        "Why would {person} say that",
        "How is that fair",
    ),
    "surprise": (
        "Can you imagine",
        "Did you know about {event}",
        "How did {person} even find out",
        "Who would have thought",
    ),
    "fear": (
        "What if it happens again",
        "Would you have stayed at {place}",
        "What should I do if {person} calls",
        "Do you think we are safe",
    ),
}
_SLOTS = {"person": _PEOPLE, "thing": _THINGS, "place": _PLACES, "time": _TIMES, "event": _EVENTS}

# Emotion arcs: a conversation's sequence of emotional episodes. Each arc starts with a neutral
# set-up, as told stories do (Labov's orientation -> complication -> resolution).
_ARCS: tuple[tuple[str, ...], ...] = (
    ("neutral", "sadness", "neutral"),
    ("neutral", "joy"),
    ("neutral", "anger", "neutral"),
    ("neutral", "surprise", "joy"),
    ("neutral", "fear", "neutral", "joy"),
    ("neutral", "sadness", "joy"),
    ("neutral", "joy", "sadness"),
    ("neutral", "anger", "sadness"),
    ("neutral", "fear", "surprise"),
    ("neutral", "surprise", "anger"),
    ("neutral", "joy", "surprise", "joy"),
    ("neutral", "sadness", "fear"),
)


def stable_hash(*parts: object) -> int:
    """A 64-bit hash of ``parts`` that, unlike ``hash()``, is the same in every process."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _rng(*parts: object) -> np.random.Generator:
    return np.random.default_rng(stable_hash(*parts))


@dataclass(frozen=True)
class Utterance:
    """One utterance of a script.

    ``words`` are the display tokens, punctuation attached (``"well..."``, ``"home,"``), so
    a timeline can pause after commas and ellipses.
    """

    utt_id: str
    script_id: int
    index: int
    text: str
    emotion: str
    is_question: bool
    hesitant: bool

    @property
    def words(self) -> tuple[str, ...]:
        return tuple(self.text.split())


@dataclass(frozen=True)
class Script:
    """What a speaker says in one conversation."""

    script_id: int
    topic: str
    arc: tuple[str, ...]
    utterances: tuple[Utterance, ...]

    @property
    def emotions(self) -> set[str]:
        return {u.emotion for u in self.utterances}


def _fill(template: str, rng: np.random.Generator) -> str:
    def repl(m: re.Match[str]) -> str:
        words = _SLOTS[m.group(1)]
        return str(words[int(rng.integers(len(words)))])

    return re.sub(r"\{(\w+)\}", repl, template)


def _compose(emotion: str, question: bool, hesitant: bool, rng: np.random.Generator) -> str:
    pool = _QUESTIONS[emotion] if question else _TEMPLATES[emotion]
    text = _fill(pool[int(rng.integers(len(pool)))], rng)
    text = text[0].upper() + text[1:]
    if hesitant:
        hes = HESITATIONS[int(rng.integers(len(HESITATIONS)))]
        if rng.random() < 0.6:
            first = text.split()[0]
            keep = first == "I" or first.startswith("I'")
            text = hes[0].upper() + hes[1:] + " " + (text if keep else text[0].lower() + text[1:])
        else:
            # Mid-utterance hesitation: speakers pause before content words (Clark & Fox Tree 2002).
            words = text.split()
            k = int(rng.integers(1, max(2, len(words) - 1)))
            words.insert(k, hes)
            text = " ".join(words)
    return text + ("?" if question else ("!" if emotion in ("joy", "surprise", "anger") and rng.random() < 0.4
                                          else "."))


def estimate_words_duration_s(n_words: int, rate_wpm: float = 160.0) -> float:
    """Rough speaking time of ``n_words`` words, used only to size scripts."""
    return n_words * 60.0 / rate_wpm


def make_script(script_id: int, n_utterances: int | None = None) -> Script:
    """The script with id ``script_id`` (a pure function of the id).

    The number of utterances is drawn for a conversation of roughly 20-110 s (the timeline
    later enforces the exact 20-120 s bounds). Emotions follow one of the arcs in ``_ARCS``;
    about 15 % of utterances are questions and 20 % carry a hesitation.
    """
    rng = _rng("script", script_id)
    arc = _ARCS[int(rng.integers(len(_ARCS)))]
    topic = _TOPICS[int(rng.integers(len(_TOPICS)))]
    if n_utterances is None:
        # An utterance plus its pause takes ~3.5-4 s at typical rates.
        target_s = float(rng.uniform(22.0, 100.0))
        n_utterances = max(len(arc) + 1, round(target_s / 3.8))
    # Episode lengths: split n utterances over the arc, every episode at least one utterance.
    cuts = np.sort(rng.choice(np.arange(1, n_utterances), size=min(len(arc) - 1, n_utterances - 1),
                              replace=False))
    episode = np.searchsorted(cuts, np.arange(n_utterances), side="right")
    utts: list[Utterance] = []
    for i in range(n_utterances):
        emotion = arc[min(int(episode[i]), len(arc) - 1)]
        last_of_episode = i == n_utterances - 1 or episode[i + 1] != episode[i]
        question = bool(rng.random() < (0.35 if last_of_episode else 0.1))
        hesitant = bool(rng.random() < 0.2)
        text = _compose(emotion, question, hesitant, rng)
        utts.append(Utterance(f"s{script_id:05d}_u{i:03d}", script_id, i, text, emotion, question, hesitant))
    return Script(script_id, topic, arc, tuple(utts))


# --- speakers --------------------------------------------------------------------------------

# espeak-ng voices shipped by Debian's espeak-ng-data (no mbrola needed), and voice variants.
ESPEAK_VOICES: tuple[str, ...] = (
    "en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
)
ESPEAK_VARIANTS: tuple[str, ...] = ("", "+f1", "+f2", "+f3", "+f4", "+m1", "+m2", "+m3", "+m4", "+m7")


@dataclass(frozen=True)
class SpeakerProfile:
    """A speaker identity: voice and face behaviour (a pure function of ``speaker_id``).

    ``rate_wpm`` is the espeak-ng speaking rate in words per minute; ``pitch`` espeak-ng's
    0-99 pitch; ``expressivity`` scales emotion displays (0.4-1.2); ``blink_rate`` is in
    blinks per minute (humans: ~15-20 at rest, fewer while speaking is not modelled;
    Bentivoglio et al. 1997); ``head_amp`` is the head random-walk amplitude in radians.
    """

    speaker_id: int
    voice: str
    rate_wpm: float
    pitch: int
    expressivity: float
    blink_rate: float
    head_amp: float
    mouth_gain: float
    smile_bias: float

    @classmethod
    def from_id(cls, speaker_id: int) -> SpeakerProfile:
        rng = _rng("speaker", speaker_id)
        voice = ESPEAK_VOICES[int(rng.integers(len(ESPEAK_VOICES)))]
        variant = ESPEAK_VARIANTS[int(rng.integers(len(ESPEAK_VARIANTS)))]
        return cls(
            speaker_id=speaker_id,
            voice=voice + variant,
            rate_wpm=float(rng.uniform(140.0, 190.0)),
            pitch=int(rng.integers(30, 71)),
            expressivity=float(rng.uniform(0.4, 1.2)),
            blink_rate=float(rng.uniform(12.0, 24.0)),
            head_amp=float(rng.uniform(0.02, 0.07)),
            mouth_gain=float(rng.uniform(0.7, 1.2)),
            smile_bias=float(rng.uniform(0.0, 0.12)),
        )


# --- splits ----------------------------------------------------------------------------------

def _split_from_hash(kind: str, ident: int) -> str:
    u = (stable_hash("split", kind, ident) % 1_000_000) / 1_000_000.0
    edges = np.cumsum(SPLIT_FRACTIONS)
    return SPLITS[int(np.searchsorted(edges, u, side="right"))]


def split_of_script(script_id: int) -> str:
    """Split ('train', 'val' or 'test') that ``script_id`` belongs to (80/10/10 by hash)."""
    return _split_from_hash("script", script_id)


def split_of_speaker(speaker_id: int) -> str:
    """Split that ``speaker_id`` belongs to (80/10/10 by hash, independent of scripts)."""
    return _split_from_hash("speaker", speaker_id)


def split_of(script_id: int, speaker_id: int) -> str | None:
    """Split of a (script, speaker) pair, or ``None`` when they disagree (pair unusable).

    Using only agreeing pairs makes splits disjoint by script *and* by speaker.
    """
    s = split_of_script(script_id)
    return s if s == split_of_speaker(speaker_id) else None


@dataclass(frozen=True)
class SplitPools:
    """Ids available to one split."""

    split: str
    script_ids: tuple[int, ...] = field(repr=False)
    speaker_ids: tuple[int, ...] = field(repr=False)


_POOLS: dict[str, SplitPools] = {}


def split_pools(split: str) -> SplitPools:
    """All script ids (< ``N_SCRIPT_IDS``) and speaker ids (< ``N_SPEAKER_IDS``) of ``split``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    if split not in _POOLS:
        _POOLS[split] = SplitPools(
            split,
            tuple(i for i in range(N_SCRIPT_IDS) if split_of_script(i) == split),
            tuple(i for i in range(N_SPEAKER_IDS) if split_of_speaker(i) == split),
        )
    return _POOLS[split]
