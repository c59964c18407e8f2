"""Reading and writing audio and video files: WAV with the standard library, video with OpenCV.

ffmpeg (a Debian package installed by set-up) is used only where OpenCV cannot help: muxing a
WAV into a video, and extracting the audio track of a user's recording.
"""

from __future__ import annotations

import shutil
import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from numpy.typing import NDArray


class MediaError(ValueError):
    """A media file that cannot be read or written; the text names the file and why."""


def write_wav(path: str | Path, pcm: NDArray[np.int16], sample_rate: int) -> Path:
    """Write mono int16 PCM as a WAV file."""
    samples = np.asarray(pcm)
    if samples.dtype != np.int16 or samples.ndim != 1:
        raise MediaError(f"{path}: expected mono int16 samples, got {samples.dtype} with shape {samples.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(int(sample_rate))
        out.writeframes(samples.astype("<i2").tobytes())
    return path


def read_wav(path: str | Path) -> tuple[NDArray[np.int16], int]:
    """Mono int16 samples and the sample rate of a 16-bit PCM WAV; stereo is averaged to mono."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"audio file not found: {path}")
    try:
        with wave.open(str(path), "rb") as src:
            channels, width, rate = src.getnchannels(), src.getsampwidth(), src.getframerate()
            raw = src.readframes(src.getnframes())
    except (wave.Error, EOFError) as err:
        raise MediaError(f"{path}: not a readable WAV file ({err})") from None
    if width != 2:
        raise MediaError(f"{path}: {8 * width}-bit samples; 16-bit PCM is supported (convert with sox)")
    samples = np.frombuffer(raw, dtype="<i2")
    if channels > 1:
        samples = samples[: len(samples) // channels * channels].reshape(-1, channels).mean(axis=1)
    return samples.astype(np.int16), rate


class VideoWriter:
    """Frames (BGR uint8, all one size) to an MPEG-4 file."""

    def __init__(self, path: str | Path, fps: float, size_wh: tuple[int, int]) -> None:
        import cv2

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.size_wh = (int(size_wh[0]), int(size_wh[1]))
        self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), self.size_wh)
        if not self._writer.isOpened():
            raise MediaError(f"{self.path}: OpenCV cannot write MPEG-4 video here")
        self.frames = 0

    def write(self, frame_bgr: NDArray[np.uint8]) -> None:
        if frame_bgr.shape[1::-1] != self.size_wh or frame_bgr.dtype != np.uint8:
            raise MediaError(f"{self.path}: frame {frame_bgr.shape} {frame_bgr.dtype}, expected "
                             f"{self.size_wh[1]}x{self.size_wh[0]}x3 uint8")
        self._writer.write(np.ascontiguousarray(frame_bgr))
        self.frames += 1

    def close(self) -> None:
        self._writer.release()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def video_fps(path: str | Path) -> float:
    import cv2

    capture = _open_capture(path)
    fps = float(capture.get(cv2.CAP_PROP_FPS))
    capture.release()
    return fps


def iter_video(path: str | Path) -> Iterator[NDArray[np.uint8]]:
    """BGR frames of a video file, in order."""
    capture = _open_capture(path)
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            yield frame
    finally:
        capture.release()


def _open_capture(path: str | Path) -> object:
    import cv2

    path = Path(path)
    if not path.is_file():
        raise MediaError(f"video file not found: {path}")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise MediaError(f"{path}: OpenCV cannot open this video")
    return capture


def _ffmpeg() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise MediaError("ffmpeg is not installed (apt-get install ffmpeg, or run `make setup`)")
    return exe


def mux_audio(video: str | Path, wav: str | Path, out: str | Path) -> Path:
    """Copy ``video`` with ``wav`` as its sound track into ``out`` (H.264 + AAC, plays in browsers)."""
    cmd = [_ffmpeg(), "-y", "-loglevel", "error", "-i", str(video), "-i", str(wav), "-map", "0:v:0", "-map", "1:a:0",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "veryfast", "-c:a", "aac", "-shortest", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise MediaError(f"ffmpeg could not mux {wav} into {video}: {done.stderr.strip()[-400:]}")
    return Path(out)


def extract_audio(video: str | Path, out_wav: str | Path, sample_rate: int = 16000) -> Path:
    """The first audio track of a recording as a mono 16-bit WAV at ``sample_rate``."""
    if not Path(video).is_file():
        raise MediaError(f"video file not found: {video}")
    cmd = [_ffmpeg(), "-y", "-loglevel", "error", "-i", str(video), "-vn", "-ac", "1", "-ar", str(sample_rate),
           "-c:a", "pcm_s16le", str(out_wav)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise MediaError(f"{video}: no audio track could be extracted ({done.stderr.strip()[-300:]})")
    return Path(out_wav)
