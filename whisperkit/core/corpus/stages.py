"""The CPU stages of the corpus pipeline, as plain functions on plain data.

``read_pieces`` (decode + voice detection) -> ``Packer`` / ``pack_pieces`` (windows with a clip
map) -> ``add_features`` (log-mel, the model's input). The model stage is
:class:`whisperkit.core.corpus.decoding.WindowDecoder`; :func:`assemble` and
:mod:`whisperkit.core.corpus.outputs` finish each file. See :mod:`whisperkit.core.corpus.pipeline`
for how they connect.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from whisperkit.core.audio import SAMPLING_RATE, SILENCE_PEAK, AudioBlock, stream_audio
from whisperkit.errors import WhisperkitError

if TYPE_CHECKING:
    import numpy as np

MAX_PIECE_SECONDS = 30.0  # Whisper's window: a piece never exceeds it
PACK_SECONDS = 28.0  # a packed window holds at most this much (clips plus gaps)
GAP_SECONDS = 0.6  # silence between two packed pieces
BLOCK_SECONDS = 60.0  # a long file is decoded and voice-detected this much at a time
TRIM_EVERY_SECONDS = 5.0  # freed memory goes back to the system at most this often


@dataclass
class Source:
    """One input file: ``index`` (its number in the run), ``path``, and ``name``: the output path
    relative to the output folder, without extension (``"sub/clip"`` writes ``DIR/sub/clip.txt``);
    ``channels`` and ``channel_names`` as in :class:`whisperkit.Config` (``"mix"``: as ever)."""

    index: int
    path: str
    name: str
    channels: str = "mix"
    channel_names: tuple[str, ...] | None = None


@dataclass
class Piece:
    """At most 30 s of one file's speech: a whole short file, or one voice-detected chunk of a long one.

    ``samples`` 16 kHz float32; ``spans`` maps it back to the file: one ``(file_start_seconds,
    length_seconds)`` per stretch of speech the piece joins, in order. ``number`` counts the
    file's pieces from 0; the ``last`` one carries the file's ``audio_seconds`` and ``warnings``
    (a file with no speech gives one empty last piece). ``channel`` names the channel of a file
    split by channel (each channel a stream of its own, its pieces numbered after the previous
    channel's, one empty last piece after them all); None for a mono or mixed file.
    """

    source: int
    number: int
    samples: np.ndarray  # float32
    spans: tuple[tuple[float, float], ...]
    last: bool = False
    audio_seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    channel: str | None = None

    @property
    def seconds(self) -> float:
        """Length of the piece's audio in seconds."""
        return len(self.samples) / SAMPLING_RATE

    def to_file_seconds(self, seconds: float) -> float:
        """A time in the piece (seconds) as a time in its file (seconds)."""
        offset = 0.0
        for file_start, length in self.spans:
            if seconds <= offset + length:
                return file_start + max(0.0, seconds - offset)
            offset += length
        if not self.spans:
            return 0.0
        file_start, length = self.spans[-1]
        return file_start + length


@dataclass
class Failure:
    """A file that could not be transcribed, and why (one line)."""

    source: int
    reason: str


@dataclass
class Place:
    """Where a piece sits in a window: from ``start`` to ``end`` seconds of the window."""

    piece: Piece  # its samples are dropped once the window is built
    start: float
    end: float


@dataclass
class Window:
    """At most 30 s of audio for one model input: one piece, or several packed with gaps of silence.

    ``places`` is the clip map; ``samples`` is dropped and ``features`` (n_mels x 3000 float32)
    set by :func:`add_features`.
    """

    places: list[Place]
    samples: np.ndarray | None = None  # float32, until features are computed
    features: np.ndarray | None = None  # float32
    seconds: float = 0.0

    @property
    def packed(self) -> bool:
        """True when the window holds more than one piece (its words must be split by time)."""
        return len(self.places) > 1


def read_pieces(source: Source, block_seconds: float = BLOCK_SECONDS) -> Iterator[Piece | Failure]:
    """Stage 1, file -> pieces: decode ``source`` and cut it into pieces of at most 30 s.

    A file of at most 30 s is one piece, whole; a longer one goes through Silero VAD
    (faster-whisper's ``get_speech_timestamps`` and ``collect_chunks``, with the settings of
    ``BatchedInferencePipeline``), ``block_seconds`` at a time. Never raises for a bad file:
    a missing, damaged, non-audio, empty or silent file yields one :class:`Failure`.
    A source with ``channels`` split or auto is read by :func:`channel_pieces`.
    """
    try:
        if source.channels != "mix":
            yield from channel_pieces(source, block_seconds)
            return
        yield from _cut(source.index, stream_audio(source.path, block_seconds), block_seconds)
    except WhisperkitError as error:
        reason = str(error)
        yield Failure(source.index, reason if reason.startswith(source.path) else f"{source.path}: {reason}")
    except (RuntimeError, ValueError, MemoryError) as error:  # a decoder or VAD failure on odd input
        yield Failure(source.index, f"{source.path}: cannot be read ({type(error).__name__}: {error})")


def _cut(index: int, blocks: Iterable[AudioBlock], block_seconds: float) -> Iterator[Piece]:
    import numpy as np

    carry = np.zeros(0, dtype=np.float32)
    carry_start = 0.0
    number = 0
    loudest = 0.0
    for block in blocks:
        if len(block.samples):
            loudest = max(loudest, float(np.abs(block.samples).max()))
        buffer = np.concatenate([carry, block.samples]) if len(carry) else block.samples
        start = carry_start if len(carry) else block.start_seconds
        if block.last and number == 0 and len(buffer) <= MAX_PIECE_SECONDS * SAMPLING_RATE:
            if loudest < SILENCE_PEAK:
                raise WhisperkitError(_silent(buffer))
            seconds = len(buffer) / SAMPLING_RATE
            yield Piece(index, 0, buffer, ((start, seconds),), last=True, audio_seconds=start + seconds,
                        warnings=block.warnings)
            return
        chunks = speech_chunks(buffer)
        keep = chunks if block.last or not chunks else chunks[:-1]
        for samples, spans in keep:
            yield Piece(index, number, samples, tuple((start + s, length) for s, length in spans))
            number += 1
        if block.last:
            if loudest < SILENCE_PEAK:
                raise WhisperkitError(_silent(buffer))
            seconds = start + len(buffer) / SAMPLING_RATE
            yield Piece(index, number, np.zeros(0, dtype=np.float32), (), last=True, audio_seconds=seconds,
                        warnings=block.warnings)
            return
        release_freed_memory()
        # the last chunk may run on into the next block: decode it again with the next block
        cut = int(chunks[-1][1][0][0] * SAMPLING_RATE) if chunks else max(0, len(buffer) - 2 * SAMPLING_RATE)
        if len(buffer) - cut > block_seconds * SAMPLING_RATE:  # sparse speech: do not let the carry grow
            cut = len(buffer)
            for samples, spans in chunks[-1:]:
                yield Piece(index, number, samples, tuple((start + s, length) for s, length in spans))
                number += 1
        carry, carry_start = buffer[cut:].copy(), start + cut / SAMPLING_RATE


def channel_pieces(source: Source, block_seconds: float = BLOCK_SECONDS) -> Iterator[Piece]:
    """A file of ``source.channels`` split or auto: mixed as ever where it is mono or ``auto``
    finds its channels nearly the same (:func:`whisperkit.core.channels.choose`, on levels of
    the whole file, decoded once for that), else each channel a stream of its own (decoded
    again for each channel, so that memory stays one block per reader), its pieces named by channel."""
    import dataclasses

    import numpy as np

    from whisperkit.core.audio import MAX_CHANNELS, count_channels
    from whisperkit.core.channels import choose, file_levels

    count = count_channels(source.path)
    if count > MAX_CHANNELS and source.channels == "auto":
        count = 1  # more than whisperkit splits: mixed, as ever
    if count > 1 and source.channels == "auto":
        choice = choose("auto", *file_levels(source.path, block_seconds), source.channel_names, source.path)
    else:  # split: every channel (a silent one is found as it is cut)
        choice = choose(source.channels, np.zeros((count, 0)), [1.0] * count, source.channel_names, source.path)
    notes = [choice.note] if choice.note else []
    if not choice.split:
        for piece in _cut(source.index, stream_audio(source.path, block_seconds), block_seconds):
            yield dataclasses.replace(piece, warnings=piece.warnings + notes) if piece.last else piece
        return
    number, seconds, warnings, heard = 0, 0.0, [], 0
    for index, name in zip(choice.indices, choice.names):
        try:
            for piece in _cut(source.index, stream_audio(source.path, block_seconds, channel=index), block_seconds):
                if piece.last:
                    seconds, warnings = max(seconds, piece.audio_seconds), piece.warnings
                    if not piece.seconds:  # the channel's end mark: one for the file comes after all channels
                        continue
                yield dataclasses.replace(piece, number=number, last=False, audio_seconds=0.0, warnings=[],
                                          channel=name)
                number += 1
            heard += 1
        except WhisperkitError as error:
            if str(error) != _silent(None):
                raise
            notes.append(f"{source.path}: channel {name} is silent (no sample above -60 dBFS), nothing to transcribe")
    if not heard:
        raise WhisperkitError(_silent(None))
    yield Piece(source.index, number, np.zeros(0, dtype=np.float32), (), last=True, audio_seconds=seconds,
                warnings=warnings + notes)


def release_freed_memory() -> None:
    """Hand memory freed since the last call back to the system (glibc's ``malloc_trim``), at
    most every ``TRIM_EVERY_SECONDS``.

    Without it, glibc keeps the freed blocks of audio, VAD and features (its threshold for
    returning large allocations rises as they are freed), and the resident size of a long run
    creeps up with the audio's length instead of staying flat. Not after every batch: that hands
    back the model's working memory too, and faulting it in again costs more than the decode
    saves (a third slower on a CPU). Elsewhere than glibc this does nothing.
    """
    global _trimmed_at
    trim = _malloc_trim()
    now = time.monotonic()
    if trim is None or now - _trimmed_at < TRIM_EVERY_SECONDS:
        return
    _trimmed_at = now
    trim(0)


_trimmed_at = 0.0


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def _silent(samples) -> str:
    return "silent (no sample above -60 dBFS), nothing to transcribe; check the recording"


def speech_chunks(samples: np.ndarray) -> list[tuple[np.ndarray, list[tuple[float, float]]]]:
    """Voice detection: ``samples`` (16 kHz float32) cut into chunks of at most 30 s of speech.

    Each chunk is ``(chunk_samples, spans)`` with spans ``(start_seconds, length_seconds)``
    relative to ``samples``. Silero VAD through faster-whisper's ``get_speech_timestamps`` with
    ``BatchedInferencePipeline``'s settings (``min_silence_duration_ms=160``); the stretches are
    merged into chunks as its ``collect_chunks`` merges them (whose chunk metadata leaves out the
    first stretch of every chunk after the first, so the grouping is redone here).
    """
    import numpy as np
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(max_speech_duration_s=MAX_PIECE_SECONDS, min_silence_duration_ms=160)
    groups: list[list[dict]] = []
    current: list[dict] = []
    total = 0
    for stretch in get_speech_timestamps(samples, options):
        length = stretch["end"] - stretch["start"]
        if current and total + length > MAX_PIECE_SECONDS * SAMPLING_RATE:
            groups.append(current)
            current, total = [], 0
        current.append(stretch)
        total += length
    if current:
        groups.append(current)
    return [
        (np.concatenate([samples[s["start"]:s["end"]] for s in group]),
         [(float(s["start"]) / SAMPLING_RATE, float(s["end"] - s["start"]) / SAMPLING_RATE) for s in group])
        for group in groups
    ]


class Packer:
    """Stage 2, pieces -> windows: fills windows of at most ``max_seconds`` with pieces in the
    order they come, ``gap_seconds`` of silence between two; ``pack=False`` gives one piece per
    window. Holds at most one open window (30 s of audio), and one more per channel name: the
    pieces of a channel stream (``Piece.channel``) go to windows of that channel alone, so a
    window never mixes channels (their words are never split by time between two speakers).

    >>> packer = Packer()
    >>> windows = [w for piece in pieces for w in packer.add(piece)] + packer.flush()   # doctest: +SKIP
    """

    def __init__(self, pack: bool = True, max_seconds: float = PACK_SECONDS, gap_seconds: float = GAP_SECONDS) -> None:
        self.pack = pack
        self.max_seconds = max_seconds
        self.gap_seconds = gap_seconds
        self._open: list[Piece] = []
        self._seconds = 0.0
        self._channels: dict[str, Packer] | None = {}  # a packer per channel name (None in such a packer)

    def add(self, piece: Piece) -> list[Window]:
        """Take one piece; return the windows it completed (none, one or two)."""
        if piece.channel is not None and self._channels is not None:
            packer = self._channels.get(piece.channel)
            if packer is None:
                packer = self._channels[piece.channel] = Packer(self.pack, self.max_seconds, self.gap_seconds)
                packer._channels = None  # it packs one channel
            return packer.add(piece)
        if piece.seconds == 0:  # no speech (the end mark of a file): rides along, takes no room
            if self._open:
                self._open.append(piece)
                return []
            return [build_window([piece], self.gap_seconds)]
        done = []
        needed = piece.seconds + (self.gap_seconds if self._open else 0.0)
        if self._open and (not self.pack or self._seconds + needed > self.max_seconds):
            done = self.flush()
            needed = piece.seconds
        self._open.append(piece)
        self._seconds += needed
        if not self.pack or self._seconds >= self.max_seconds:
            done += self.flush()
        return done

    def flush(self) -> list[Window]:
        """The open windows, if any (call at the end of the input)."""
        windows = [window for packer in (self._channels or {}).values() for window in packer.flush()]
        if not self._open:
            return windows
        window = build_window(self._open, self.gap_seconds)
        self._open, self._seconds = [], 0.0
        return windows + [window]


class Batcher:
    """Windows -> batches of ``batch_size`` windows, packed and single-piece windows apart (a batch
    holding a packed window decodes with word timestamps; single-piece windows need none). Both
    engines form their batches with it: the local packer thread and the Ray CPU task."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self._forming: dict[bool, list[Window]] = {True: [], False: []}  # by Window.packed

    def add(self, windows: Iterable[Window]) -> list[list[Window]]:
        """Take windows; return the batches they filled (each exactly ``batch_size`` windows)."""
        full = []
        for window in windows:
            forming = self._forming[window.packed]
            forming.append(window)
            if len(forming) >= self.batch_size:
                full.append(forming[:])
                forming.clear()
        return full

    def flush(self) -> list[list[Window]]:
        """The batches still forming, packed first (call at the end of the input)."""
        rest = [batch for batch in self._forming.values() if batch]
        self._forming = {True: [], False: []}
        return rest


def pack_pieces(pieces: Iterable[Piece], pack: bool = True, max_seconds: float = PACK_SECONDS,
                gap_seconds: float = GAP_SECONDS) -> list[Window]:
    """All ``pieces`` packed into windows (see :class:`Packer`)."""
    packer = Packer(pack, max_seconds, gap_seconds)
    windows = [window for piece in pieces for window in packer.add(piece)]
    return windows + packer.flush()


def build_window(pieces: list[Piece], gap_seconds: float = GAP_SECONDS) -> Window:
    """Join ``pieces`` with ``gap_seconds`` of silence between them; the clip map records where each sits."""
    import numpy as np

    gap = np.zeros(int(round(gap_seconds * SAMPLING_RATE)), dtype=np.float32)
    parts, places, at = [], [], 0
    for piece in pieces:
        if at and len(piece.samples):
            parts.append(gap)
            at += len(gap)
        places.append(Place(piece, at / SAMPLING_RATE, (at + len(piece.samples)) / SAMPLING_RATE))
        parts.append(piece.samples)
        at += len(piece.samples)
    samples = np.concatenate(parts).astype(np.float32, copy=False)
    for place in places:  # the window holds the audio now
        place.piece = _without_samples(place.piece)
    return Window(places=places, samples=samples, seconds=at / SAMPLING_RATE)


def _without_samples(piece: Piece) -> Piece:
    import dataclasses

    import numpy as np

    return dataclasses.replace(piece, samples=np.zeros(0, dtype=np.float32))


def add_features(window: Window, feature_extractor: Callable[[np.ndarray], np.ndarray]) -> Window:
    """Stage 3, window -> model input: log-mel features padded to 30 s, as
    ``BatchedInferencePipeline`` computes them (``feature_extractor`` is the model's,
    ``WhisperModel.feature_extractor``); the window's audio is dropped."""
    import numpy as np
    from faster_whisper.audio import pad_or_trim

    if window.samples is None or not len(window.samples):  # nothing to hear: the decoder skips it
        window.samples = None
        return window
    features = feature_extractor(window.samples)[..., :-1]
    window.features = pad_or_trim(features).astype(np.float32, copy=False)
    window.samples = None
    return window
