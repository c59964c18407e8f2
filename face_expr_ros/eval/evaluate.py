"""Evaluate a listener policy and the baselines on one split: metrics, simulated raters, plots.

For every conversation of the split, every method produces listener tracks:

* ``ground-truth``: the recorded listener (the reference row: L2 and FD are 0 by definition);
* ``policy-greedy``: the policy streamed frame by frame at temperature 0, as the average listener
  (persona ``"mean"``): the one deterministic output;
* ``policy-sampled``: ``samples`` streamed runs at ``temperature`` with different seeds, each as a
  persona drawn from the training listeners (the runtime's default);
* ``policy-greedy-drawn``: temperature 0 as each sampled run's persona (same seeds, so the same
  draws): against ``policy-sampled`` it isolates what sampling the tokens does from who is played;
* the baselines of :mod:`face_expr_ros.eval.baselines` (stochastic ones also ``samples`` times).

The policy sees exactly what it would see on the robot, one :class:`Observation` per frame:
the speaker's expression when the face is present (None otherwise), that frame's audio
features, the embedding of the running transcript (recomputed only when ``words_heard``
changes) and the seconds since the last word.

Metrics (:mod:`face_expr_ros.eval.metrics`) are computed per conversation and averaged over
conversations, except FD, P-FD and FRDvs which are computed over the whole split from running
sums. "Appropriate real reactions" for FRCorr / FRDist (REACT 2023) are, for a synthetic
conversation, the rule-based listeners of the good styles (``APPROPRIATE_STYLES``) regenerated
for the same speaker context with their own seeds, plus the recorded listener if its style is
one of ``GOOD_STYLES``; for a real recording (no timeline), the recorded listener alone.
Rater scores come from a simulated panel whose seed differs from the training panels'.
"""

from __future__ import annotations

import json
import math
import multiprocessing
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from face_expr_ros import expression as ex
from face_expr_ros.eval import metrics as M
from face_expr_ros.eval.baselines import (
    BASELINE_NAMES,
    Baseline,
    fit_length,
    make_baselines,
    stable_seed,
    timeline_of,
)
from face_expr_ros.learning.features import audio_frame_features
from face_expr_ros.learning.shards import Conversation, iter_conversations, read_manifest
from face_expr_ros.policy.calibration import CALIBRATION_FILE, OutputCalibration
from face_expr_ros.policy.persona import DEFAULT_PERSONA_SPREAD
from face_expr_ros.policy.sampling import (
    DEFAULT_CODE_PERSISTENCE,
    DEFAULT_EYELID_TEMPERATURE,
    DEFAULT_GAZE_TEMPERATURE,
    DEFAULT_HEAD_TEMPERATURE,
    DEFAULT_LEVEL_NOISE_TAU_S,
    DEFAULT_TEMPERATURE,
    DEFAULT_TOKEN_TEMPERATURE,
    DEFAULT_TOP_P,
)
from face_expr_ros.sim.listeners import listener_track, sample_params
from face_expr_ros.sim.raters import CRITERIA, Percept, RaterPanel, perceive

F32 = NDArray[np.float32]
T = TypeVar("T")

GOOD_STYLES: tuple[str, ...] = ("attentive", "reserved")
APPROPRIATE_STYLES: tuple[str, ...] = ("attentive", "attentive", "reserved")
GT, GREEDY, SAMPLED = "ground-truth", "policy-greedy", "policy-sampled"
GREEDY_DRAWN = "policy-greedy-drawn"
FRDVS_MAX_FRAMES = 900  # FRDvs compares the first 30 s (or the shortest conversation) of every track

