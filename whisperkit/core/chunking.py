"""The chunks ``BatchedInferencePipeline`` decodes, and the same chunks for the sequential pipeline.

faster-whisper 1.2.1's two pipelines cut the audio differently, so "sequential against batched"
compares two segmentations as well as batching:

- ``WhisperModel.transcribe`` (sequential), with ``vad_filter=True``, keeps the speech that Silero
  VAD finds with its default ``VadOptions`` (a speech span ends after 2000 ms of silence, 400 ms of
  padding), joins all of it into one array, and decodes that in 30 s windows; each window's start
  follows the last timestamp the model emitted. Without VAD the windows run over the whole file.
- ``BatchedInferencePipeline.transcribe`` (batched), with its default ``vad_filter=True``, runs
  VAD with ``VadOptions(max_speech_duration_s=chunk_length, min_silence_duration_ms=160)`` (a
  ``vad_parameters`` dict is used with ``max_speech_duration_s`` replaced by ``chunk_length``),
  then merges consecutive speech spans into chunks while their summed length stays within
  ``chunk_length`` seconds (default 30, the feature extractor's), silences between spans left out.
  Each chunk is one padded 30 s window. Given ``clip_timestamps`` (``{"start", "end"}`` in
  seconds) it skips VAD and each clip is one chunk; with neither, audio shorter than
  ``chunk_length`` is one chunk and longer audio is an error.

:func:`batched_chunks` computes the batched pipeline's chunks the same way (it calls
faster-whisper's own ``get_speech_timestamps``; the merging follows ``collect_chunks``).
:func:`join_chunks` gives the sequential pipeline the same chunks: the chunks' speech joined in
order, as faster-whisper's sequential VAD joins speech, and each chunk's span in the joined audio
as ``clip_timestamps``, so that without timestamps every chunk is decoded as one window.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from whisperkit.core.audio import SAMPLING_RATE
from whisperkit.core.whisper_internals import BATCHED_MIN_SILENCE_MS
from whisperkit.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    from faster_whisper import WhisperModel
    from faster_whisper.vad import VadOptions

DEFAULT_CHUNK_LENGTH_S = 30  # faster-whisper's FeatureExtractor.chunk_length


@dataclass(frozen=True)
class Chunk:
    """One chunk of the batched pipeline: the stretches of speech it joins, ``(start, end)``
    sample indices at 16 kHz (the corpus pipeline's pieces are such chunks)."""

    stretches: tuple[tuple[int, int], ...]

    @property
    def start(self) -> float:
        """Seconds from the start of the audio to the chunk's first speech."""
        return self.stretches[0][0] / SAMPLING_RATE if self.stretches else 0.0

    @property
    def end(self) -> float:
        """Seconds from the start of the audio to the end of the chunk's last speech."""
        return self.stretches[-1][1] / SAMPLING_RATE if self.stretches else 0.0

    @property
    def speech_seconds(self) -> float:
        """Seconds of audio the chunk holds (its stretches without the silences between them)."""
        return sum(end - start for start, end in self.stretches) / SAMPLING_RATE


def batched_chunks(
    samples: np.ndarray,
    *,
    vad_filter: bool = True,
    vad_parameters: dict | VadOptions | None = None,
    chunk_length: int | None = None,
    clip_timestamps: list[dict] | None = None,
) -> list[Chunk]:
    """The chunks ``BatchedInferencePipeline.transcribe`` would decode for 16 kHz ``samples``.

    The keywords are that ``transcribe``'s, with its defaults. An empty list means no speech
    (the pipeline then yields no segment).

    >>> from whisperkit.core.audio import load_audio                       # doctest: +SKIP
    >>> [round(c.end, 1) for c in batched_chunks(load_audio(wk.sample_path()).samples)]  # doctest: +SKIP
    [7.9, 15.3, 22.9, 29.8]
    """
    chunk_length = chunk_length or DEFAULT_CHUNK_LENGTH_S
    if clip_timestamps:
        return [Chunk(((round(c["start"] * SAMPLING_RATE), round(c["end"] * SAMPLING_RATE)),)) for c in clip_timestamps]
    if vad_filter:
        return _merge(_speech(samples, vad_parameters, chunk_length), chunk_length * SAMPLING_RATE)
    if len(samples) / SAMPLING_RATE < chunk_length:
        return [Chunk(((0, len(samples)),))]
    raise ConfigError(
        f"batched mode without VAD needs clip_timestamps for audio longer than chunk_length "
        f"({len(samples) / SAMPLING_RATE:.1f} s > {chunk_length} s); set vad_filter=True or give clip_timestamps"
    )


def _speech(samples, vad_parameters, chunk_length: int) -> list[dict]:
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    if vad_parameters is None:
        options = VadOptions(max_speech_duration_s=chunk_length, min_silence_duration_ms=BATCHED_MIN_SILENCE_MS)
    elif isinstance(vad_parameters, dict):
        given = {k: v for k, v in vad_parameters.items() if k != "max_speech_duration_s"}
        options = VadOptions(**given, max_speech_duration_s=chunk_length)
    else:
        options = vad_parameters
    return get_speech_timestamps(samples, options)


def _merge(speech: list[dict], max_samples: float) -> list[Chunk]:
    """Consecutive spans into chunks whose summed length stays within ``max_samples``."""
    chunks: list[Chunk] = []
    current: list[tuple[int, int]] = []
    length = 0
    for span in speech:
        size = span["end"] - span["start"]
        if current and length + size > max_samples:
            chunks.append(Chunk(tuple(current)))
            current, length = [], 0
        current.append((span["start"], span["end"]))
        length += size
    if current:
        chunks.append(Chunk(tuple(current)))
    return chunks


@dataclass
class JoinedChunks:
    """The chunks' speech joined into one array, for the sequential pipeline.

    ``clip_timestamps`` are each chunk's start and end in the joined audio, in seconds, in the
    flat form ``WhisperModel.transcribe`` takes (``[start0, end0, start1, end1, ...]``).
    :meth:`original_seconds` maps a time in the joined audio back to the original audio.
    """

    samples: object  # numpy float32 array
    clip_timestamps: list[float]
    chunks: list[Chunk]

    def original_seconds(self, seconds: float, is_end: bool = False) -> float:
        """A time in the joined audio as seconds in the original audio.

        At the seam of two spans a start belongs to the later one, an end to the earlier one.
        """
        offsets, stretches = self._layout()
        sample = seconds * SAMPLING_RATE
        index = bisect.bisect_left(offsets, sample) - 1 if is_end else bisect.bisect_right(offsets, sample) - 1
        index = min(max(index, 0), len(stretches) - 1)
        start, end = stretches[index]
        return (start + min(max(sample - offsets[index], 0), end - start)) / SAMPLING_RATE

    def _layout(self) -> tuple[list[int], list[tuple[int, int]]]:
        stretches = [stretch for chunk in self.chunks for stretch in chunk.stretches]
        offsets, total = [], 0
        for start, end in stretches:
            offsets.append(total)
            total += end - start
        return offsets, stretches


def join_chunks(samples: np.ndarray, chunks: list[Chunk]) -> JoinedChunks:
    """The chunks' speech joined in order, with each chunk's span as ``clip_timestamps``."""
    import numpy as np

    parts, bounds, total = [], [], 0
    for chunk in chunks:
        bounds.append(total / SAMPLING_RATE)
        for start, end in chunk.stretches:
            parts.append(samples[start:end])
            total += end - start
        bounds.append(total / SAMPLING_RATE)
    joined = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, dtype=np.float32)
    return JoinedChunks(samples=joined, clip_timestamps=bounds, chunks=chunks)


