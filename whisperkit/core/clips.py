"""Batching across files: many short clips decoded together in batches.

A short file is one chunk, so batching it alone has nothing to batch. Here the clips are
concatenated and passed to ``BatchedInferencePipeline.transcribe`` with ``clip_timestamps``
(one ``{"start", "end"}`` in seconds per clip); faster-whisper 1.2.1 then skips voice detection
whatever ``vad_filter`` says, and each clip stays its own chunk, so ``batch_size`` clips are
decoded in one model call.
Whisper pads every window to 30 s, so clips must be at most 30 s long.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from whisperkit.checks import check_whole
from whisperkit.core.audio import SAMPLING_RATE, load_audio
from whisperkit.core.config import MAX_BATCH_SIZE, MAX_BEAM_SIZE, check_language
from whisperkit.core.models import Model, check_model_language, load_model
from whisperkit.core.transcription import Segment, Transcript
from whisperkit.errors import WhisperkitError

MAX_CLIP_SECONDS = 30.0


@dataclass
class ClipsResult:
    """One transcript per clip (segment times relative to its own clip), and the shared timing.

    ``wall_seconds`` covers reading every clip and decoding them all; ``failures`` maps a
    path that could not be used to the reason, and those clips have no transcript.
    ``batch_size`` is the size that succeeded; ``batch_retries`` lists each out-of-memory retry
    (the size that failed and the error) and ``retry_seconds`` the time the failed attempts took.
    """

    transcripts: dict[str, Transcript]
    audio_seconds: float
    wall_seconds: float
    batch_size: int
    failures: dict[str, str] = field(default_factory=dict)
    batch_retries: list[dict] = field(default_factory=list)
    retry_seconds: float = 0.0

    @property
    def rtfx(self) -> float:
        """Seconds of audio transcribed per wall-clock second, over all clips."""
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else float("nan")


def transcribe_clips(
    paths: list[str | os.PathLike],
    model: Model | str | None = None,
    *,
    batch_size: int = 8,
    beam_size: int = 5,
    language: str | None = None,
    progress: bool = True,
) -> ClipsResult:
    """Transcribe short files (at most 30 s each) together, ``batch_size`` clips per model call.

    >>> result = transcribe_clips(whisperkit.core.samples.short_clips())    # doctest: +SKIP
    >>> result.transcripts[path].text, round(result.rtfx, 1)           # doctest: +SKIP
    """
    import numpy as np

    check_whole(batch_size, "batch_size", 1, MAX_BATCH_SIZE)
    check_whole(beam_size, "beam_size", 1, MAX_BEAM_SIZE)
    check_language(language)
    model = model if isinstance(model, Model) else load_model(model)
    check_model_language(model, language)
    started = time.perf_counter()
    clips, failures = _read_clips(paths)
    speech = {path: audio for path, audio in clips.items() if not audio.is_silent}
    bounds, offset = {}, 0.0
    for path, audio in speech.items():
        bounds[path] = (offset, offset + audio.seconds)
        offset += audio.seconds
    segments_by_clip: dict[str, list[Segment]] = {path: [] for path in clips}
    language_found = language
    retries: list[dict] = []
    attempts: list[float] = []
    if speech:
        from whisperkit.core.batching import halving_on_out_of_memory

        joined = np.concatenate([audio.samples for audio in speech.values()])

        def attempt(size: int | None) -> tuple[str | None, dict[str, list[Segment]]]:
            nonlocal batch_size
            attempts.append(time.perf_counter())
            batch_size = size or 1
            return _decode(model, joined, bounds, speech, size or 1, beam_size, language, progress)

        language_found, decoded = halving_on_out_of_memory(attempt, batch_size, device=model.device, retries=retries)
        segments_by_clip.update(decoded)
    wall_seconds = time.perf_counter() - started
    config = {**model.describe(), "mode": "batched across clips", "batch_size": batch_size, "beam_size": beam_size}
    transcripts = {
        path: Transcript(
            segments=segments_by_clip[path],
            language=language_found,
            audio_seconds=audio.seconds,
            wall_seconds=wall_seconds,
            config=config,
            audio_path=path,
            warnings=list(audio.warnings),
        )
        for path, audio in clips.items()
    }
    return ClipsResult(
        transcripts=transcripts,
        audio_seconds=sum(audio.seconds for audio in clips.values()),
        wall_seconds=wall_seconds,
        batch_size=batch_size,
        failures=failures,
        batch_retries=retries,
        retry_seconds=attempts[-1] - attempts[0] if attempts else 0.0,
    )


def _decode(model, joined, bounds, speech, batch_size, beam_size, language, progress):
    """One attempt: decode the joined clips; returns (language, segments per clip, relative times)."""
    from faster_whisper import BatchedInferencePipeline
    from tqdm.auto import tqdm

    segments, info = BatchedInferencePipeline(model.whisper).transcribe(
        joined,
        batch_size=batch_size,
        beam_size=beam_size,
        language=language,
        vad_filter=False,  # ignored with clip_timestamps in 1.2.1; says what is meant
        clip_timestamps=[{"start": start, "end": end} for start, end in bounds.values()],
    )
    by_clip: dict[str, list[Segment]] = {path: [] for path in speech}
    done = set()
    with tqdm(total=len(speech), unit="clip", disable=not progress, leave=False) as bar:
        for segment in segments:
            path = _clip_of(segment.start, bounds)
            start = bounds[path][0]
            text = segment.text.strip()
            if text:
                end = min(segment.end - start, speech[path].seconds)
                by_clip[path].append(Segment(max(0.0, min(segment.start - start, end)), end, text))
            if path not in done:
                done.add(path)
                bar.update(1)
    return info.language, by_clip


def _read_clips(paths) -> tuple[dict, dict[str, str]]:
    clips, failures = {}, {}
    for path in map(os.fspath, paths):
        try:
            audio = load_audio(path)
        except WhisperkitError as error:
            failures[path] = str(error)
            continue
        if audio.seconds > MAX_CLIP_SECONDS:
            failures[path] = (
                f"{path}: {audio.seconds:.1f} s is longer than a {MAX_CLIP_SECONDS:.0f} s clip; "
                "transcribe long files one at a time with whisperkit.transcribe"
            )
            continue
        clips[path] = audio
    return clips, failures


def _clip_of(time_s: float, bounds: dict) -> str:
    """The clip whose span holds ``time_s`` (seconds in the joined audio)."""
    for path, (start, end) in bounds.items():
        if start - 1 / SAMPLING_RATE <= time_s < end:
            return path
    return next(reversed(bounds))
