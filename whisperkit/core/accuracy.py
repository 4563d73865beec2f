"""Word error rate between transcripts, after a documented text normalisation.

Both texts go through Whisper's own English text normaliser (the ``whisper-normalizer``
package, a standalone copy of ``whisper.normalizers.EnglishTextNormalizer``): lower case,
punctuation and filler words removed, spelled-out numbers and British spellings unified.
The word error rate is then computed by ``jiwer``: (substitutions + deletions + insertions)
divided by the number of reference words. A transcript split by channel is scored per channel
against ``X.<channel>.txt`` beside the audio ``X.<ext>`` (:func:`wer_by_channel`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from whisperkit.core.transcription import Transcript


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


def pooled_word_error_rate(pairs: Iterable[tuple[str, str]]) -> float:
    """WER of many ``(reference, hypothesis)`` pairs taken together, as a fraction: every pair's
    errors over every pair's reference words (jiwer over the lists), after the same normalisation.

    Unlike the mean of each pair's :func:`word_error_rate`, a short clip weighs as much as its
    words: one wrong word in a 4-word clip is 0.25 there, and 1 error in the pooled count.
    Pairs whose normalised reference is empty are left out (their words have nothing to count
    against); with none left the result is NaN.

    >>> round(pooled_word_error_rate([("the cat sat", "the cat sat"), ("a dog", "a frog")]), 3)
    0.2
    """
    import jiwer

    kept = [(normalize(reference), normalize(hypothesis)) for reference, hypothesis in pairs]
    kept = [(reference, hypothesis) for reference, hypothesis in kept if reference]
    if not kept:
        return float("nan")
    return float(jiwer.wer([reference for reference, _ in kept], [hypothesis for _, hypothesis in kept]))


MAX_REFERENCE_BYTES = 10 * 2**20  # a reference transcript larger than this is not one


def read_reference(reference: object) -> str:
    """The expected text from ``reference``: a file's text, or the text itself.

    A path object is always a file, of any extension. A string is a file when it names an
    existing one, and is refused when it looks like a file name that does not exist (one word
    with an extension, or a path); any other string is the reference text itself.
    """
    import os
    import re

    from whisperkit.errors import ConfigError

    if isinstance(reference, os.PathLike) or (isinstance(reference, str) and os.path.isfile(reference)):
        return _read_reference_file(os.fspath(reference))
    if not isinstance(reference, str):
        raise ConfigError(f"reference must be text or a path to a text file, got {type(reference).__name__}")
    text = reference.strip()
    extension = os.path.splitext(text)[1]
    if text and len(text.split()) == 1 and (os.sep in text or re.fullmatch(r"\.[A-Za-z0-9]{1,5}", extension)):
        raise ConfigError(f"reference file {reference} does not exist; give an existing text file or the text itself")
    return text


def _read_reference_file(path: str) -> str:
    import os

    from whisperkit.errors import ConfigError

    try:
        if os.path.getsize(path) > MAX_REFERENCE_BYTES:
            raise ConfigError(f"reference {path} is over {MAX_REFERENCE_BYTES // 2**20} MiB: not a transcript")
        with open(path, encoding="utf-8") as handle:
            text = handle.read().strip()
        if "\x00" in text:
            raise UnicodeDecodeError("utf-8", b"", 0, 1, "NUL byte")
        return text
    except UnicodeDecodeError:
        raise ConfigError(f"reference {path} is not UTF-8 text (an audio file?); give the transcript's text file") from None
    except OSError as error:
        raise ConfigError(f"cannot read reference {path}: {error.strerror or error}") from None


def channel_reference_path(audio_path: str | os.PathLike, channel: str) -> str:
    """Where the reference of one channel of ``X.<ext>`` lies: ``X.<channel>.txt`` beside it."""
    return f"{os.path.splitext(os.fspath(audio_path))[0]}.{channel}.txt"


def channel_references(audio_path: str | os.PathLike, channels: Iterable[str]) -> dict[str, str]:
    """The references of a split transcript's ``channels`` found beside ``audio_path``
    (``X.<channel>.txt``, see :func:`channel_reference_path`), by channel; none found: empty."""
    paths = {channel: channel_reference_path(audio_path, channel) for channel in channels}
    return {channel: _read_reference_file(path) for channel, path in paths.items() if os.path.isfile(path)}


def wer_by_channel(transcripts: Mapping[str, Transcript]) -> dict[str, float]:
    """The word error rate of each channel of the split transcripts in ``transcripts`` (audio
    path -> Transcript) against the ``X.<channel>.txt`` beside each file; over several files
    (a corpus run) a channel's texts and references are joined in file order, over the files
    that have its reference. Channels with no reference are left out; no split file: empty.

    >>> wer_by_channel({"call.wav": transcript})   # doctest: +SKIP
    {'left': 0.0, 'right': 0.05}
    """
    references: dict[str, list[str]] = {}
    hypotheses: dict[str, list[str]] = {}
    for path, transcript in transcripts.items():
        for channel, reference in channel_references(path, transcript.channels).items():
            references.setdefault(channel, []).append(reference)
            hypotheses.setdefault(channel, []).append(transcript.channel_text(channel))
    return {channel: word_error_rate(" ".join(references[channel]), " ".join(hypotheses[channel]))
            for channel in references}
