"""Audio front end: per-frame log-mel, energy, pitch and voice activity at 30 frames/s.

Frame ``k`` describes the audio around time ``t_k = k / fps`` seconds from the start of the
stream: every analysis window of frame ``k`` is centred on sample ``c_k = round(k * rate / fps)``
of the (resampled) signal, and audio before the start and after the end counts as silence.
A clip of ``n`` samples has ``ceil(n * fps / rate)`` frames, those whose centre lies inside it.
Frames line up one to one with the 30 Hz expression frames of
:mod:`face_expr_ros.expression`.

Features per frame (rate 16 kHz by default; every length below scales with the rate):

* ``log_mel`` -- natural log of the power in ``n_mels`` (40) triangular mel bands of a 25 ms
  Hann-windowed FFT, the HTK mel scale ``mel(f) = 2595 log10(1 + f / 700)`` (Young et al.,
  *The HTK Book*, 2006, sec. 5.4) with filters of unit peak, 0 Hz to ``rate / 2``. A floor of
  1e-10 keeps silence finite.
* ``rms_db`` -- RMS of the same 25 ms (unwindowed) in dB re full scale (a full-scale sine is
  -3 dB), floored at -120 dB.
* ``f0_hz`` / ``voiced_prob`` -- YIN (A. de Cheveigné and H. Kawahara, "YIN, a fundamental
  frequency estimator for speech and music", JASA 111(4), 2002): the difference function
  ``d(tau) = sum_j (x_j - x_{j+tau})^2`` (eq. 6, computed from FFT cross-correlation as
  ``E_0 + E_tau - 2 r(tau)``), its cumulative mean normalised form
  ``d'(tau) = d(tau) tau / sum_{j<=tau} d(j)`` (eq. 8), the first dip below an absolute
  threshold (step 4), then parabolic interpolation (step 5). ``voiced_prob = 1 - d'(tau*)``
  clipped to [0, 1] (the paper's aperiodicity, inverted). ``f0_hz`` is 0 for unvoiced frames.
* ``zcr`` -- zero crossings per sample in the 25 ms window.
* ``vad`` -- 1 where there is voice: the frame energy is above both an absolute floor and an
  adaptive noise floor plus a margin, and the frame is periodic (voiced) or noisy enough in the
  zero-crossing sense to be a fricative; a hangover keeps speech on through short pauses and
  unvoiced stops (as in the classic energy/ZCR detector of Rabiner & Sambur, 1975).

Two APIs compute the same thing: :func:`compute` (batch) and :class:`StreamingAudioFeatures`
(chunks of any size in, frames out as soon as their window is complete, with the latency of
half the longest window, about 22 ms at the defaults). ``compute`` runs the streaming code over
one chunk, so the two agree exactly; the tests check chunked streams against it.

Input at another sample rate is resampled with a polyphase FIR whose filter is the one of
:func:`scipy.signal.resample_poly` (Kaiser window, beta 5, ``10 * max(up, down)`` taps per side)
and whose output equals ``resample_poly``'s, but which also runs on a stream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
from numpy.typing import NDArray
from scipy import signal

DEFAULT_RATE = 16000
DEFAULT_FPS = 30.0

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]


@dataclass(frozen=True)
class AudioFeatures:
    """Per-frame features; every array has ``n_frames`` rows (frame ``k`` at ``times[k]``)."""

    times: F64
    log_mel: F32
    rms_db: F32
    f0_hz: F32
    voiced_prob: F32
    zcr: F32
    vad: NDArray[np.uint8]

    @property
    def n_frames(self) -> int:
        return int(self.times.shape[0])

    @staticmethod
    def concatenate(parts: list[AudioFeatures], n_mels: int) -> AudioFeatures:
        """Join consecutive blocks of frames (e.g. the outputs of a stream)."""
        if not parts:
            return _empty(n_mels)
        return AudioFeatures(
            **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(AudioFeatures)}
        )


@dataclass(frozen=True)
class FeatureConfig:
    """Analysis settings; the defaults suit speech at 16 kHz."""

    rate: int = DEFAULT_RATE
    fps: float = DEFAULT_FPS
    n_mels: int = 40
    window_s: float = 0.025
    f0_min: float = 60.0
    f0_max: float = 500.0
    # 0.1 is the paper's value; clean synthetic and close-talk speech reach well below it,
    # 0.2 keeps breathy voiced frames voiced without turning noise into pitch.
    yin_threshold: float = 0.2
    vad_floor_db: float = -50.0
    vad_margin_db: float = 12.0
    vad_voiced_prob: float = 0.5
    vad_zcr: float = 0.25
    vad_hangover_s: float = 0.3
    # The noise floor starts at a quiet-room level, follows quieter frames at once and drifts up:
    # slowly through voiced frames, so that a long utterance does not become the "noise", faster
    # through unvoiced ones, so that a steady fan or hiss is learnt within seconds (cf. the minimum
    # statistics of R. Martin, IEEE TSAP 9(5), 2001).
    noise_init_db: float = -60.0
    noise_rise_voiced_db_per_s: float = 0.5
    noise_rise_unvoiced_db_per_s: float = 10.0

    def __post_init__(self) -> None:
        if not (isinstance(self.rate, int) and self.rate > 0):
            raise ValueError(f"rate must be a positive integer sample rate, got {self.rate!r}")
        if not (math.isfinite(self.fps) and 0 < self.fps <= self.rate / 2):
            raise ValueError(f"fps must be in (0, rate/2], got {self.fps!r}")
        if not 0 < self.f0_min < self.f0_max <= self.rate / 2:
            raise ValueError(f"need 0 < f0_min < f0_max <= rate/2, got {self.f0_min}, {self.f0_max}")
        if self.n_mels < 1:
            raise ValueError(f"n_mels must be >= 1, got {self.n_mels}")


def compute(pcm: NDArray, sample_rate: int, config: FeatureConfig | None = None) -> AudioFeatures:
    """Features of a whole mono clip (int16, or float in [-1, 1]) recorded at ``sample_rate``."""
    x = _validate(pcm, sample_rate, allow_empty=False)
    stream = StreamingAudioFeatures(sample_rate, config)
    return AudioFeatures.concatenate([stream.push(x), stream.flush()], stream.config.n_mels)


class StreamingAudioFeatures:
    """Incremental version of :func:`compute`: ``push`` chunks, ``flush`` at the end of the stream.

    ``push`` returns the frames completed by the chunk (possibly none); ``flush`` returns the
    rest, padding the end with silence exactly as :func:`compute` does, and resets the stream.
    """

    def __init__(self, sample_rate: int, config: FeatureConfig | None = None) -> None:
        _check_rate(sample_rate)
        self.config = config or FeatureConfig()
        self.sample_rate = int(sample_rate)
        cfg = self.config
        self._resampler = None if sample_rate == cfg.rate else PolyphaseResampler(sample_rate, cfg.rate)
        self._win = round(cfg.window_s * cfg.rate)
        self._tau_min = max(2, math.floor(cfg.rate / cfg.f0_max))
        self._tau_max = math.ceil(cfg.rate / cfg.f0_min)
        # One span per frame holds every window: the YIN frame needs win + tau_max samples.
        span = self._win + self._tau_max + 1
        self._left = span // 2
        self._right = span - self._left  # samples needed at and after the centre
        self._n_fft = 1 << (self._win - 1).bit_length()
        # Lags never wrap: j + tau < win + tau_max <= n, so a circular correlation of this size is exact.
        self._yin_fft = 1 << (self._win + self._tau_max - 1).bit_length()
        self._centre_ratio = _ratio(cfg.rate, cfg.fps)
        self._frame_ratio = _ratio(cfg.fps, cfg.rate)
        self._hann = np.hanning(self._win + 2)[1:-1]  # no zero end points: all samples count
        self._mel = mel_filterbank(cfg.n_mels, self._n_fft, cfg.rate)
        self._hangover = round(cfg.vad_hangover_s * cfg.fps)
        self._rise_voiced = cfg.noise_rise_voiced_db_per_s / cfg.fps
        self._rise_unvoiced = cfg.noise_rise_unvoiced_db_per_s / cfg.fps
        self.reset()

    def reset(self) -> None:
        """Start a new stream (time 0 again)."""
        if self._resampler is not None:
            self._resampler.reset()
        # Silence before the stream starts: the buffer begins `left` samples before sample 0.
        self._buf = np.zeros(self._left, dtype=np.float64)
        self._buf_start = -self._left  # absolute sample index of self._buf[0]
        self._n_samples = 0  # samples at the internal rate received so far
        self._next_frame = 0
        self._noise_db = float(self.config.noise_init_db)
        self._hang = 0

    def push(self, chunk: NDArray) -> AudioFeatures:
        """Add PCM (any length, including 0) and return the frames that are now complete."""
        x = _validate(chunk, self.sample_rate, allow_empty=True)
        if self._resampler is not None:
            x = self._resampler.process(x)
        return self._consume(x, final=False)

    def flush(self) -> AudioFeatures:
        """Frames left at the end of the stream; the stream is reset afterwards."""
        x = self._resampler.flush() if self._resampler is not None else np.zeros(0)
        out = self._consume(x, final=True)
        self.reset()
        return out

    # ------------------------------------------------------------------ internals
    def _centre(self, k: int | NDArray[np.int64]) -> int | NDArray[np.int64]:
        # Integer arithmetic so that frame centres never drift, even when rate/fps is not whole.
        num, den = self._centre_ratio
        return (2 * k * num + den) // (2 * den)

    def _consume(self, x: F64, *, final: bool) -> AudioFeatures:
        self._buf = np.concatenate([self._buf, x])
        self._n_samples += x.size
        cfg = self.config
        if final:
            num, den = self._frame_ratio
            n_total = -((-self._n_samples * num) // den)  # ceil(n * fps / rate)
            self._buf = np.concatenate([self._buf, np.zeros(self._right + 1)])
        else:
            # Frame k is complete once samples up to c_k + right - 1 have arrived.
            n_total = self._next_frame
            while self._centre(n_total) + self._right <= self._n_samples:
                n_total += 1
        ks = np.arange(self._next_frame, n_total, dtype=np.int64)
        if ks.size == 0:
            return _empty(cfg.n_mels)
        starts = np.asarray(self._centre(ks)) - self._left - self._buf_start
        idx = starts[:, None] + np.arange(self._left + self._right)[None, :]
        frames = self._buf[idx]
        feats = self._analyse(ks, frames)
        self._next_frame = n_total
        # Keep only what the next frame can still need.
        keep_from = int(self._centre(n_total)) - self._left - self._buf_start
        if keep_from > 0:
            self._buf = self._buf[keep_from:]
            self._buf_start += keep_from
        return feats

    def _analyse(self, ks: NDArray[np.int64], frames: F64) -> AudioFeatures:
        cfg = self.config
        # The 25 ms window is centred in the span (the span's centre is column `left`).
        w0 = self._left - self._win // 2
        short = frames[:, w0 : w0 + self._win]
        spec = np.fft.rfft(short * self._hann, n=self._n_fft, axis=1)
        power = spec.real**2 + spec.imag**2
        log_mel = np.log(np.maximum(power @ self._mel.T, 1e-10)).astype(np.float32)
        rms = np.sqrt(np.mean(short**2, axis=1))
        rms_db = (20.0 * np.log10(np.maximum(rms, 1e-6))).astype(np.float32)
        signs = np.signbit(short)
        zcr = (np.count_nonzero(signs[:, 1:] != signs[:, :-1], axis=1) / (self._win - 1)).astype(np.float32)
        f0, prob = self._yin(frames)
        voiced = (prob >= cfg.vad_voiced_prob) & (rms_db > cfg.vad_floor_db)
        f0 = np.where(voiced, f0, 0.0).astype(np.float32)
        vad = self._vad(rms_db, prob, zcr)
        return AudioFeatures(
            times=ks / cfg.fps,
            log_mel=log_mel,
            rms_db=rms_db,
            f0_hz=f0,
            voiced_prob=prob.astype(np.float32),
            zcr=zcr,
            vad=vad,
        )

    def _yin(self, frames: F64) -> tuple[F64, F64]:
        """YIN steps 2-5 for every frame at once (see the module docstring)."""
        w, tmax, tmin = self._win, self._tau_max, self._tau_min
        # Integration window starts at column 0 of the span; lags reach win + tau_max.
        x = frames[:, : w + tmax]
        n = self._yin_fft
        # r(tau) = sum_{j<w} x_j x_{j+tau}: cross-correlation via FFT, O(N log N) per frame.
        fx = np.fft.rfft(x, n=n, axis=1)
        fw = np.fft.rfft(x[:, :w], n=n, axis=1)
        r = np.fft.irfft(fx * np.conj(fw), n=n, axis=1)[:, : tmax + 1]
        sq = np.concatenate([np.zeros((x.shape[0], 1)), np.cumsum(x**2, axis=1)], axis=1)
        e0 = sq[:, w : w + 1]
        etau = sq[:, w : w + tmax + 1] - sq[:, : tmax + 1]  # sum_{j<w} x_{j+tau}^2
        d = np.maximum(e0 + etau - 2.0 * r, 0.0)
        cum = np.cumsum(d[:, 1:], axis=1)
        taus = np.arange(1, tmax + 1)
        dn = np.ones_like(d)
        with np.errstate(divide="ignore", invalid="ignore"):
            dn[:, 1:] = np.where(cum > 1e-12, d[:, 1:] * taus / cum, 1.0)
        rows = np.arange(d.shape[0])
        search = dn[:, tmin : tmax + 1]
        below = search < self.config.yin_threshold
        # Step 4: first dip under the threshold, then walk to the bottom of that dip.
        first = np.where(below.any(axis=1), below.argmax(axis=1), search.argmin(axis=1))
        rising = np.ones_like(search, dtype=bool)
        rising[:, :-1] = search[:, 1:] >= search[:, :-1]
        cand = rising & (np.arange(search.shape[1])[None, :] >= first[:, None])
        best = cand.argmax(axis=1) + tmin
        # Without any dip under the threshold, YIN takes the global minimum (step 4, last clause).
        best = np.where(below.any(axis=1), best, search.argmin(axis=1) + tmin)
        # Step 5: parabolic interpolation around the chosen lag.
        lo = np.clip(best - 1, 1, tmax)
        hi = np.clip(best + 1, 1, tmax)
        a, b, c = dn[rows, lo], dn[rows, best], dn[rows, hi]
        denom = a - 2.0 * b + c
        with np.errstate(divide="ignore", invalid="ignore"):
            shift = np.where((denom > 1e-12) & (lo < best) & (hi > best), 0.5 * (a - c) / denom, 0.0)
        shift = np.clip(shift, -1.0, 1.0)
        tau = best + shift
        f0 = self.config.rate / tau
        prob = np.clip(1.0 - np.minimum(b, 1.0), 0.0, 1.0)
        return f0, prob

    def _vad(self, rms_db: F32, prob: F64, zcr: F32) -> NDArray[np.uint8]:
        cfg = self.config
        out = np.zeros(rms_db.shape[0], dtype=np.uint8)
        # A python loop over frames (30 per second of audio): the noise floor and the hangover are
        # recursive, and this is a negligible cost next to the FFTs.
        for i, e in enumerate(rms_db.tolist()):
            voiced = prob[i] >= cfg.vad_voiced_prob
            if e < self._noise_db:
                self._noise_db = e
            else:
                rise = self._rise_voiced if voiced else self._rise_unvoiced
                self._noise_db = min(e, self._noise_db + rise)
            loud = e > cfg.vad_floor_db and e > self._noise_db + cfg.vad_margin_db
            speechlike = voiced or zcr[i] >= cfg.vad_zcr
            if loud and speechlike:
                self._hang = self._hangover
                out[i] = 1
            elif self._hang > 0:
                self._hang -= 1
                out[i] = 1
        return out


class PolyphaseResampler:
    """Streaming rational resampler whose output equals ``scipy.signal.resample_poly(x, up, down)``.

    Output sample ``m`` is ``sum_k h[k] u[m*down + D - k]`` with ``u`` the input upsampled by
    zero stuffing and ``D = (len(h) - 1) / 2`` the filter delay; only the taps ``k`` of phase
    ``(m*down + D) mod up`` meet non-zero samples, which is the polyphase decomposition
    (Crochiere & Rabiner, *Multirate Digital Signal Processing*, 1983).
    """

    def __init__(self, rate_in: int, rate_out: int) -> None:
        _check_rate(rate_in)
        _check_rate(rate_out)
        g = math.gcd(int(rate_in), int(rate_out))
        self.up, self.down = int(rate_out) // g, int(rate_in) // g
        max_rate = max(self.up, self.down)
        half_len = 10 * max_rate
        # The same design as resample_poly's default window=('kaiser', 5.0).
        h = signal.firwin(2 * half_len + 1, 1.0 / max_rate, window=("kaiser", 5.0)) * self.up
        self._delay = half_len
        n_taps = -(-h.size // self.up)
        h = np.concatenate([h, np.zeros(n_taps * self.up - h.size)])
        # phases[p, j] = h[p + j*up]: phase p multiplies x[base - j].
        self._phases = h.reshape(n_taps, self.up).T.copy()
        self._n_taps = n_taps
        self.reset()

    def reset(self) -> None:
        self._hist = np.zeros(self._n_taps - 1)  # zeros stand for the silence before the start
        self._hist_start = -(self._n_taps - 1)
        self._n_in = 0
        self._m = 0

    def process(self, x: F64) -> F64:
        """Resample the next chunk; returns the output samples it completes."""
        self._hist = np.concatenate([self._hist, np.asarray(x, dtype=np.float64)])
        self._n_in += x.size
        # Output m needs inputs up to base_m = (m*down + D) // up.
        m_end = max(self._m, -(-(self._n_in * self.up - self._delay) // self.down))
        return self._emit(m_end)

    def flush(self) -> F64:
        """The outputs that depend on the (silent) future after the last input; then reset."""
        n_out = -(-(self._n_in * self.up) // self.down)  # resample_poly's length ceil(n*up/down)
        m_end = max(self._m, n_out)
        base_last = (max(m_end - 1, 0) * self.down + self._delay) // self.up
        pad = max(0, base_last + 1 - (self._hist_start + self._hist.size))
        self._hist = np.concatenate([self._hist, np.zeros(pad)])
        out = self._emit(m_end)
        self.reset()
        return out

    def _emit(self, m_end: int) -> F64:
        if m_end <= self._m:
            return np.zeros(0)
        m = np.arange(self._m, m_end, dtype=np.int64)
        pos = m * self.down + self._delay
        phase, base = pos % self.up, pos // self.up
        out = np.empty(m.size)
        step = 8192  # bounds the (outputs x taps) gather to a few MB
        j = np.arange(self._n_taps)
        for s in range(0, m.size, step):
            b = base[s : s + step]
            idx = (b - self._hist_start)[:, None] - j[None, :]
            out[s : s + step] = np.einsum("ij,ij->i", self._hist[idx], self._phases[phase[s : s + step]])
        self._m = m_end
        # Drop inputs no future output will touch.
        next_base = (m_end * self.down + self._delay) // self.up
        drop = next_base - (self._n_taps - 1) - self._hist_start
        if drop > 0:
            self._hist = self._hist[drop:]
            self._hist_start += drop
        return out


def mel_filterbank(n_mels: int, n_fft: int, rate: int, f_min: float = 0.0, f_max: float | None = None) -> F64:
    """Triangular filters, unit peak, equally spaced on the HTK mel scale; shape (n_mels, n_fft//2+1)."""
    f_max = rate / 2 if f_max is None else f_max

    def mel(f: F64 | float) -> F64:
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def hz(m: F64) -> F64:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    edges = hz(np.linspace(mel(f_min), mel(f_max), n_mels + 2))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / rate)
    lower = (freqs[None, :] - edges[:-2, None]) / (edges[1:-1] - edges[:-2])[:, None]
    upper = (edges[2:, None] - freqs[None, :]) / (edges[2:] - edges[1:-1])[:, None]
    return np.maximum(0.0, np.minimum(lower, upper))


