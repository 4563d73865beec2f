"""Transcribing a corpus: many files through one streaming pipeline.

``transcribe`` is the driver (one Config in, an engine chosen once, files, resume, outputs, the
result); ``sources``, ``stages``, ``decoding`` and ``outputs`` are the stage functions;
``engines/`` runs them (threads here, or Ray); ``result`` is what a run returns.
"""

from whisperkit.core.corpus.transcribe import CorpusResult, transcribe_corpus

__all__ = ["CorpusResult", "transcribe_corpus"]