def spans(chunks: list[Chunk]) -> list[list[float]]:
    """Each chunk's ``[start, end]`` in seconds of the original audio, rounded to 10 ms."""
    return [[round(chunk.start, 2), round(chunk.end, 2)] for chunk in chunks]


CUTTING_OPTIONS = ("vad_filter", "vad_parameters", "chunk_length", "clip_timestamps")


def transcribe_batched_chunks(whisper: WhisperModel, samples: np.ndarray, options: dict) -> tuple[Iterator, str | None, list[list[float]]]:
    """Sequential ``whisper.transcribe`` of the chunks the batched pipeline would cut, one window each.

    ``options`` are ``transcribe`` keywords; the cutting ones (:data:`CUTTING_OPTIONS`, with the
    batched pipeline's defaults) decide the chunks and are not passed on. Returns the segments
    (a generator, times in the original audio), the language, and the chunks' :func:`spans`.
    """
    options = dict(options)
    cut = {k: options.pop(k) for k in CUTTING_OPTIONS if k in options}
    chunks = batched_chunks(samples, **cut)
    if not chunks:
        return iter(()), options.get("language"), []
    joined = join_chunks(samples, chunks)
    segments, info = whisper.transcribe(joined.samples, vad_filter=False, clip_timestamps=joined.clip_timestamps,
                                        **options)
    return (_restore_times(segment, joined) for segment in segments), info.language, spans(chunks)


def _restore_times(segment, joined: JoinedChunks):
    """A segment of the joined audio with its times (and its words' times) in the original audio."""
    words = segment.words and [
        dataclasses.replace(w, start=joined.original_seconds(w.start), end=joined.original_seconds(w.end, is_end=True))
        for w in segment.words
    ]
    return dataclasses.replace(segment, start=joined.original_seconds(segment.start),
                               end=joined.original_seconds(segment.end, is_end=True), words=words)


def flat_clip_timestamps(clips: object) -> object:
    """``clip_timestamps`` for ``WhisperModel.transcribe``: the batched form (one ``{"start", "end"}``
    dict per clip, seconds) flattened to ``[start0, end0, start1, ...]``; any other form unchanged."""
    if isinstance(clips, list) and clips and all(isinstance(clip, dict) for clip in clips):
        return [t for clip in clips for t in (clip["start"], clip["end"])]
    return clips
