"""Channels of a recording: mix them to mono, or transcribe each as a speaker of its own.

Calls, interviews with one microphone per person and many meeting recorders put each speaker
on a channel. ``channels`` says what to do with a file of several channels:

- ``"mix"``: average them to mono (what whisperkit always did; FFmpeg's downmix for files);
- ``"split"``: transcribe each channel as a stream of its own, each segment named by its
  channel (``left``/``right`` for two channels, ``ch0`` .. ``chN`` otherwise, or the user's
  ``channel_names``), the channels' segments merged in time order;
- ``"auto"`` (the default): split when the channels carry different signals, mix when they
  are nearly the same (a stereo file made from mono, a centred voice).

``auto``'s test (:func:`choose`), on the whole file: each channel's level in 25 ms frames (dB),
and, over the frames where some channel is within 40 dB of the file's loudest frame, the
difference of levels between two channels. The same signal on two channels (whatever their
gains, or a short delay between two microphones of one room) keeps that difference nearly
constant; two speakers make it swing, one channel far louder while its speaker talks and the
other while theirs does. The spread of the difference (90th minus 10th percentile) decides: at
least ``SPLIT_SPREAD_DB`` on some pair of channels splits. Measured: faster-whisper's
``stereo_diarization.wav`` 57 dB; two bundled clips, one per channel, 60 dB; one clip on both
channels 0 dB, at two gains 0 dB, delayed by 2.5 ms (40 samples) 1.9 dB, with noise too 2.0 dB. A channel with no
sample above -60 dBFS is left out (it carries nothing), so a stereo file with one silent
channel is mixed, as before.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from whisperkit.core.audio import MAX_CHANNELS, SAMPLING_RATE, SILENCE_PEAK
from whisperkit.errors import AudioError, ConfigError

if TYPE_CHECKING:
    import numpy as np

CHANNEL_MODES = ("mix", "split", "auto")
DEFAULT_CHANNELS = "auto"  # a call comes out per speaker, a mono-made-stereo file as it always did
SPLIT_SPREAD_DB = 10.0  # auto splits when the level difference of two channels swings this much
FRAME_SECONDS = 0.025  # frames of the level test
ACTIVE_DB = 40.0  # a frame counts where some channel is within this of the loudest frame
FLOOR_DB = 60.0  # levels below the loudest frame by more than this count as this (silence)
STEREO_NAMES = ("left", "right")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.\-]{0,31}")  # a name that is safe in txt, srt, vtt and file names


def check_channels(channels: object, names: object = None) -> None:
    """A :class:`ConfigError` unless ``channels`` is mix, split or auto and ``names`` is None or
    distinct short names (letters, digits, space, ``_ . -``; at most 32 characters)."""
    if channels not in CHANNEL_MODES:
        raise ConfigError(f"unknown channels {channels!r}; expected one of: {', '.join(CHANNEL_MODES)}")
    if names is None:
        return
    if isinstance(names, str) or not isinstance(names, Sequence) or not names:
        raise ConfigError(f"channel_names must be a list of names, one per channel, got {names!r}")
    for name in names:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ConfigError(f"channel name {name!r}: use letters, digits, space, _ . - (at most 32 characters, "
                              "starting with a letter or digit)")
    if len(set(names)) != len(names):
        raise ConfigError(f"channel_names must differ from each other, got {list(names)}")
    if len(names) > MAX_CHANNELS:
        raise ConfigError(f"{len(names)} channel names given; whisperkit splits at most {MAX_CHANNELS} channels")


def channel_names(count: int, names: Sequence[str] | None = None, source: str = "audio") -> list[str]:
    """The names of ``count`` channels: ``names`` when given (one per channel), else ``left``,
    ``right`` for two and ``ch0`` .. ``ch<count-1>`` otherwise.

    >>> channel_names(2), channel_names(3)
    (['left', 'right'], ['ch0', 'ch1', 'ch2'])
    """
    if names is not None:
        if len(names) != count:
            raise AudioError(f"{source}: has {count} channel(s) but {len(names)} channel name(s) were given "
                              f"({', '.join(names)}); give one name per channel")
        return list(names)
    return list(STEREO_NAMES) if count == 2 else [f"ch{index}" for index in range(count)]


def check_split_count(count: int, source: str = "audio") -> None:
    """An :class:`AudioError` for a file of more channels than whisperkit splits (``MAX_CHANNELS``)."""
    if count > MAX_CHANNELS:
        raise AudioError(f"{source}: has {count} channels; whisperkit splits at most {MAX_CHANNELS}; "
                         "use channels='mix' (--channels mix) to transcribe them mixed")


@dataclass(frozen=True)
class ChannelChoice:
    """What to do with a file's channels: ``split`` or not, the ``names`` of the channels to
    transcribe apart (those carrying sound), and ``note``: one line saying what and why (None
    where there is nothing to say: a mono file, or ``mix`` as asked)."""

    split: bool
    names: tuple[str, ...] = ()
    indices: tuple[int, ...] = ()
    note: str | None = None


def frame_levels(channels: np.ndarray) -> np.ndarray:
    """Level in dB (of full scale, power) of each channel (rows of 16 kHz float32 samples) in
    frames of ``FRAME_SECONDS``: an array of channels x frames; a trailing part frame is dropped."""
    import numpy as np

    frame = int(FRAME_SECONDS * SAMPLING_RATE)
    count = channels.shape[1] // frame
    framed = channels[:, :count * frame].astype(np.float64).reshape(channels.shape[0], count, frame)
    return 10.0 * np.log10(np.mean(framed ** 2, axis=2) + 1e-12)


def level_spread(levels: np.ndarray, first: int, second: int) -> float:
    """How far the level difference of two channels swings (dB, 90th minus 10th percentile) over
    the frames where either is within ``ACTIVE_DB`` of the loudest frame; 0 with no such frame."""
    import numpy as np

    if levels.size == 0:
        return 0.0
    loudest = float(levels.max())
    pair = np.maximum(levels[[first, second]], loudest - FLOOR_DB)
    active = pair.max(axis=0) >= loudest - ACTIVE_DB
    if not active.any():
        return 0.0
    difference = pair[0, active] - pair[1, active]
    return float(np.percentile(difference, 90) - np.percentile(difference, 10))


def choose(mode: str, levels: np.ndarray, peaks: Sequence[float], names: Sequence[str] | None = None,
           source: str = "audio") -> ChannelChoice:
    """Mix or split a file whose channels have frame ``levels`` (:func:`frame_levels`) and
    ``peaks`` (largest absolute sample of each); ``names`` as the user gave them (or None).

    ``mix`` always mixes; ``split`` splits the channels that carry sound (a mono file: a note
    that there was nothing to split); ``auto`` splits when some pair of sounding channels swings
    by ``SPLIT_SPREAD_DB`` or more (see the module's docstring)."""
    count = len(peaks)
    if mode == "mix" or count == 0:
        return ChannelChoice(split=False)
    if count == 1:
        note = f"{source}: mono (1 channel), nothing to split; transcribed as it is" if mode == "split" else None
        return ChannelChoice(split=False, note=note)
    check_split_count(count, source)
    all_names = channel_names(count, names, source)
    sounding = [index for index in range(count) if peaks[index] >= SILENCE_PEAK]
    quiet = [all_names[index] for index in range(count) if index not in sounding]
    silent = f"; {', '.join(quiet)} silent (no sample above -60 dBFS)" if quiet else ""
    if mode == "split":
        if not sounding:
            return ChannelChoice(split=False)
        return ChannelChoice(True, tuple(all_names[i] for i in sounding), tuple(sounding),
                             f"{source}: split into {', '.join(all_names[i] for i in sounding)}{silent}" if quiet else None)
    if len(sounding) < 2:
        only = f"only {all_names[sounding[0]]} carries sound" if sounding else "every channel is silent"
        return ChannelChoice(False, note=f"{source}: {count} channels mixed to mono (channels=auto): {only}")
    spread = max(level_spread(levels, a, b) for i, a in enumerate(sounding) for b in sounding[i + 1:])
    if spread >= SPLIT_SPREAD_DB:
        split = tuple(all_names[i] for i in sounding)
        return ChannelChoice(True, split, tuple(sounding),
                             f"{source}: split into {', '.join(split)} (channels=auto): the channels carry different "
                             f"signals (their level difference swings by {spread:.0f} dB, split from "
                             f"{SPLIT_SPREAD_DB:.0f}){silent}")
    return ChannelChoice(False, note=f"{source}: {count} channels mixed to mono (channels=auto): nearly the same signal "
                                     f"(their level difference swings by {spread:.1f} dB, split from "
                                     f"{SPLIT_SPREAD_DB:.0f})")


def choose_for(mode: str, channels: np.ndarray, names: Sequence[str] | None = None,
               source: str = "audio") -> ChannelChoice:
    """:func:`choose` for a file's decoded channels (rows of 16 kHz float32 samples)."""
    import numpy as np

    peaks = [float(np.abs(row).max(initial=0.0)) for row in channels]
    levels = frame_levels(channels) if mode == "auto" and len(peaks) > 1 else np.zeros((len(peaks), 0))
    return choose(mode, levels, peaks, names, source)


def file_levels(path: str, block_seconds: float = 60.0) -> tuple[np.ndarray, list[float]]:
    """Each channel's frame levels (:func:`frame_levels`) and peak over a whole file, read
    ``block_seconds`` at a time (so a long file never sits in memory whole): for :func:`choose`."""
    import numpy as np

    from whisperkit.core.audio import stream_audio

    levels, peaks = [], None
    for block in stream_audio(path, block_seconds, channel="all"):
        levels.append(frame_levels(block.samples))
        block_peaks = np.abs(block.samples).max(axis=1, initial=0.0)
        peaks = block_peaks if peaks is None else np.maximum(peaks, block_peaks)
    return np.concatenate(levels, axis=1), [float(peak) for peak in (peaks if peaks is not None else [])]
