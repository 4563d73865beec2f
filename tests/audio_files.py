"""Audio files made on the spot for the tests of several layers."""

from __future__ import annotations

import wave

import numpy as np


def write_wav(path, *channels: np.ndarray) -> str:
    """A 16 kHz 16-bit WAV at ``path`` with one channel per array of samples in [-1, 1]
    (clipped; shorter arrays padded with silence); returns the path as text."""
    length = max(len(channel) for channel in channels)
    rows = np.stack([np.pad(channel, (0, length - len(channel))) for channel in channels])
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(len(channels))
        handle.setsampwidth(2)
        handle.setframerate(16000)
        handle.writeframes((np.clip(rows.T, -1, 1) * 32767).astype("<i2").tobytes())
    return str(path)
