"""Side-by-side conversation videos: the speaker on the left, the listener on the right,
the transcript heard so far as captions, and the speech as the sound track."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from face_expr_ros import media_io
from face_expr_ros.expression import FPS

CAPTION_WORDS = 9


def caption_at(words: Sequence[tuple[str, float, float]], t: float, n_words: int = CAPTION_WORDS) -> str:
    """The last ``n_words`` words that have started by time ``t``."""
    heard = [w for w, start, _ in words if start <= t]
    return " ".join(heard[-n_words:])


def side_by_side(out: str | Path, speaker: NDArray[np.float32], listener: NDArray[np.float32],
                 words: Sequence[tuple[str, float, float]] = (), audio: NDArray[np.int16] | None = None,
                 sample_rate: int = 16000, size: int = 384, labels: tuple[str, str] = ("speaker", "listener"),
                 photo: str | Path | None = None, progress: bool = True) -> Path:
    """Render both tracks (photo avatar | mesh avatar) into one captioned video, with sound if given."""
    import cv2
    from tqdm import tqdm

    from face_expr_ros.rig.render import MeshRenderer, PhotoRenderer

    n = min(len(speaker), len(listener))
    left, right = PhotoRenderer(photo, size=size), MeshRenderer(size=size)
    caption_h = 56
    out = Path(out)
    with tempfile.TemporaryDirectory() as tmp:
        silent = Path(tmp) / "video.mp4"
        with media_io.VideoWriter(silent, FPS, (2 * size, size + caption_h)) as video:
            for k in tqdm(range(n), desc="rendering video", unit="frame", disable=not progress):
                canvas = np.zeros((size + caption_h, 2 * size, 3), np.uint8)
                canvas[:size, :size] = cv2.cvtColor(left.render(speaker[k]), cv2.COLOR_RGB2BGR)
                canvas[:size, size:] = cv2.cvtColor(right.render(listener[k]), cv2.COLOR_RGB2BGR)
                for x, label in ((8, labels[0]), (size + 8, labels[1])):
                    cv2.putText(canvas, label, (x, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2,
                                cv2.LINE_AA)
                text = caption_at(words, k / FPS)
                cv2.putText(canvas, text, (10, size + 36), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (240, 240, 240), 2,
                            cv2.LINE_AA)
                video.write(canvas)
        if audio is None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(silent.read_bytes())
            return out
        wav = media_io.write_wav(Path(tmp) / "speech.wav", audio[: int(n / FPS * sample_rate)], sample_rate)
        return media_io.mux_audio(silent, wav, out)


def still_frame(video: str | Path, t: float, out_png: str | Path) -> Path:
    """Save the frame at time ``t`` of a video as PNG (for docs and README)."""
    import cv2

    target = round(t * (media_io.video_fps(video) or FPS))
    for k, frame in enumerate(media_io.iter_video(video)):
        if k == target:
            cv2.imwrite(str(out_png), frame)
            return Path(out_png)
    raise media_io.MediaError(f"{video} is shorter than {t} s")