# Table columns: key, header, format, which direction is better ("low", "high", "gt": close to GT).
COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("l2", "L2", "{:.3f}", "low"),
    ("fd", "FD", "{:.3f}", "low"),
    ("p_fd", "P-FD", "{:.3f}", "low"),
    ("variation", "Var", "{:.4f}", "gt"),
    ("si_div", "SI-Div", "{:.3f}", "high"),
    ("rpcc", "rPCC", "{:.3f}", "low"),
    ("affect_l2_x100", "Affect L2 x100", "{:.2f}", "low"),
    ("frcorr", "FRCorr", "{:.3f}", "high"),
    ("frdist", "FRDist", "{:.3f}", "low"),
    ("frdiv", "FRDiv", "{:.4f}", "high"),
    ("frvar", "FRVar", "{:.4f}", "gt"),
    ("frdvs", "FRDvs", "{:.4f}", "high"),
    ("frsyn", "FRSyn s", "{:.2f}", "gt"),
    ("empathy", "Emp", "{:.2f}", "high"),
    ("appropriateness", "App", "{:.2f}", "high"),
    ("engagement", "Eng", "{:.2f}", "high"),
    ("naturalness", "Nat", "{:.2f}", "high"),
    ("overall", "Overall", "{:.2f}", "high"),
)
PER_CONVERSATION = ("l2", "variation", "si_div", "rpcc", "affect_l2", "frcorr", "frdist", "frdiv", "frvar", "frsyn")


@dataclass
class EvalConfig:
    """What ``face-expr eval`` runs (see ``docs/evaluation.md``)."""

    data: Path
    split: str = "test"
    policy: Path | None = None
    samples: int = 10
    out: Path = Path("eval_out")
    max_conversations: int | None = None
    panel_seed: int = 2000
    n_raters: int = 5
    backend: str = "onnxruntime"
    temperature: float = DEFAULT_TEMPERATURE
    top_p: float = DEFAULT_TOP_P
    token_temperature: float = DEFAULT_TOKEN_TEMPERATURE
    eyelid_temperature: float = DEFAULT_EYELID_TEMPERATURE
    gaze_temperature: float = DEFAULT_GAZE_TEMPERATURE
    head_temperature: float = DEFAULT_HEAD_TEMPERATURE
    code_persistence: float = DEFAULT_CODE_PERSISTENCE
    level_noise_tau_s: float = DEFAULT_LEVEL_NOISE_TAU_S
    persona: str | int = "sample"  # of the sampled runs (runtime.Policy); greedy runs are the mean persona
    persona_spread: float = DEFAULT_PERSONA_SPREAD
    calibrate: bool = True  # apply the policy directory's output calibration, if it has one
    text: str = "auto"  # auto (what the policy was trained with) | minilm | none
    text_encoder_dir: Path | None = None  # None: the user cache (text_encoder.default_encoder_dir)
    baselines: tuple[str, ...] = BASELINE_NAMES
    seed: int = 0
    workers: int = 1
    dtw_factor: int = 3
    plot_conversations: int = 2
    max_train: int | None = None
    allow_seen: bool = False  # score conversations a method was fitted on (see seen_in_training)
    greedy: bool = True  # also the greedy rows (policy-greedy, policy-greedy-drawn) beside the sampled runs
    progress: bool = True


# ----------------------------------------------------------------------------- inputs
def appropriate_reactions(conv: Conversation, seed: int = 0) -> list[F32]:
    """The appropriate real reactions of a conversation (module docstring)."""
    gt = conv.arrays["listener_expression"].astype(np.float32)
    timeline = timeline_of(conv)
    if timeline is None:
        return [gt]
    out = [gt] if conv.metadata.get("listener_style") in GOOD_STYLES else []
    for k, style in enumerate(APPROPRIATE_STYLES):
        rng = np.random.default_rng(stable_seed(seed, conv.conversation_id, "appropriate", k))
        params = sample_params(style, rng)
        track = listener_track(params, timeline, conv.arrays["speaker_expression"], int(rng.integers(2**31)))
        out.append(fit_length(track, conv.n_frames))
    return out


class TranscriptEmbedder:
    """Per frame, the embedding of the text the policy reads at run time (``transcript_text`` of the
    words up to the last phrase end, as in training), computed once per change."""

    def __init__(self, encoder: Any | None) -> None:
        self.encoder = encoder
        self._cache: dict[tuple[str, int], F32] = {}

    def rows(self, conv: Conversation) -> list[F32 | None]:
        """Per frame, the text embedding the policy sees (None: no text, the policy's zero vector)."""
        from face_expr_ros.perception.text_encoder import transcript_text, words_at_phrase_end

        if self.encoder is None:
            return [None] * conv.n_frames
        heard = words_at_phrase_end(conv.words, conv.arrays["words_heard"])
        out: list[F32 | None] = []
        last, emb = -1, None
        for n in heard:
            if n != last:
                key = (conv.conversation_id, int(n))
                if key not in self._cache:
                    text = transcript_text([w for w, _, _ in conv.words[: int(n)]])
                    self._cache[key] = np.asarray(self.encoder.embed(text), np.float32)
                emb, last = self._cache[key], n
            out.append(emb)
        return out


