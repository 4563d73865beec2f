"""Reading audio files into the 16 kHz mono float32 arrays Whisper takes.

Decoding uses PyAV (bundled FFmpeg, no system ffmpeg needed), the same way as
``faster_whisper.decode_audio``, but keeps count of what could not be decoded so that a
damaged file is reported instead of silently shortened.
"""

from __future__ import annotations

import os
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
    if bad_frames:
        audio.warnings.append(f"{path}: damaged audio, {bad_frames} frame(s) could not be decoded")
    if declared_seconds and audio.seconds < 0.99 * declared_seconds:
        audio.warnings.append(
            f"{path}: damaged or truncated audio, decoded {audio.seconds:.1f} s "
            f"of the {declared_seconds:.1f} s its header declares"
        )
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
    import av
    import numpy as np

    resampler = av.audio.resampler.AudioResampler(format="s16", layout="mono", rate=SAMPLING_RATE)
    chunks = []
    bad_frames = 0
    try:
        with av.open(path, mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioError(f"{path}: has no audio stream; give an audio or video file with sound")
            declared_seconds = container.duration / 1_000_000 if container.duration else None
            frames = container.decode(audio=0)
            while True:
                try:
                    frame = next(frames)
                except StopIteration:
                    break
                except av.error.InvalidDataError:
                    bad_frames += 1
                    continue
                for resampled in resampler.resample(frame):
                    chunks.append(resampled.to_ndarray().reshape(-1))
            for resampled in resampler.resample(None):  # flush
                chunks.append(resampled.to_ndarray().reshape(-1))
    except AudioError:
        raise
    except (av.error.FFmpegError, ValueError, OSError) as error:
        raise AudioError(f"{path}: not audio or damaged ({_reason(error)})") from None
    if not chunks:
        return np.zeros(0, dtype=np.float32), declared_seconds, bad_frames
    samples = np.concatenate(chunks).astype(np.float32) / 32768.0
    return samples, declared_seconds, bad_frames


def _reason(error: BaseException) -> str:
    return getattr(error, "strerror", None) or first_line(error)