def _validate(pcm: NDArray, sample_rate: int, *, allow_empty: bool) -> F64:
    _check_rate(sample_rate)
    if not isinstance(pcm, np.ndarray):
        raise ValueError(f"expected a numpy array of PCM samples, got {type(pcm).__name__}")
    if pcm.ndim != 1:
        hint = " (stereo? mix down first, e.g. pcm.mean(axis=1))" if pcm.ndim == 2 else ""
        raise ValueError(f"expected mono 1-D PCM, got shape {pcm.shape}{hint}")
    if pcm.size == 0 and not allow_empty:
        raise ValueError("empty audio: need at least one sample")
    if pcm.dtype == np.int16:
        return pcm.astype(np.float64) / 32768.0
    if pcm.dtype in (np.float32, np.float64):
        x = pcm.astype(np.float64)
        if not np.isfinite(x).all():
            raise ValueError(f"audio contains {int((~np.isfinite(x)).sum())} NaN/inf samples")
        return x
    raise ValueError(f"unsupported PCM dtype {pcm.dtype}: use int16, or float32/float64 in [-1, 1]")


def _check_rate(sample_rate: int) -> None:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer (Hz), got {sample_rate!r}")


def _ratio(a: float, b: float) -> tuple[int, int]:
    """``a / b`` as a reduced fraction of integers (fps may be e.g. 29.97)."""
    from fractions import Fraction

    f = Fraction(a).limit_denominator(1000000) / Fraction(b).limit_denominator(1000000)
    return f.numerator, f.denominator


def _empty(n_mels: int) -> AudioFeatures:
    z = np.zeros(0, dtype=np.float32)
    return AudioFeatures(
        times=np.zeros(0),
        log_mel=np.zeros((0, n_mels), dtype=np.float32),
        rms_db=z,
        f0_hz=z.copy(),
        voiced_prob=z.copy(),
        zcr=z.copy(),
        vad=np.zeros(0, dtype=np.uint8),
    )
