"""The parts of faster-whisper 1.2 that are not its public API, used here and nowhere else.

whisperkit reaches past faster-whisper's documented surface in a few places; each is named
here, once, so that a faster-whisper release that changes one breaks one function, and
``tests/core/test_whisper_internals.py`` says which (each has a test that fails when it changes):

- :func:`language_codes`: ``faster_whisper.tokenizer._LANGUAGE_CODES``, the codes Whisper knows;
- :func:`batched_forward`: ``BatchedInferencePipeline.forward(features, tokenizer,
  chunks_metadata, options)``, the batched decode of ready features (one encoder call and one
  ``generate`` per batch), and its ``last_speech_timestamp`` state, reset for each batch (the
  corpus pipeline's windows come from different files);
- :data:`BATCHED_MIN_SILENCE_MS`: the VAD setting ``BatchedInferencePipeline.transcribe`` uses
  unless told (``VadOptions(min_silence_duration_ms=160, max_speech_duration_s=chunk_length)``),
  read from its source by the test; :mod:`whisperkit.core.chunking` merges speech into chunks as
  its ``collect_chunks`` does, which the test checks too.
"""

from __future__ import annotations

from typing import Any

BATCHED_MIN_SILENCE_MS = 160  # BatchedInferencePipeline.transcribe's VAD default


def language_codes() -> tuple[str, ...]:
    """The language codes Whisper knows (``en``, ``de``, ...), in faster-whisper's order."""
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return tuple(_LANGUAGE_CODES)


def batched_forward(pipeline: Any, features: Any, tokenizer: Any, metadata: list[dict], options: Any) -> list[list[dict]]:
    """``BatchedInferencePipeline.forward`` on stacked ``features`` (batch x n_mels x 3000): each
    window's segments as faster-whisper's dicts. ``metadata`` is one ``{"offset", "duration",
    "segments"}`` per window, ``options`` a ``TranscriptionOptions``."""
    pipeline.last_speech_timestamp = 0.0  # the windows of a batch come from different files
    return pipeline.forward(features, tokenizer, metadata, options)


__all__ = ["BATCHED_MIN_SILENCE_MS", "batched_forward", "language_codes"]
