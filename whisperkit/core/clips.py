"""Batching across files: many short clips decoded together in batches.

A short file is one chunk, so batching it alone has nothing to batch. :func:`transcribe_clips`
runs the corpus pipeline (:func:`whisperkit.transcribe_corpus`) without packing: each clip is
its own 30 s window, and ``batch_size`` windows from different files are decoded in one model
call, as ``BatchedInferencePipeline.transcribe`` with ``clip_timestamps`` over the
concatenated clips would decode them. ``transcribe_corpus(..., pack=True)`` goes further and
puts several clips in one window.
"""

from __future__ import annotations

import os

from whisperkit.core.corpus.transcribe import CorpusResult, transcribe_corpus
from whisperkit.core.models import Model


def transcribe_clips(
    paths: list[str | os.PathLike],
    model: Model | str | None = None,
    *,
    batch_size: int = 8,
    beam_size: int = 5,
    language: str | None = None,
    progress: bool = True,
) -> CorpusResult:
    """Transcribe files together, ``batch_size`` clips per model call, one clip per window.

    Returns a :class:`~whisperkit.CorpusResult`: ``transcripts`` by path (segment times relative
    to each clip) in the order given, ``failures`` (path -> reason) for files that could not be
    used (missing, damaged, silent), ``audio_seconds``, ``wall_seconds``, ``rtfx``. A file longer
    than 30 s is cut by voice detection, as in :func:`whisperkit.transcribe_corpus`.

    >>> result = transcribe_clips(whisperkit.core.samples.short_clips())    # doctest: +SKIP
    >>> result.transcripts[path].text, round(result.rtfx, 1)           # doctest: +SKIP
    """
    return transcribe_corpus(list(paths), model, batch_size=batch_size, pack=False, beam_size=beam_size,
                             language=language, progress=progress)
