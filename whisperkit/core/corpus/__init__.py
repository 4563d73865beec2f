"""Transcribing a corpus: many files through one streaming pipeline (see ``pipeline``)."""

from whisperkit.core.corpus.transcribe import CorpusResult, transcribe_corpus

__all__ = ["CorpusResult", "transcribe_corpus"]
