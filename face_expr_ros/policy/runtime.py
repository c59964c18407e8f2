"""Streaming policy at 30 Hz: one observation in, one 55-d expression out, chunks blended.

``Policy.step`` keeps its own W-frame window of inputs (and of its own outputs, fed back as
``listener_past`` exactly as the training windows are built in ``learning/dataset.py``), samples
a new H-frame chunk every ``replan_every`` frames, and blends the chunks that cover the current
frame. Two blends:

* ``"ensemble"``: temporal ensembling of ACT (Zhao et al., 2023, "Learning Fine-Grained Bimanual
  Manipulation with Low-Cost Hardware", sec. IV): every chunk covering frame t contributes with
  weight ``w_i = exp(-m i)``, ``i = 0`` for the oldest; ``m`` (``ensemble_decay``) > 0 favours
  older plans (smoother), < 0 newer ones (more reactive), 0 is a plain mean.
* ``"crossfade"``: only the newest two chunks; the newest fades in linearly over
  ``replan_every`` frames.

Missing inputs are normal on a robot and are filled, never guessed: no face -> ``face_present``
0 and the last speaker frame (neutral before any); no audio -> a silent frame (the audio front
end's floors: log-mel ``log 1e-10``, -120 dB, unvoiced, no VAD), so the silence clock runs on; no
transcript -> a zero text embedding. The silence clock (seconds since the speaker's voice, the
network's pause timing) is computed here from the audio frames' VAD flag by
``features.SilenceClock``, as training computes it, so no caller can feed it differently. Inputs
that are present but of the wrong shape or not finite are errors naming the field: a broken
upstream node must be loud.

Who the listener is (its persona, ``persona.py``) is chosen at every ``reset``, a new
conversation: by default a training listener drawn with the policy's seed, so that a run of
conversations shows the mix of people in the data; ``persona="mean"`` is the average listener, an
integer a fixed one, and ``set_persona`` takes any vector (the persona of a recording, or one a
preference learner chose).

A policy directory may hold an output calibration (``calibration.py``): an affine map of the face
and a quantile map of the eyelids, fitted on the training split, that give the published frames
the recorded listeners' spread. ``step``
returns calibrated frames and keeps uncalibrated ones as the network's own history.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from face_expr_ros import expression as ex
from face_expr_ros.learning.features import ENERGY_OFFSET_DB, ENERGY_SCALE_DB, MAX_SILENCE_S, SilenceClock, voiced
from face_expr_ros.policy.backends import Backend, select_backend
from face_expr_ros.policy.calibration import OutputCalibration
from face_expr_ros.policy.model_dir import PolicyBundle, PolicyInputError, check_inputs, load_policy
from face_expr_ros.policy.network import PolicyConfig
from face_expr_ros.policy.persona import DEFAULT_PERSONA_SPREAD, PersonaSpace
from face_expr_ros.policy.sampling import (
    DEFAULT_CODE_PERSISTENCE,
    DEFAULT_EYELID_TEMPERATURE,
    DEFAULT_GAZE_TEMPERATURE,
    DEFAULT_HEAD_TEMPERATURE,
    DEFAULT_LEVEL_NOISE_TAU_S,
    DEFAULT_TEMPERATURE,
    DEFAULT_TOKEN_TEMPERATURE,
    DEFAULT_TOP_P,
    ChunkSample,
    LevelNoise,
    sample_chunk,
)
from face_expr_ros.policy.tokenizer import ActionTokenizer

F32 = NDArray[np.float32]
DEFAULT_REPLAN_EVERY = 4
DEFAULT_SMOOTHING_S = 0.1
_EYELIDS = list(ex.EYELIDS)
_GAZE = [i for i, name in enumerate(ex.EXPRESSION_NAMES) if name.startswith("eyeLook")]
_HEAD = list(range(ex.DIM))[ex.HEAD_SLICE]
LOG_MEL_FLOOR = math.log(1e-10)  # perception/audio_features.py floors mel power at 1e-10
ENERGY_FLOOR_DB = -120.0


@dataclass
class Observation:
    """What the policy sees at one 30 Hz tick; ``None`` means "not available this frame"."""

    speaker_expression: ArrayLike | None = None  # (55,) expression of the speaker's face
    audio_features: ArrayLike | None = None  # (n_mels + 4,) one frame of features.audio_frame_features
    text_embedding: ArrayLike | None = None  # (384,) embedding of the running transcript


def silent_audio_frame(audio_dim: int) -> F32:
    """The audio feature frame of digital silence, as ``features.audio_frame_features`` encodes it."""
    frame = np.full(audio_dim, LOG_MEL_FLOOR, np.float32)
    frame[-4:] = [(ENERGY_FLOOR_DB + ENERGY_OFFSET_DB) / ENERGY_SCALE_DB, 0.0, 0.0, 0.0]
    return frame


def _vector(value: ArrayLike, size: int, field: str, owner: str = "observation") -> F32:
    arr = np.asarray(value, dtype=np.float32)
    if arr.shape != (size,):
        raise PolicyInputError(f"{owner}.{field} has shape {arr.shape}, expected ({size},)")
    if not np.isfinite(arr).all():
        raise PolicyInputError(f"{owner}.{field} contains NaN or inf")
    return arr


class Policy:
    """The streaming listener policy over any back-end (see module doc)."""

    def __init__(self, backend: Backend, config: PolicyConfig, tokenizer: ActionTokenizer,
                 persona_space: PersonaSpace | None = None, *, persona: str | int = "sample",
                 persona_spread: float = DEFAULT_PERSONA_SPREAD, replan_every: int = DEFAULT_REPLAN_EVERY,
                 temperature: float = DEFAULT_TEMPERATURE, top_p: float = DEFAULT_TOP_P,
                 token_temperature: float | None = DEFAULT_TOKEN_TEMPERATURE,
                 eyelid_temperature: float | None = DEFAULT_EYELID_TEMPERATURE,
                 gaze_temperature: float | None = DEFAULT_GAZE_TEMPERATURE,
                 head_temperature: float | None = DEFAULT_HEAD_TEMPERATURE,
                 code_persistence: float = DEFAULT_CODE_PERSISTENCE,
                 level_noise_tau_s: float = DEFAULT_LEVEL_NOISE_TAU_S, seed: int = 0,
                 blend: str = "crossfade", ensemble_decay: float = 0.1,
                 smoothing_s: float = DEFAULT_SMOOTHING_S, calibration: OutputCalibration | None = None) -> None:
        if not 1 <= replan_every <= config.horizon:
            raise ValueError(f"replan_every must be in 1..{config.horizon} (the chunk length), got {replan_every}")
        if blend not in ("ensemble", "crossfade"):
            raise ValueError(f"blend must be 'ensemble' or 'crossfade', got {blend!r}")
        if temperature < 0 or not 0 < top_p <= 1 or any(t is not None and t < 0 for t in (
                token_temperature, eyelid_temperature, gaze_temperature, head_temperature)):
            raise ValueError(f"need temperature >= 0, token/eyelid/gaze/head temperatures >= 0 and 0 < top_p <= 1, "
                             f"got {temperature}, {token_temperature}, {eyelid_temperature}, {gaze_temperature}, "
                             f"{head_temperature}, {top_p}")
        self.backend, self.cfg, self.tokenizer = backend, config, tokenizer
        self.persona_space = persona_space if persona_space is not None else PersonaSpace.neutral(config.persona_dim)
        if self.persona_space.dim != config.persona_dim:
            raise ValueError(f"persona space has dim {self.persona_space.dim}, the model {config.persona_dim}")
        # Fail now on a bad choice or spread, not at reset.
        self.persona_space.choose(persona, np.random.default_rng(0), persona_spread)
        self.persona_choice, self.persona_spread = persona, persona_spread
        self.replan_every, self.temperature, self.top_p = replan_every, temperature, top_p
        self.token_temperature, self.eyelid_temperature = token_temperature, eyelid_temperature
        self.gaze_temperature, self.head_temperature = gaze_temperature, head_temperature
        if not 0.0 <= code_persistence <= 20.0:
            raise ValueError(f"code_persistence must be in [0, 20] (a logit bonus), got {code_persistence}")
        self.code_persistence = code_persistence
        if not 0.0 <= level_noise_tau_s <= 60.0:
            raise ValueError(f"level_noise_tau_s must be in [0, 60] seconds, got {level_noise_tau_s}")
        # Blinks are their own events: the eyelids draw a fresh level every plan.
        self.level_noise = LevelNoise.for_plans(level_noise_tau_s, replan_every / ex.FPS, ex.yoked_partner(),
                                                fresh=_EYELIDS)
        if not 0.0 <= smoothing_s <= 2.0:
            raise ValueError(f"smoothing_s must be in [0, 2] seconds, got {smoothing_s}")
        self.blend, self.ensemble_decay, self.seed = blend, ensemble_decay, seed
        self.smoothing_s = smoothing_s
        self.calibration = calibration
        self._filter_alpha = np.float32(math.exp(-1.0 / (smoothing_s * ex.FPS))) if smoothing_s > 0 else np.float32(0)
        self._silence_clock = SilenceClock(ex.FPS)
        self.reset(seed)

    @classmethod
    def load(cls, model_dir: str | Path, backend: str = "auto", *, threads: int = 2,
             engines_dir: str | Path = "engines", fp16: bool = False, calibrate: bool = True,
             **kwargs: float | int | str) -> Policy:
        """A policy from a checked model directory on ``backend`` (auto | torch | onnxruntime | tensorrt);
        with ``calibrate`` its output calibration is applied if the directory has one."""
        name = select_backend(backend)
        bundle = load_policy(model_dir, need_onnx=name != "torch")
        return cls(make_backend(bundle, name, threads=threads, engines_dir=engines_dir, fp16=fp16),
                   bundle.config, bundle.tokenizer, bundle.persona,
                   calibration=bundle.calibration if calibrate else None, **kwargs)  # type: ignore[arg-type]

    def reset(self, seed: int | None = None) -> None:
        """Forget the conversation (new partner) and choose the persona; optionally reseed the sampler."""
        w, a = self.cfg.window, self.cfg.audio_dim
        self.rng = np.random.default_rng(self.seed if seed is None else seed)
        self.persona = self.persona_space.choose(self.persona_choice, self.rng, self.persona_spread)
        self.frame = 0
        self._speaker = np.zeros((w, ex.DIM), np.float32)
        self._face = np.zeros(w, np.float32)
        self._silent_audio = silent_audio_frame(a)
        self._audio = np.tile(self._silent_audio, (w, 1))
        self._silence_s = np.full(w, MAX_SILENCE_S, np.float32)
        self._silence_clock.reset()
        # Own outputs of the last W + D frames; the network sees the oldest W (history_delay D).
        self._past = np.zeros((w + self.cfg.history_delay, ex.DIM), np.float32)
        self._text = np.zeros(self.cfg.text_dim, np.float32)
        self._last_speaker = ex.NEUTRAL.copy()
        self._chunks: deque[tuple[int, F32]] = deque()
        self._filter: F32 | None = None
        self._last_plan = -(10 ** 9)
        self._last_code: int | None = None
        self.level_noise.reset()
        self.last_sample: ChunkSample | None = None
        self.last_inputs: dict[str, F32] | None = None

    def set_persona(self, persona: ArrayLike) -> None:
        """Be this persona (P,) from now on (until the next ``reset``)."""
        self.persona = _vector(persona, self.cfg.persona_dim, "persona", owner="set_persona")

    # ------------------------------------------------------------------ the 30 Hz path
    def _push(self, obs: Observation) -> None:
        cfg = self.cfg
        if obs.speaker_expression is not None:
            self._last_speaker = _vector(obs.speaker_expression, ex.DIM, "speaker_expression")
            face = 1.0
        else:
            face = 0.0
        audio = self._silent_audio if obs.audio_features is None else _vector(obs.audio_features, cfg.audio_dim,
                                                                          "audio_features")
        if obs.text_embedding is None:
            self._text = np.zeros(cfg.text_dim, np.float32)
        else:
            self._text = _vector(obs.text_embedding, cfg.text_dim, "text_embedding")
        silence = self._silence_clock.update(bool(voiced(audio)))  # a silent frame when audio is missing
        # Shift by one frame in place: four small memmoves, cheaper than np.roll's copies.
        for buf in (self._speaker, self._face, self._audio, self._silence_s):
            buf[:-1] = buf[1:]
        self._speaker[-1] = self._last_speaker
        self._face[-1] = face
        self._audio[-1] = audio
        self._silence_s[-1] = silence

    def inputs(self) -> dict[str, F32]:
        """The current window as batch-1 network inputs."""
        w = self.cfg.window
        return {"speaker": self._speaker[None].copy(), "face_present": self._face[None].copy(),
                "audio": self._audio[None].copy(), "silence": self._silence_s[None].copy(),
                "text": self._text[None].copy(), "listener_past": self._past[None, :w].copy(),
                "persona": self.persona[None].copy()}

    def plan(self) -> F32:
        """Sample a new chunk (H, 55) starting at the current frame from the current window."""
        inputs = self.inputs()
        h, code_logits = self.backend.encode(inputs)
        sample = self.sample(h, code_logits)
        self._last_code = int(sample.code[0])
        chunk = self.tokenizer.decode_chunk(sample.base[0], sample.deltas[0])
        self.last_sample, self.last_inputs = sample, inputs
        self._chunks.append((self.frame, chunk))
        self._last_plan = self.frame
        return chunk

    def sample(self, h: F32, code_logits: F32) -> ChunkSample:
        """Draw one chunk's code and tokens from the network's outputs with this policy's settings.

        The base tokens (each channel's level) are drawn at the quantiles of ``level_noise``
        (slowly varying; see ``sampling.LevelNoise``); greedy decoding consumes no randomness.
        """
        uniforms = self.level_noise.next(self.rng)[None] if self.temperature > 0 else None
        return sample_chunk(h, code_logits, self.backend.head, self.rng, temperature=self.temperature,
                            top_p=self.top_p, token_temperature=self._token_temperatures(),
                            code_bias=self._code_bias(code_logits.shape[-1]), tied=_EYELIDS,
                            base_uniforms=uniforms)

    def _token_temperatures(self) -> float | F32 | None:
        """The tokens' temperature: one value, or per channel when the eyelids or the gaze have their own.

        A blink is a rare event in any one plan (about one chunk in ten); drawn cool like the
        other tokens, its tokens are all but never chosen and the face stops blinking. A glance
        away is the same kind of event: drawn at the cool token temperature, the gaze spread was
        half the recorded listeners' (docs/policy.md, "Blinks and glances").
        """
        tok_t = self.temperature if self.token_temperature is None else self.token_temperature
        own = [(idx, t) for idx, t in ((_EYELIDS, self.eyelid_temperature), (_GAZE, self.gaze_temperature),
                                       (_HEAD, self.head_temperature))
               if t is not None and t != tok_t]
        if not own or self.temperature <= 0:
            return tok_t
        temps = np.full(ex.DIM, tok_t, np.float32)
        for idx, t in own:
            temps[idx] = t
        return temps

    def _code_bias(self, n_codes: int) -> F32 | None:
        """Logit bonus ``code_persistence`` for the previous plan's code: behaviour persists.

        The network does not see its last ``history_delay`` frames, so it cannot know that the
        previous plan started a nod; drawn afresh every ``replan_every`` frames, the code then
        hops between behaviours mid-gesture. A self-transition bonus is the "sticky" prior of
        Fox, Sudderth, Jordan & Willsky (ICML 2008, an HDP-HMM for systems with state persistence).
        """
        if self.code_persistence <= 0 or self._last_code is None:
            return None
        bias = np.zeros((1, n_codes), np.float32)
        bias[0, self._last_code] = self.code_persistence
        return bias

    def step(self, obs: Observation) -> F32:
        """Consume one frame's observation; return the listener expression (55,) for this frame."""
        self._push(obs)
        t = self.frame
        h = self.cfg.horizon
        while self._chunks and self._chunks[0][0] + h <= t:
            self._chunks.popleft()
        if t - self._last_plan >= self.replan_every or not self._chunks:
            self.plan()
        out = self._smooth(self._blend(t))
        self._past[:-1] = self._past[1:]
        self._past[-1] = out  # uncalibrated: the closed loop the calibration was fitted on
        self.frame += 1
        return self.calibration.apply(out) if self.calibration is not None else out

    def _smooth(self, frame: F32) -> F32:
        """Critically damped low-pass (two one-pole stages) of every channel but the eyelids.

        Sampled tokens move each of the 55 channels by a bin or two at random from plan to plan;
        summed over the face that is several times the motion of a real listener, and a viewer
        sees it as restlessness. Two stages of ``y += (1 - a) (x - y)``, ``a = exp(-1 / (tau fps))``,
        remove it while slow expressions pass; blinks (eyeBlink*) pass unfiltered because eyelids
        close in ~100 ms (Bentivoglio et al., 1997), faster than any other facial motion here.
        The first frame starts the filter (no ramp from zero).
        """
        if self._filter is None:
            self._filter = np.stack([frame, frame]).astype(np.float32)
            return frame
        a = self._filter_alpha
        self._filter[0] += (1.0 - a) * (frame - self._filter[0])
        self._filter[1] += (1.0 - a) * (self._filter[0] - self._filter[1])
        out = self._filter[1].copy()
        out[_EYELIDS] = frame[_EYELIDS]
        return out

    def _blend(self, t: int) -> F32:
        chunks = self._chunks
        if len(chunks) == 1:
            return chunks[0][1][t - chunks[0][0]].copy()
        if self.blend == "crossfade":
            (s0, c0), (s1, c1) = chunks[-2], chunks[-1]
            alpha = min(1.0, (t - s1 + 1) / (self.replan_every + 1))
            return ((1.0 - alpha) * c0[t - s0] + alpha * c1[t - s1]).astype(np.float32)
        weights = np.exp(-self.ensemble_decay * np.arange(len(chunks)))
        frames = np.stack([c[t - s] for s, c in chunks])
        return (weights @ frames / weights.sum()).astype(np.float32)


def make_backend(bundle: PolicyBundle, name: str, *, threads: int = 2, engines_dir: str | Path = "engines",
                 fp16: bool = False) -> Backend:
    """Instantiate back-end ``name`` for a loaded policy directory."""
    if name == "torch":
        from face_expr_ros.policy.backends import TorchBackend

        return TorchBackend(bundle.net, threads=threads)
    if name == "onnxruntime":
        from face_expr_ros.policy.backends import OnnxRuntimeBackend

        return OnnxRuntimeBackend(bundle.path, threads=threads)
    if name == "tensorrt":
        from face_expr_ros.policy.backends import TensorRTBackend

        return TensorRTBackend(bundle.path, engines_dir=engines_dir, fp16=fp16)
    raise ValueError(f"unknown back-end {name!r}")


def run_batch(backend: Backend, config: PolicyConfig, tokenizer: ActionTokenizer, inputs: dict[str, ArrayLike],
              rng: np.random.Generator, *, temperature: float = 1.0, top_p: float = 1.0) -> tuple[F32, ChunkSample]:
    """Offline: checked batched inputs -> (decoded chunks (B, H, 55), the sampled tokens)."""
    x = check_inputs(inputs, config)  # type: ignore[arg-type]
    h, code_logits = backend.encode(x)
    sample = sample_chunk(h, code_logits, backend.head, rng, temperature=temperature, top_p=top_p)
    return tokenizer.decode_chunk(sample.base, sample.deltas), sample
