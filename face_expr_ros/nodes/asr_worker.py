"""The speech recogniser in a process of its own, for the speech node.

PocketSphinx holds the Python GIL while it decodes an utterance (0.35-0.5 s for a few seconds
of speech on this machine's cores), so in a thread it froze everything else in the speech
node's process, the 30 Hz audio features included, and with ``face-expr bringup`` the whole
graph. In a child process (at a lower CPU priority, ``NICE``) it only takes CPU time. Nothing
here imports rclpy.

The child is ``python -m face_expr_ros.nodes.asr_worker BACKEND SAMPLE_RATE [MODEL_DIR]``. It
reads chunks from stdin (a ``<qI`` header, stream time in ns and byte count, then int16 PCM; a
count of 0 ends the stream) and writes one JSON line per chunk to stdout: ``{"at": ns,
"words": [[text, end_s], ...]}``, usually with no words; before that ``{"ready": true}`` or
``{"error": message}``, and ``{"done": true}`` after the final flush. End of stdin (the node
died) ends the child too.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import struct
import subprocess
import sys
import threading
from collections.abc import Callable

import numpy as np

HEADER = struct.Struct("<qI")
# The recogniser's words are used at the ends of utterances, hundreds of milliseconds after the
# audio, so it yields the CPU to the 30 Hz camera -> tracker -> policy path on a busy machine.
NICE = 5


class RecognizerProcess:
    """Parent side: feed chunks without ever blocking, get each chunk's words on a thread.

    ``on_words(stream_ns, [(text, end_s), ...])`` is called from a reader thread for every
    chunk, in order.
    """

    def __init__(self, backend: str, sample_rate: int, model_dir: str | None,
                 on_words: Callable[[int, list[tuple[str, float]]], None], max_queued: int = 500,
                 start_timeout_s: float = 60.0) -> None:
        cmd = [sys.executable, "-m", __name__, backend, str(sample_rate), *([model_dir] if model_dir else [])]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._on_words = on_words
        self._chunks: queue.Queue[tuple[bytes, int] | None] = queue.Queue(maxsize=max_queued)
        answer: list[dict] = []
        reader = threading.Thread(target=lambda: answer.append(self._read()), daemon=True)
        reader.start()
        reader.join(timeout=start_timeout_s)
        if not answer or not answer[0].get("ready"):
            self._proc.kill()
            raise RuntimeError(answer[0].get("error", "the recogniser exited") if answer
                               else f"the recogniser did not start within {start_timeout_s:g} s")
        self._writer = threading.Thread(target=self._write_loop, daemon=True)
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._writer.start()
        self._reader.start()

    def put(self, pcm: np.ndarray, stream_ns: int) -> bool:
        """Queue a chunk; False when the recogniser is too far behind and the chunk is dropped."""
        try:
            self._chunks.put_nowait((np.ascontiguousarray(pcm, np.int16).tobytes(), int(stream_ns)))
        except queue.Full:
            return False
        return True

    @property
    def exit_code(self) -> int | None:
        """None while the child runs."""
        return self._proc.poll()

    def close(self, timeout_s: float = 5.0) -> None:
        """End the stream (the recogniser flushes its last words), wait for the child to exit."""
        try:
            self._chunks.put(None, timeout=timeout_s)
        except queue.Full:  # the writer is stuck or gone
            self._proc.kill()
        self._reader.join(timeout=timeout_s)
        try:
            self._proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            self._proc.kill()

    def _read(self) -> dict:
        line = self._proc.stdout.readline()
        return json.loads(line) if line else {}

    def _write_loop(self) -> None:
        try:
            while (item := self._chunks.get()) is not None:
                pcm, stream_ns = item
                self._proc.stdin.write(HEADER.pack(stream_ns, len(pcm)) + pcm)
                self._proc.stdin.flush()
            self._proc.stdin.write(HEADER.pack(0, 0))
            self._proc.stdin.close()
        except (BrokenPipeError, ValueError):
            pass  # the child is gone; the reader sees its end

    def _read_loop(self) -> None:
        while (message := self._read()) and not message.get("done"):
            self._on_words(int(message["at"]), [(text, float(end)) for text, end in message["words"]])


def main(argv: list[str]) -> int:
    """Child side (see the module doc)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the node ends the stream, not Ctrl-C
    os.nice(NICE)
    backend, sample_rate, model_dir = argv[0], int(argv[1]), (argv[2] if len(argv) > 2 else None)
    # The protocol owns stdout: anything a library prints (from Python or C) goes to stderr.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    source = sys.stdin.buffer
    from face_expr_ros.perception.asr import make_recognizer

    def say(message: dict) -> None:
        out.write(json.dumps(message) + "\n")
        out.flush()

    try:
        recognizer = make_recognizer(backend, model_dir=model_dir, sample_rate=sample_rate)
    except (ValueError, OSError, ImportError, RuntimeError) as err:
        say({"error": str(err)})
        return 1
    say({"ready": True})
    last_ns = 0
    while len(header := source.read(HEADER.size)) == HEADER.size:
        stream_ns, size = HEADER.unpack(header)
        if size == 0:
            break
        pcm = np.frombuffer(source.read(size), np.int16)
        last_ns = stream_ns
        say({"at": stream_ns, "words": [[w.text, w.end] for w in recognizer.accept(pcm)]})
    say({"at": last_ns + 1, "words": [[w.text, w.end] for w in recognizer.final()]})
    say({"done": True})
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
