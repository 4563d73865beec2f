"""Reading audio into the 16 kHz mono float32 arrays Whisper takes, and checking given arrays.

Decoding uses PyAV (bundled FFmpeg, no system ffmpeg needed), the same way as
``faster_whisper.decode_audio``, but packet by packet: a packet that cannot be decoded is
skipped and counted instead of ending the file, and a damaged file is reported (how many
packets, about how many seconds) instead of silently shortened. Paths, pipes (``/dev/stdin``,
FIFOs, process substitution) and file objects opened in binary mode are read the same way.

Arrays given instead of a file (:func:`audio_from_array`) follow these rules:

- float samples in [-1, 1] are used as they are; float samples beyond it are scaled down by
  their peak, with a warning (a float array of int16 values, for example);
- integer PCM is converted with its own scale (int16 / 32768, int32 / 2**31, int8 / 128;
  unsigned 8-bit is centred on 128 first), with a warning;
- NaN or infinite samples, complex, boolean or non-numeric arrays are refused (AudioError);
- 1-D is mono; 2-D with at most 8 channels along one axis, ``(channels, samples)`` or
  ``(samples, channels)``, is averaged to mono with a warning; any other shape is refused.
The sample rate of an array cannot be checked: it must be 16 kHz. A list of arrays is refused:
it is several recordings, not the channels of one (give those as one 2-D array).

A WAV file cut short (a copy stopped midway, a recorder that crashed) is decoded to its end with
a warning: PyAV takes a WAV's duration from the file's size, so the length its header declares
is read from the ``data`` chunk here.

Channels: ``keep_channels=True`` (for ``channels="split"`` or ``"auto"``, see
:mod:`whisperkit.core.channels`) also keeps each channel, 16 kHz, in ``Audio.channels``
(channels x samples); ``samples`` stays the mono mix, decoded exactly as without it (FFmpeg's
downmix for a file, the mean for an array). :func:`stream_audio` streams one channel, or all.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING

from whisperkit.errors import AudioError, first_line

if TYPE_CHECKING:
    import numpy as np

SAMPLING_RATE = 16000  # Hz, what Whisper models take
SILENCE_PEAK = 1e-3  # peak amplitude below which audio counts as silence (about -60 dBFS)
HEADER_BYTES = 16 * 1024  # an empty but valid audio file is smaller than this
MAX_CHANNELS = 8  # a 2-D array with more than this along both axes is not channels x samples
WAV_HEADER_BYTES = 64 * 1024  # a WAV's chunks before its audio fit in this


@dataclass
class Audio:
    """Decoded audio: ``samples`` at 16 kHz mono float32 in [-1, 1]; ``channels``, where kept
    (``keep_channels=True``) and there are several, each channel at 16 kHz (channels x samples float32)."""

    samples: np.ndarray  # float32
    path: str | None = None
    warnings: list[str] = field(default_factory=list)
    channels: np.ndarray | None = None  # float32, channels x samples

    @property
    def seconds(self) -> float:
        """Duration in seconds."""
        return len(self.samples) / SAMPLING_RATE

    @property
    def is_silent(self) -> bool:
        """True when there is no sample above -60 dBFS (or no sample at all)."""
        return len(self.samples) == 0 or float(abs(self.samples).max()) < SILENCE_PEAK


if TYPE_CHECKING:
    #: What every function that transcribes takes as audio: a file path (a pipe too), a binary
    #: file object, decoded Audio, or a 16 kHz array (see the rules above).
    AudioSource = str | os.PathLike[str] | IO[bytes] | Audio | np.ndarray


@dataclass
class _Decoded:
    samples: np.ndarray
    declared_seconds: float | None = None
    bad_packets: int = 0
    lost_seconds: float = 0.0  # duration of the packets that failed, where the container says
    stopped: str | None = None  # why reading the container stopped early, if it did
    channels: np.ndarray | None = None  # keep_channels: channels x samples
    channel_count: int = 1  # of the stream decoded


def count_channels(path: str | os.PathLike) -> int:
    """The number of channels of a file's first audio stream (0 where it cannot be read: the
    decoding that follows says why)."""
    import av

    try:
        with av.open(os.fspath(path), mode="r", metadata_errors="ignore") as container:
            streams = container.streams.audio
            return int(streams[0].codec_context.channels) if streams else 0
    except (av.error.FFmpegError, ValueError, OSError):
        return 0


def load_audio(source: str | os.PathLike | IO[bytes], keep_channels: bool = False) -> Audio:
    """Decode an audio file, a pipe or a binary file object to 16 kHz mono float32 (with
    ``keep_channels``, each channel too, in ``Audio.channels``, where there are several).

    Raises :class:`AudioError` for a missing file, a directory, an empty (0-byte) file, a file
    that is not audio, or a damaged file of which nothing (or only silence) could be decoded. A
    damaged file of which part could be decoded gives that part, with warnings in
    ``Audio.warnings`` saying how much was lost.
    """
    name = _source_name(source)
    if isinstance(source, (str, os.PathLike)):
        source = os.fspath(source)
        _check_file(source)
    decoded = _decode(source, name, keep_channels)
    audio = Audio(samples=decoded.samples, path=name, channels=decoded.channels)
    damaged = bool(decoded.bad_packets or decoded.stopped)
    declared = decoded.declared_seconds
    short = declared is not None and declared > 0 and audio.seconds < 0.99 * declared
    if audio.seconds == 0 and (damaged or _size(source) > HEADER_BYTES):
        raise AudioError(f"{name}: not audio or damaged, nothing could be decoded; check the file")
    if audio.is_silent and audio.seconds > 0 and (damaged or short):
        of = f" of the {declared:.1f} s its header declares" if declared else ""
        raise AudioError(f"{name}: damaged, only {audio.seconds:.1f} s of silence could be decoded{of}; "
                         "check the file")
    if damaged or short:
        audio.warnings.append(_damage_warning(name, decoded, audio.seconds, short))
    return audio


def audio_from_array(array: object, name: str = "audio", keep_channels: bool = False) -> Audio:
    """Check a sample array (16 kHz) and convert it to mono float32 in [-1, 1]; see the module rules
    (with ``keep_channels``, a 2-D array's channels are kept too, scaled as the mix is)."""
    import numpy as np

    if isinstance(array, (bytes, bytearray, memoryview, str)):
        raise AudioError(
            f"{name}: got {type(array).__name__}; pass a path, a binary file object "
            "(io.BytesIO(data) for encoded audio) or a 16 kHz numpy array"
        )
    if isinstance(array, (list, tuple)) and any(isinstance(item, (np.ndarray, list, tuple)) for item in array):
        raise AudioError(
            f"{name}: got a {type(array).__name__} of {len(array)} arrays, several recordings rather than one; "
            "transcribe each on its own (or give files to wk.transcribe_corpus), or pass the channels of one "
            "recording as one 2-D numpy array"
        )
    try:
        samples = np.asarray(array)
    except (TypeError, ValueError) as error:
        raise AudioError(f"{name}: not an array of samples ({first_line(error)})") from None
    warnings: list[str] = []
    samples = _to_float(samples, name, warnings)
    channels = _as_channels(samples) if keep_channels else None
    samples = _to_mono(samples, name, warnings)
    if samples.size and not np.isfinite(samples).all():
        bad = int(samples.size - np.isfinite(samples).sum())
        raise AudioError(f"{name}: {bad} sample(s) are NaN or infinite; clean the array first")
    peak = float(np.abs(samples).max()) if samples.size else 0.0
    if peak > 1.0:
        samples = samples / peak
        warnings.append(f"{name}: float samples reach {peak:.4g}, beyond [-1, 1]; scaled down by that peak")
    if channels is not None:
        channel_peak = float(np.abs(channels).max()) if channels.size else 0.0
        channels = np.ascontiguousarray(channels / max(1.0, channel_peak), dtype=np.float32)
    return Audio(samples=np.ascontiguousarray(samples, dtype=np.float32), warnings=warnings, channels=channels)


def _as_channels(samples):
    """A 2-D array's channels as rows (channels x samples), or None for mono or a shape
    :func:`_to_mono` refuses."""
    if samples.ndim != 2 or not (min(samples.shape) <= MAX_CHANNELS < max(samples.shape)) or min(samples.shape) < 2:
        return None
    return samples if samples.shape[0] <= MAX_CHANNELS else samples.T


def _to_float(samples, name: str, warnings: list[str]):
    import numpy as np

    kind = samples.dtype.kind
    if kind == "f":
        return samples.astype(np.float32, copy=False)
    if kind in "iu":
        bits = samples.dtype.itemsize * 8
        scale = float(2 ** (bits - 1))
        offset = scale if kind == "u" else 0.0
        how = f"centred on {offset:.0f} and divided by {scale:.0f}" if offset else f"divided by {scale:.0f}"
        warnings.append(f"{name}: {samples.dtype.name} PCM converted to float32 ({how})")
        return ((samples.astype(np.float64) - offset) / scale).astype(np.float32)
    raise AudioError(
        f"{name}: samples of type {samples.dtype.name} are not audio; give float32 in [-1, 1] or integer PCM"
    )


def _to_mono(samples, name: str, warnings: list[str]):
    if samples.ndim == 1:
        return samples
    if samples.ndim == 2 and min(samples.shape) <= MAX_CHANNELS and max(samples.shape) > MAX_CHANNELS:
        axis = 0 if samples.shape[0] <= MAX_CHANNELS else 1
        channels = samples.shape[axis]
        if channels > 1:
            warnings.append(f"{name}: shape {samples.shape}, averaged {channels} channels to mono")
        return samples.mean(axis=axis)
    raise AudioError(
        f"{name}: array of shape {samples.shape} is not 16 kHz audio; give 1-D mono samples, or 2-D "
        f"with at most {MAX_CHANNELS} channels as (channels, samples) or (samples, channels)"
    )


def _source_name(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if not callable(getattr(source, "read", None)):
        raise AudioError(
            f"audio: cannot read a {type(source).__name__}; pass a path, a binary file object or an array"
        )
    if isinstance(source, io.TextIOBase):
        raise AudioError("audio: file object is open in text mode; open it with 'rb'")
    name = getattr(source, "name", None)
    return name if isinstance(name, str) else "<file object>"


def _check_file(path: str) -> None:
    """A precondition on paths only: a stream (pipe, FIFO, /dev/stdin) has no size to check."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        raise AudioError(f"{path}: no such file; check the path") from None
    except OSError as error:
        raise AudioError(f"{path}: cannot read ({error.strerror or error})") from None
    if stat.S_ISDIR(status.st_mode):
        raise AudioError(f"{path}: is a directory; name an audio file inside it")
    if stat.S_ISREG(status.st_mode) and status.st_size == 0:
        raise AudioError(f"{path}: file is empty (0 bytes), not audio")
    if stat.S_ISREG(status.st_mode):  # (a FIFO would block here: streams are opened by the decoder)
        try:
            os.close(os.open(path, os.O_RDONLY))
        except OSError as error:
            raise AudioError(f"{path}: cannot read ({error.strerror or error}); check its permissions") from None


def _size(source) -> int:
    """Bytes of a regular file, else 0 (a stream or file object has no size worth trusting)."""
    try:
        status = os.stat(source) if isinstance(source, str) else None
    except OSError:
        return 0
    return status.st_size if status is not None and stat.S_ISREG(status.st_mode) else 0


def _decode(source, name: str, keep_channels: bool = False) -> _Decoded:
    """Decode packet by packet; a packet that fails is counted and skipped, not the end of the file."""
    import numpy as np

    result = _Decoded(samples=np.zeros(0, dtype=np.float32))
    if not keep_channels:
        chunks = list(_resampled(source, name, result))
        if chunks:
            result.samples = np.concatenate(chunks).astype(np.float32) / 32768.0
        return result
    pairs = list(_resampled(source, name, result, keep_channels=True))
    if pairs:
        result.samples = np.concatenate([mono for mono, _ in pairs]).astype(np.float32) / 32768.0
        channels = np.concatenate([split for _, split in pairs], axis=1)
        if len(channels) > 1:  # the two resamplers may end a few samples apart: the mix's length rules
            length = len(result.samples)
            channels = np.pad(channels[:, :length], ((0, 0), (0, max(0, length - channels.shape[1]))))
            result.channels = channels.astype(np.float32) / 32768.0
    return result


def _resampled(source, name: str, result: _Decoded, keep_channels: bool = False, mono: bool = True) -> Iterator:
    """The 16 kHz mono int16 pieces of ``source`` as they are decoded (with ``keep_channels``,
    pairs of the mono piece, empty unless ``mono``, and the channels' piece, channels x samples int16); ``result``
    receives the declared duration and the damage (bad packets, seconds lost, why reading stopped)."""
    import av

    resampler = av.audio.resampler.AudioResampler(format="s16", layout="mono", rate=SAMPLING_RATE) if mono else None
    # the stream's own layout, interleaved (planar frames of many channels crash PyAV 14's to_ndarray)
    splitter = av.audio.resampler.AudioResampler(format="s16", rate=SAMPLING_RATE) if keep_channels else None
    try:
        with av.open(source, mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioError(f"{name}: has no audio stream; give an audio or video file with sound")
            stream = container.streams.audio[0]
            result.channel_count = max(1, int(stream.codec_context.channels or 1))
            result.declared_seconds = container.duration / 1_000_000 if container.duration else None
            if isinstance(source, str):
                result.declared_seconds = wav_header_seconds(source) or result.declared_seconds
            packets = container.demux(stream)
            while True:
                try:
                    packet = next(packets)
                except StopIteration:
                    break
                except av.error.FFmpegError as error:  # the container itself is damaged here: stop
                    result.stopped = first_line(error)
                    break
                try:
                    frames = packet.decode()
                except av.error.FFmpegError:
                    result.bad_packets += 1
                    if packet.duration and packet.time_base:
                        result.lost_seconds += float(packet.duration * packet.time_base)
                    continue
                for frame in frames:
                    yield from _pieces(resampler, splitter, frame, result.channel_count)
            yield from _pieces(resampler, splitter, None, result.channel_count)  # flush
    except AudioError:
        raise
    except (av.error.FFmpegError, ValueError, OSError) as error:
        raise AudioError(f"{name}: not audio or damaged ({_reason(error)})") from None


def wav_header_seconds(path: str) -> float | None:
    """Seconds of audio a WAV file's header declares (its ``data`` chunk's size), or None for
    another format, a stream's open-ended size, or a header that cannot be read. Only a regular
    file is read: a FIFO or ``/dev/stdin`` would hand the decoder's bytes to this read."""
    import struct

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        with open(path, "rb") as handle:
            head = handle.read(WAV_HEADER_BYTES)
    except OSError:
        return None
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    position, bytes_per_second = 12, 0
    while position + 8 <= len(head):
        chunk, size = head[position:position + 4], struct.unpack("<I", head[position + 4:position + 8])[0]
        if chunk == b"fmt " and position + 16 <= len(head):
            bytes_per_second = struct.unpack("<I", head[position + 16:position + 20])[0]
        if chunk == b"data":
            unknown = size in (0, 0xFFFFFFFF)  # written to a pipe: the size was never filled in
            return None if unknown or not bytes_per_second else size / bytes_per_second
        position += 8 + size + (size & 1)  # chunks are padded to an even size
    return None


@dataclass
class AudioBlock:
    """A stretch of a file decoded by :func:`stream_audio`: ``samples`` 16 kHz float32 (mono, one
    channel, or channels x samples),
    starting ``start_seconds`` into the file; the ``last`` block carries the file's ``warnings``."""

    samples: np.ndarray  # float32
    start_seconds: float
    last: bool
    warnings: list[str] = field(default_factory=list)


def stream_audio(path: str | os.PathLike, block_seconds: float = 60.0,
                 channel: int | str | None = None) -> Iterator[AudioBlock]:
    """Decode a file in blocks of ``block_seconds`` (the last one shorter), so that a long file
    never sits in memory whole: at most one block (``block_seconds`` x 64 KB/s as float32) and
    the decoder's int16 pieces of it. Raises :class:`AudioError` as :func:`load_audio` does
    (at the end, for damage only known then); a file that decodes to nothing but is valid gives
    one empty last block.

    ``channel`` None streams the mono mix; a number streams that channel alone (0 first); ``"all"``
    streams every channel, each block's ``samples`` then channels x samples.
    """
    import numpy as np

    path = os.fspath(path)
    _check_file(path)
    block_samples = max(1, int(block_seconds * SAMPLING_RATE))
    decoded = _Decoded(samples=np.zeros(0, dtype=np.float32))
    pending: list = []
    pending_samples = start_samples = 0
    peak = 0
    pieces = _resampled(path, path, decoded, keep_channels=channel is not None, mono=channel is None)
    for piece in _channel_pieces(pieces, channel, path):
        pending.append(piece)
        pending_samples += piece.shape[-1]
        peak = max(peak, int(np.abs(piece.astype(np.int32)).max(initial=0)))
        while pending_samples > block_samples:
            joined = np.concatenate(pending, axis=-1)
            block, rest = joined[..., :block_samples], joined[..., block_samples:]
            yield AudioBlock(block.astype(np.float32) / 32768.0, start_samples / SAMPLING_RATE, last=False)
            start_samples += block.shape[-1]
            pending, pending_samples = [rest], rest.shape[-1]
    empty = np.zeros((decoded.channel_count, 0) if channel == "all" else 0, dtype=np.int16)
    joined = np.concatenate(pending, axis=-1) if pending else empty
    seconds = (start_samples + joined.shape[-1]) / SAMPLING_RATE
    damaged = bool(decoded.bad_packets or decoded.stopped)
    declared = decoded.declared_seconds
    short = declared is not None and declared > 0 and seconds < 0.99 * declared
    if seconds == 0 and (damaged or _size(path) > HEADER_BYTES):
        raise AudioError(f"{path}: not audio or damaged, nothing could be decoded; check the file")
    if peak / 32768.0 < SILENCE_PEAK and seconds > 0 and (damaged or short):
        of = f" of the {declared:.1f} s its header declares" if declared else ""
        raise AudioError(f"{path}: damaged, only {seconds:.1f} s of silence could be decoded{of}; check the file")
    warnings = [_damage_warning(path, decoded, seconds, short)] if damaged or short else []
    yield AudioBlock(joined.astype(np.float32) / 32768.0, start_samples / SAMPLING_RATE, last=True, warnings=warnings)


def _channel_pieces(pieces: Iterator, channel: int | str | None, name: str) -> Iterator[np.ndarray]:
    """The decoder's pieces of ``channel`` (see :func:`stream_audio`)."""
    if channel is None:
        yield from pieces
        return
    for _, split in pieces:
        if channel == "all":
            yield split
        elif isinstance(channel, int) and 0 <= channel < len(split):
            yield split[channel]
        else:
            raise AudioError(f"{name}: has no channel {channel!r} (it has {len(split)})")


def _damage_warning(name: str, decoded: _Decoded, seconds: float, short: bool) -> str:
    """One line: how much was decoded, how much was lost, and why."""
    details = []
    if decoded.bad_packets:
        details.append(f"{decoded.bad_packets} packet(s) could not be decoded and were skipped")
    if decoded.stopped:
        details.append(f"reading stopped early: {decoded.stopped}")
    if short:
        declared = decoded.declared_seconds or 0.0
        lost = f"{declared - seconds:.1f} s lost" + "".join(f"; {d}" for d in details)
        return (f"{name}: damaged or truncated audio, decoded {seconds:.1f} s "
                f"of the {declared:.1f} s its header declares ({lost})")
    lost = f", about {decoded.lost_seconds:.1f} s lost" if decoded.lost_seconds else ""
    return f"{name}: damaged audio, " + "; ".join(details) + lost


def _pieces(resampler, splitter, frame, rows: int) -> Iterator:
    """One frame (None: the flush) through the mono resampler, and the channels' one (``rows``
    channels) when there is one."""
    import numpy as np

    mono = [resampled.to_ndarray().reshape(-1) for resampled in resampler.resample(frame)] if resampler else []
    if splitter is None:
        yield from mono
        return
    split = [resampled.to_ndarray().reshape(-1, rows).T for resampled in splitter.resample(frame)]
    yield (np.concatenate(mono) if mono else np.zeros(0, dtype=np.int16),
           np.concatenate(split, axis=1) if split else np.zeros((rows, 0), dtype=np.int16))


def _reason(error: BaseException) -> str:
    return getattr(error, "strerror", None) or first_line(error)