def run_policy(policy: Any, conv: Conversation, text_rows: Sequence[F32 | None], seed: int,
               temperature: float, token_temperature: float | None = None,
               persona: str | int | F32 = "sample") -> F32:
    """Stream ``conv`` through ``policy`` (a runtime.Policy) frame by frame as ``persona`` (a choice
    of ``PersonaSpace.choose`` or a persona vector); returns (T, 55)."""
    from face_expr_ros.policy.runtime import Observation

    audio = audio_frame_features(conv)
    if audio.shape[1] != policy.cfg.audio_dim:
        raise ValueError(f"{conv.conversation_id}: {audio.shape[1]} audio features per frame, the policy was "
                         f"trained on {policy.cfg.audio_dim}")
    speaker = conv.arrays["speaker_expression"]
    present = conv.arrays["speaker_face_present"]
    policy.temperature = temperature
    if token_temperature is not None:
        policy.token_temperature = token_temperature
    if isinstance(persona, np.ndarray):
        policy.reset(seed)
        policy.set_persona(persona)
    else:
        policy.persona_choice = persona
        policy.reset(seed)
    out = np.empty((conv.n_frames, ex.DIM), np.float32)
    for t in range(conv.n_frames):
        obs = Observation(speaker[t] if present[t] else None, audio[t], text_rows[t])
        out[t] = policy.step(obs)
    return out


