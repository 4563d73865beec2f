"""Reading audio files into the 16 kHz mono float32 arrays Whisper takes.

Decoding uses PyAV (bundled FFmpeg, no system ffmpeg needed), the same way as
``faster_whisper.decode_audio``, but keeps count of what could not be decoded so that a
damaged file is reported instead of silently shortened.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from whisperkit.errors import AudioError, first_line

if TYPE_CHECKING:
    import numpy as np

SAMPLING_RATE = 16000  # Hz, what Whisper models take
SILENCE_PEAK = 1e-3  # peak amplitude below which audio counts as silence (about -60 dBFS)
HEADER_BYTES = 16 * 1024  # an empty but valid audio file is smaller than this


@dataclass
class Audio:
    """Decoded audio: ``samples`` at 16 kHz mono float32 in [-1, 1]."""

    samples: np.ndarray  # float32
    path: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        """Duration in seconds."""
        return len(self.samples) / SAMPLING_RATE

    @property
    def is_silent(self) -> bool:
        """True when there is no sample above -60 dBFS (or no sample at all)."""
        return len(self.samples) == 0 or float(abs(self.samples).max()) < SILENCE_PEAK


if TYPE_CHECKING:
    #: What every function that transcribes takes as audio: a file path, decoded Audio, or a
    #: one-dimensional 16 kHz mono float32 array.
    AudioSource = str | os.PathLike[str] | Audio | np.ndarray


def load_audio(path: str | os.PathLike) -> Audio:
    """Decode an audio file to 16 kHz mono float32.

    Raises :class:`AudioError` for a missing file, a directory, an empty (0-byte) file, a file
    that is not audio, or a damaged file of which nothing could be decoded. A damaged file of
    which part could be decoded gives that part, with a warning in ``Audio.warnings`` saying how
    much was lost.
    """
    path = os.fspath(path)
    _check_file(path)
    samples, declared_seconds, bad_frames = _decode(path)
    audio = Audio(samples=samples, path=path)
    if len(samples) == 0 and (bad_frames or os.path.getsize(path) > HEADER_BYTES):
        raise AudioError(f"{path}: not audio or damaged, nothing could be decoded; check the file")
    audio.warnings.extend(_damage_warnings(path, audio.seconds, declared_seconds, bad_frames))
    return audio


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise AudioError(f"{path}: no such file; check the path")
    if os.path.isdir(path):
        raise AudioError(f"{path}: is a directory; name an audio file inside it")
    if os.path.getsize(path) == 0:
        raise AudioError(f"{path}: file is empty (0 bytes), not audio")


def _decode(path: str) -> tuple[np.ndarray, float | None, int]:
    """Return (samples, seconds the container declares or None, frames that failed to decode)."""
    import numpy as np

    counts: dict = {}
    chunks = list(_resampled(path, counts))
    if not chunks:
        return np.zeros(0, dtype=np.float32), counts.get("declared"), counts.get("bad_frames", 0)
    samples = np.concatenate(chunks).astype(np.float32) / 32768.0
    return samples, counts.get("declared"), counts.get("bad_frames", 0)


def _resampled(path: str, counts: dict) -> Iterator:
    """16 kHz mono int16 pieces of ``path`` as decoded; ``counts`` receives ``declared``
    (seconds the container declares, or None) and ``bad_frames`` (frames that failed to decode)."""
    import av

    resampler = av.audio.resampler.AudioResampler(format="s16", layout="mono", rate=SAMPLING_RATE)
    counts["bad_frames"] = 0
    try:
        with av.open(path, mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioError(f"{path}: has no audio stream; give an audio or video file with sound")
            counts["declared"] = container.duration / 1_000_000 if container.duration else None
            frames = container.decode(audio=0)
            while True:
                try:
                    frame = next(frames)
                except StopIteration:
                    break
                except av.error.InvalidDataError:
                    counts["bad_frames"] += 1
                    continue
                for resampled in resampler.resample(frame):
                    yield resampled.to_ndarray().reshape(-1)
            for resampled in resampler.resample(None):  # flush
                yield resampled.to_ndarray().reshape(-1)
    except AudioError:
        raise
    except (av.error.FFmpegError, ValueError, OSError) as error:
        raise AudioError(f"{path}: not audio or damaged ({_reason(error)})") from None


@dataclass
class AudioBlock:
    """A stretch of a file decoded by :func:`stream_audio`: ``samples`` 16 kHz mono float32,
    starting ``start_seconds`` into the file; the ``last`` block carries the file's ``warnings``."""

    samples: np.ndarray  # float32
    start_seconds: float
    last: bool
    warnings: list[str] = field(default_factory=list)


def stream_audio(path: str | os.PathLike, block_seconds: float = 300.0) -> Iterator[AudioBlock]:
    """Decode a file in blocks of ``block_seconds`` (the last one shorter), so that a long file
    never sits in memory whole: at most one block (``block_seconds`` x 64 KB/s as float32) plus
    the decoder's int16 pieces of it. Raises :class:`AudioError` as :func:`load_audio` does;
    a file that decodes to nothing gives one empty last block.
    """
    import numpy as np

    path = os.fspath(path)
    _check_file(path)
    block_samples = max(1, int(block_seconds * SAMPLING_RATE))
    counts: dict = {}
    pending: list = []
    pending_samples = 0
    start_samples = 0
    for piece in _resampled(path, counts):
        pending.append(piece)
        pending_samples += len(piece)
        while pending_samples >= block_samples:
            joined = np.concatenate(pending)
            block, rest = joined[:block_samples], joined[block_samples:]
            if len(rest) == 0:  # might be the end: hold it back until more arrives
                pending, pending_samples = [block], len(block)
                break
            yield AudioBlock(block.astype(np.float32) / 32768.0, start_samples / SAMPLING_RATE, last=False)
            start_samples += len(block)
            pending, pending_samples = [rest], len(rest)
    joined = np.concatenate(pending) if pending else np.zeros(0, dtype=np.int16)
    total_seconds = (start_samples + len(joined)) / SAMPLING_RATE
    if start_samples + len(joined) == 0 and (counts["bad_frames"] or os.path.getsize(path) > HEADER_BYTES):
        raise AudioError(f"{path}: not audio or damaged, nothing could be decoded; check the file")
    warnings = _damage_warnings(path, total_seconds, counts.get("declared"), counts["bad_frames"])
    yield AudioBlock(joined.astype(np.float32) / 32768.0, start_samples / SAMPLING_RATE, last=True, warnings=warnings)


def _damage_warnings(path: str, seconds: float, declared_seconds: float | None, bad_frames: int) -> list[str]:
    warnings = []
    if bad_frames:
        warnings.append(f"{path}: damaged audio, {bad_frames} frame(s) could not be decoded")
    if declared_seconds and seconds < 0.99 * declared_seconds:
        warnings.append(
            f"{path}: damaged or truncated audio, decoded {seconds:.1f} s "
            f"of the {declared_seconds:.1f} s its header declares"
        )
    return warnings


def _reason(error: BaseException) -> str:
    return getattr(error, "strerror", None) or first_line(error)
