"""Word error rate between transcripts, after a documented text normalisation.

Both texts go through Whisper's own English text normaliser (the ``whisper-normalizer``
package, a standalone copy of ``whisper.normalizers.EnglishTextNormalizer``): lower case,
punctuation and filler words removed, spelled-out numbers and British spellings unified.
The word error rate is then computed by ``jiwer``: (substitutions + deletions + insertions)
divided by the number of reference words.
"""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=1)
def _normalizer():
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalize(text: str) -> str:
    """Whisper's English normalisation of ``text`` (lower case, no punctuation, unified numbers)."""
    return " ".join(_normalizer()(text).split())


def word_error_rate(reference: str, hypothesis: str) -> float:
    """WER of ``hypothesis`` against ``reference`` as a fraction (0.05 is 5 %), after normalisation.

    Two empty texts agree (0.0); an empty reference against words is 1.0 per inserted word
    counted against one, so the result stays finite.

    >>> word_error_rate("Slow and steady wins the race.", "slow and steady wins the race")
    0.0
    """
    import jiwer

    reference_words = normalize(reference)
    hypothesis_words = normalize(hypothesis)
    if not reference_words:
        return 0.0 if not hypothesis_words else float(len(hypothesis_words.split()))
    return float(jiwer.wer(reference_words, hypothesis_words or ""))