def _finite_mean(values: Sequence[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def int_seed(*parts: int | str) -> int:
    """An integer seed that depends only on ``parts`` (a run's seed, by conversation and sample)."""
    return int(np.random.SeedSequence(stable_seed(*parts)).generate_state(1)[0])


# ----------------------------------------------------------------------------- per conversation
@dataclass
class MethodPart:
    """One method on one conversation: per-conversation metrics and the sums for split-level ones."""

    scalars: dict[str, float]
    frames: M.GaussianStats
    paired: M.GaussianStats
    spread: list[M.SpreadStats]
    percepts: list[Percept]
    n_tracks: int


@dataclass
class ConversationPart:
    conversation_id: str
    n_frames: int
    style: str | None
    frames: M.GaussianStats
    paired: M.GaussianStats
    methods: dict[str, MethodPart]
    traces: dict[str, F32] | None = None


def score_tracks(conv: Conversation, tracks: Sequence[F32], appropriate: Sequence[F32], deterministic: bool,
                 crop: int, dtw_factor: int = 3) -> MethodPart:
    """All metrics of one method's tracks (first = main output, others = more samples) on one conversation."""
    s = conv.arrays["speaker_expression"].astype(np.float64)
    gt = conv.arrays["listener_expression"].astype(np.float64)
    t64 = [np.asarray(x, np.float64) for x in tracks]
    if len(t64) > 1:
        si, div = M.si_diversity(t64), M.frdiv(t64)
    else:
        si = div = 0.0 if deterministic else math.nan
    scalars = {
        "l2": float(np.mean([M.l2(x, gt) for x in t64])),
        "variation": M.variation(t64[0]),
        "si_div": si,
        "rpcc": float(np.mean([M.rpcc(s, x, gt) for x in t64])),
        "affect_l2": float(np.mean([M.affect_l2(x, gt) for x in t64])),
        "frcorr": float(np.mean([M.frcorr(x, appropriate) for x in t64])),
        "frdist": float(np.mean([M.frdist(x, appropriate, dtw_factor) for x in t64])),
        "frdiv": div,
        "frvar": M.frvar(t64),
        "frsyn": _finite_mean([M.frsyn(s, x) for x in t64]),
    }
    frames, paired = M.GaussianStats(ex.DIM), M.GaussianStats(2 * ex.DIM)
    for x in t64:
        frames.update(x)
        paired.update(M.paired_frames(s, x))
    timeline = timeline_of(conv)
    percepts = [perceive(np.asarray(x, np.float32), timeline) for x in tracks] if timeline is not None else []
    return MethodPart(scalars, frames, paired, [M.SpreadStats().update(x[:crop]) for x in t64], percepts, len(t64))


_STATE: dict[str, Any] = {}


def _load_policy_into_state(cfg: EvalConfig, threads: int) -> None:
    if cfg.policy is None:
        _STATE["policy"], _STATE["embedder"] = None, TranscriptEmbedder(None)
        return
    from face_expr_ros.policy.runtime import Policy

    _STATE["policy"] = Policy.load(cfg.policy, cfg.backend, threads=threads, temperature=0.0, top_p=cfg.top_p,
                                   persona=cfg.persona, persona_spread=cfg.persona_spread,
                                   eyelid_temperature=cfg.eyelid_temperature,
                                   gaze_temperature=cfg.gaze_temperature, head_temperature=cfg.head_temperature,
                                   code_persistence=cfg.code_persistence,
                                   level_noise_tau_s=cfg.level_noise_tau_s, calibrate=cfg.calibrate)
    mode = text_mode(cfg)
    encoder = None
    if mode == "minilm":
        from face_expr_ros.perception.text_encoder import TextEncoder, default_encoder_dir

        encoder = TextEncoder.ensure(cfg.text_encoder_dir or default_encoder_dir())
    _STATE["embedder"] = TranscriptEmbedder(encoder)


def trained_text_mode(policy_dir: str | Path) -> str:
    """The text mode a policy was trained with (``config.json["text"]``; none if not recorded)."""
    return str(json.loads((Path(policy_dir) / "config.json").read_text()).get("text", "none"))


def text_mode(cfg: EvalConfig) -> str:
    """``minilm`` or ``none``: ``auto`` reads what the policy was trained with (``config.json["text"]``)."""
    if cfg.policy is None:
        return "none"
    mode = trained_text_mode(cfg.policy) if cfg.text == "auto" else cfg.text
    if mode not in ("minilm", "none"):
        raise ValueError(f"text mode must be auto, minilm or none, got {mode!r}")
    return mode


def load_split(cfg: EvalConfig) -> list[Conversation]:
    """The conversations to evaluate: ``cfg.split``, with a listener, at most ``cfg.max_conversations``."""
    if not read_manifest(cfg.data).ids(cfg.split):
        raise ValueError(f"{cfg.data}: no conversations in split {cfg.split!r}")
    conversations = [c for c in iter_conversations(cfg.data, cfg.split) if c.metadata.get("has_listener", True)]
    if cfg.max_conversations is not None:
        conversations = conversations[: cfg.max_conversations]
    if not conversations:
        raise ValueError(f"{cfg.data}: no conversations with a listener in split {cfg.split!r}")
    return conversations


def seen_in_training(cfg: EvalConfig, conversation_ids: Sequence[str]) -> dict[str, list[str]]:
    """Which of the evaluated conversations a method was fitted on, by the shards' fingerprints.

    ``"policy"``: those in the policy's ``config.json["trained_on"]`` (whatever folder and split
    they were trained from; a model saved before the field existed is not checked) and, when it
    is applied, in its output calibration's ``fitted_on``;
    ``"baselines"``: those in the train split of ``cfg.data``, which random-from-train and
    nearest-neighbour retrieval replay. Scores on such conversations measure memory, not
    generalisation: nearest-neighbour retrieval finds the recorded listener itself.
    """
    manifest = read_manifest(cfg.data)
    fingerprint = {c["id"]: c["sha256"][:16] for c in manifest.conversations}
    seen: dict[str, list[str]] = {"policy": [], "baselines": []}
    if cfg.policy is not None:
        meta = json.loads((Path(cfg.policy) / "config.json").read_text())
        trained_on = set(meta.get("trained_on", []))
        calibration = Path(cfg.policy) / CALIBRATION_FILE
        if cfg.calibrate and calibration.is_file():
            trained_on |= set(OutputCalibration.load(calibration).meta.get("fitted_on", []))
        seen["policy"] = [i for i in conversation_ids if fingerprint[i] in trained_on]
    if any(n in ("random-train", "nn-retrieval") for n in cfg.baselines):
        train = set(manifest.fingerprints("train"))
        seen["baselines"] = [i for i in conversation_ids if fingerprint[i] in train]
    return seen


def check_unseen(cfg: EvalConfig, conversation_ids: Sequence[str]) -> dict[str, list[str]]:
    """:func:`seen_in_training`, raising unless ``cfg.allow_seen`` when any method has seen any."""
    seen = seen_in_training(cfg, conversation_ids)
    if not cfg.allow_seen:
        for who, ids in seen.items():
            if ids:
                source = f"{cfg.policy}/config.json 'trained_on'" if who == "policy" else f"{cfg.data} split 'train'"
                raise ValueError(
                    f"{len(ids)} of {len(conversation_ids)} conversations of split {cfg.split!r} in {cfg.data} "
                    f"were in the training data of the {who} ({source}), e.g. {', '.join(ids[:3])}: scores on them "
                    "measure memory, not generalisation. Evaluate another split or dataset (`face-expr data synth "
                    "--seed S` numbers conversations from S, so a new set needs S >= the training set's seed + "
                    "its size), or pass --allow-seen to score them anyway.")
    return seen


def load_baselines(cfg: EvalConfig) -> list[Baseline]:
    """``cfg.baselines``, fitted on the dataset's train split (read lazily, once)."""
    if not cfg.baselines:
        return []
    needs_train = any(n in ("random-train", "nn-retrieval") for n in cfg.baselines)
    train = iter_conversations(cfg.data, "train") if needs_train else iter([])
    if cfg.max_train is not None:
        train = (c for _, c in zip(range(cfg.max_train), train))
    return make_baselines(train, cfg.baselines)


def _prepare_state(cfg: EvalConfig, threads: int) -> None:
    conversations = load_split(cfg)
    _STATE.clear()
    _STATE.update(cfg=cfg, conversations=conversations, baselines=load_baselines(cfg),
                  crop=min(FRDVS_MAX_FRAMES, min(c.n_frames for c in conversations)))
    _load_policy_into_state(cfg, threads)


def _worker_init(cfg: EvalConfig, threads: int) -> None:
    # Each worker reads the data and fits the baselines itself (deterministic, a few seconds):
    # cheaper than pickling hundreds of MB of training listeners to every process.
    _prepare_state(cfg, threads)


def map_conversations(cfg: EvalConfig, fn: Callable[[int], T], n_conv: int, progress: str | None = None) -> list[T]:
    """``[fn(i) for i in range(n_conv)]`` with the split, baselines and policy loaded (``n_conv``:
    ``len(load_split(cfg))``, which the caller has read already).

    ``fn(i)`` reads conversation ``i`` and the loaded methods from this module's state (e.g.
    :func:`method_tracks`); with ``cfg.workers`` > 1 it runs in that many spawned processes,
    each with its own one-thread policy, and must be a module-level function (picklable).
    """
    from tqdm import tqdm

    workers = max(1, min(cfg.workers, n_conv))
    out: list[T] = []
    with tqdm(total=n_conv, desc=progress or "eval", unit="conv", disable=not cfg.progress) as bar:
        if workers == 1:
            _prepare_state(cfg, threads=2)
            for i in range(n_conv):
                out.append(fn(i))
                bar.update()
        else:
            # spawn, not fork: a child forked from a process whose torch / ONNX Runtime thread pools
            # are running can deadlock (it did, in the tests). Each worker loads its own policy with
            # one thread, so two workers share two cores.
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(workers, initializer=_worker_init, initargs=(cfg, 1)) as pool:
                for item in pool.imap(fn, range(n_conv)):
                    out.append(item)
                    bar.update()
    _STATE.clear()
    return out


def method_tracks(index: int) -> tuple[Conversation, dict[str, tuple[list[F32], bool]]]:
    """Conversation ``index`` of the loaded split and every method's tracks on it: name ->
    (tracks, deterministic). The ground truth comes first; sampled methods have ``cfg.samples``
    tracks, drawn with seeds that depend only on (``cfg.seed``, conversation, sample)."""
    cfg: EvalConfig = _STATE["cfg"]
    conv: Conversation = _STATE["conversations"][index]
    baselines: list[Baseline] = _STATE["baselines"]
    gt = conv.arrays["listener_expression"].astype(np.float32)
    outputs: dict[str, tuple[list[F32], bool]] = {GT: ([gt], True)}
    policy = _STATE.get("policy")
    if policy is not None:
        rows = _STATE["embedder"].rows(conv)
        if cfg.greedy:
            outputs[GREEDY] = ([run_policy(policy, conv, rows, int_seed(cfg.seed, conv.conversation_id, "greedy"),
                                           0.0, persona="mean")], True)
        seeds = [int_seed(cfg.seed, conv.conversation_id, "policy", k) for k in range(cfg.samples)]
        outputs[SAMPLED] = ([run_policy(policy, conv, rows, seed, cfg.temperature, cfg.token_temperature, cfg.persona)
                             for seed in seeds], False)
        if cfg.greedy and cfg.persona == "sample":
            outputs[GREEDY_DRAWN] = ([run_policy(policy, conv, rows, seed, 0.0, persona=cfg.persona)
                                      for seed in seeds], False)
    for b in baselines:
        if not b.available(conv):
            continue
        n = 1 if b.deterministic else cfg.samples
        outputs[b.name] = ([fit_length(b.generate(conv, seed=cfg.seed + k), conv.n_frames) for k in range(n)],
                           b.deterministic)
    return conv, outputs


def evaluate_conversation(index: int) -> ConversationPart:
    """Every method on conversation ``index`` of the loaded split (state set up by :func:`evaluate`)."""
    cfg: EvalConfig = _STATE["cfg"]
    crop: int = _STATE["crop"]
    conv, outputs = method_tracks(index)
    gt = outputs[GT][0][0]
    appropriate = appropriate_reactions(conv, cfg.seed)
    s = conv.arrays["speaker_expression"]
    part = ConversationPart(
        conv.conversation_id, conv.n_frames, conv.metadata.get("listener_style"),
        M.GaussianStats(ex.DIM).update(gt), M.GaussianStats(2 * ex.DIM).update(M.paired_frames(s, gt)),
        {name: score_tracks(conv, tracks, appropriate, det, crop, cfg.dtw_factor)
         for name, (tracks, det) in outputs.items()},
    )
    if index < cfg.plot_conversations:
        part.traces = {"speaker": s.copy(), "ground truth": gt}
        # One generated listener per figure: more lines make the panels unreadable.
        shown = next((n for n in (GREEDY, "nn-retrieval", "mirror") if n in outputs), None)
        if shown is not None:
            part.traces[shown] = outputs[shown][0][0]
    return part


# ----------------------------------------------------------------------------- aggregation
@dataclass
class EvalResult:
    """Per-method summary rows, per-conversation metrics and the sampling check."""

    methods: dict[str, dict[str, float]]
    per_conversation: dict[str, dict[str, dict[str, float]]]
    sampling_check: dict[str, Any]
    config: dict[str, Any]
    files: list[str] = field(default_factory=list)


def aggregate(parts: Sequence[ConversationPart], panel: RaterPanel) -> tuple[dict[str, dict[str, float]],
                                                                               dict[str, dict[str, dict[str, float]]]]:
    """Per-method rows (metric -> value) and per-conversation metrics from the per-conversation parts."""
    gt_frames, gt_paired = M.GaussianStats(ex.DIM), M.GaussianStats(2 * ex.DIM)
    for p in parts:
        gt_frames.merge(p.frames)
        gt_paired.merge(p.paired)
    names: list[str] = []
    for p in parts:
        names += [n for n in p.methods if n not in names]
    rows: dict[str, dict[str, float]] = {}
    per_conv: dict[str, dict[str, dict[str, float]]] = {}
    for name in names:
        mine = [p.methods[name] for p in parts if name in p.methods]
        row: dict[str, float] = {"conversations": float(len(mine)),
                                 "tracks": float(sum(m.n_tracks for m in mine))}
        for key in PER_CONVERSATION:
            vals = np.array([m.scalars[key] for m in mine], np.float64)
            row[key] = float(np.nanmean(vals)) if np.isfinite(vals).any() else math.nan
        row["affect_l2_x100"] = 100.0 * row["affect_l2"]
        frames, paired = M.GaussianStats(ex.DIM), M.GaussianStats(2 * ex.DIM)
        for m in mine:
            frames.merge(m.frames)
            paired.merge(m.paired)
        row["fd"] = M.frechet_distance(frames.mean, frames.cov, gt_frames.mean, gt_frames.cov)
        row["p_fd"] = M.frechet_distance(paired.mean, paired.cov, gt_paired.mean, gt_paired.cov)
        spreads: list[M.SpreadStats] = []
        for m in mine:
            for k, sp in enumerate(m.spread):
                if k == len(spreads):
                    spreads.append(M.SpreadStats())
                spreads[k].merge(sp)
        dvs = [sp.value() for sp in spreads]
        row["frdvs"] = float(np.nanmean(dvs)) if np.isfinite(dvs).any() else math.nan
        percepts = [q for m in mine for q in m.percepts]
        if percepts:
            ratings = panel.rate_percepts(percepts)
            for k, crit in enumerate(CRITERIA):
                row[crit] = float(ratings.mean[:, k].mean())
            row["overall"] = float(ratings.overall.mean())
        else:
            for crit in (*CRITERIA, "overall"):
                row[crit] = math.nan
        rows[name] = row
        per_conv[name] = {p.conversation_id: dict(p.methods[name].scalars) for p in parts if name in p.methods}
    return rows, per_conv


def sampling_check(rows: dict[str, dict[str, float]], tolerance: float = 0.2) -> dict[str, Any]:
    """Is the mean rater score of sampled policy runs within ``tolerance`` of greedy's?"""
    if GREEDY not in rows or SAMPLED not in rows:
        return {"checked": False, "reason": "no policy evaluated"}
    g, s = rows[GREEDY]["overall"], rows[SAMPLED]["overall"]
    if not (np.isfinite(g) and np.isfinite(s)):
        return {"checked": False, "reason": "no rater scores (no timelines)"}
    check = {"checked": True, "greedy_overall": g, "sampled_overall": s, "difference": s - g,
             "tolerance": tolerance, "ok": bool(abs(s - g) <= tolerance)}
    if GREEDY_DRAWN in rows and np.isfinite(rows[GREEDY_DRAWN]["overall"]):
        drawn = rows[GREEDY_DRAWN]["overall"]
        check.update(greedy_drawn_overall=drawn, difference_drawn=s - drawn, ok_drawn=bool(abs(s - drawn) <= tolerance))
    return check


# ----------------------------------------------------------------------------- reports
def _fmt(value: float, spec: str) -> str:
    return "–" if value is None or not np.isfinite(value) else spec.format(value)


def results_markdown(result: EvalResult) -> str:
    """The results table and notes as Markdown."""
    arrow = {"low": " ↓", "high": " ↑", "gt": " ≈GT"}
    head = ["method", "n"] + [h + arrow[d] for _, h, _, d in COLUMNS]
    lines = ["# Evaluation", "", f"Data: `{result.config['data']}`, split `{result.config['split']}`, "
             f"policy `{result.config['policy']}`, {result.config['samples']} sample(s) per context at "
             f"temperature {result.config['temperature']} as persona "
             f"`{result.config.get('persona', 'sample')}` (spread {result.config.get('persona_spread', 1.0)}; "
             f"greedy: `mean`), output calibration {'on' if result.config.get('output_calibration') else 'off'}, "
             f"rater panel seed {result.config['panel_seed']} "
             f"({result.config['n_raters']} raters).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for who, ids in result.config.get("seen_in_training", {}).items():
        if ids:
            lines[3:3] = [f"**Not a test of generalisation:** the {who} was fitted on {len(ids)} of these "
                          f"conversations (`--allow-seen`).", ""]
    for name, row in result.methods.items():
        cells = [name, str(int(row["conversations"]))] + [_fmt(row.get(k, math.nan), f) for k, _, f, _ in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    chk = result.sampling_check
    lines += ["", "↓ lower is better, ↑ higher is better, ≈GT closest to the ground-truth row is best. "
              "– : not defined for this method (e.g. rater scores without a timeline, diversity of one "
              "stochastic sample). Deterministic methods have SI-Div = FRDiv = 0.", ""]
    if chk.get("checked"):
        verdict = "OK" if chk["ok"] else "FAILED"
        lines.append(f"Sampling check ({verdict}): mean overall rater score of sampled runs "
                     f"{chk['sampled_overall']:.2f} vs greedy {chk['greedy_overall']:.2f} "
                     f"(difference {chk['difference']:+.2f}, tolerance ±{chk['tolerance']}).")
        if "greedy_drawn_overall" in chk:
            verdict = "OK" if chk["ok_drawn"] else "FAILED"
            lines.append(f"Against greedy decoding of the same drawn personas ({verdict}): "
                         f"{chk['greedy_drawn_overall']:.2f} (difference {chk['difference_drawn']:+.2f}).")
    else:
        lines.append(f"Sampling check not run: {chk.get('reason')}.")
    lines += ["", "Appropriate real reactions (FRCorr, FRDist): the recorded listener if its style is "
              f"{' or '.join(GOOD_STYLES)}, plus the rule-based {', '.join(APPROPRIATE_STYLES)} listeners "
              "regenerated for the same speaker context; the rule-attentive and rule-reserved baselines come "
              "from the same generator, so their FRCorr/FRDist are optimistic. See docs/evaluation.md.", ""]
    return "\n".join(lines)


def plot_rater_bars(rows: dict[str, dict[str, float]], path: Path) -> Path:
    """Grouped bars: the four criteria and the overall score per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n, r in rows.items() if np.isfinite(r.get("overall", math.nan))]
    keys = (*CRITERIA, "overall")
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(names) + 2), 4.2))
    width = 0.8 / len(keys)
    x = np.arange(len(names))
    for k, key in enumerate(keys):
        ax.bar(x + (k - (len(keys) - 1) / 2) * width, [rows[n][key] for n in names], width, label=key)
    ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(1, 5)
    ax.set_ylabel("simulated rater score (1-5)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=len(keys), loc="upper center", bbox_to_anchor=(0.5, 1.12))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


# ----------------------------------------------------------------------------- driver
def evaluate(cfg: EvalConfig) -> EvalResult:
    """Run every method on the split, score it, write results.md, results.json and plots to ``cfg.out``."""
    from face_expr_ros.eval.plots import plot_expression_traces

    if cfg.samples < 1:
        raise ValueError(f"samples must be >= 1, got {cfg.samples}")
    mode = text_mode(cfg)
    conversation_ids = [c.conversation_id for c in load_split(cfg)]
    seen = check_unseen(cfg, conversation_ids)
    parts = map_conversations(cfg, evaluate_conversation, len(conversation_ids))

    panel = RaterPanel.from_seed(cfg.panel_seed, cfg.n_raters)
    rows, per_conv = aggregate(parts, panel)
    config = {k: _jsonable(v) for k, v in asdict(cfg).items()}
    config["text_mode"] = mode
    config["output_calibration"] = bool(cfg.policy is not None and cfg.calibrate
                                        and (Path(cfg.policy) / CALIBRATION_FILE).is_file())
    config["conversations"] = [p.conversation_id for p in parts]
    config["seen_in_training"] = seen
    config["appropriate"] = {"good_styles": list(GOOD_STYLES), "regenerated_styles": list(APPROPRIATE_STYLES)}
    result = EvalResult(rows, per_conv, sampling_check(rows), config)

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    for p in parts:
        if p.traces:
            path = plot_expression_traces(p.traces, out / f"traces_{p.conversation_id}.png",
                                          title=f"{p.conversation_id} (recorded listener: {p.style})")
            result.files.append(str(path))
    if any(np.isfinite(r.get("overall", math.nan)) for r in rows.values()):
        result.files.append(str(plot_rater_bars(rows, out / "raters.png")))
    result.files += [str(out / "results.md"), str(out / "results.json")]
    (out / "results.md").write_text(results_markdown(result))
    (out / "results.json").write_text(json.dumps(_jsonable(asdict(result)), indent=1) + "\n")
    return result
