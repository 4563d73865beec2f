"""WER after Whisper's English normalisation: one pair (``word_error_rate``) and many pooled."""

from __future__ import annotations

import math

import pytest

import whisperkit as wk
from whisperkit.core.accuracy import normalize, pooled_word_error_rate


def test_normalisation_removes_case_punctuation_and_fillers():
    assert normalize("Uh, So this is THE sick corpus.") == "so this is the sick corpus"
    assert wk.word_error_rate("so this is the sick corpus", "Uh, so this is the sick corpus!") == 0.0


def test_one_wrong_word_in_a_short_clip_weighs_its_words_when_pooled():
    pairs = [("it was natural therefore", "it was natural there for"),  # 1 substitution + 1 insertion of 4
             ("the middle ages brought calligraphy to perfection and it was", "the middle ages brought "
              "calligraphy to perfection and it was")]  # 0 of 10
    mean = sum(wk.word_error_rate(r, h) for r, h in pairs) / len(pairs)
    assert mean == pytest.approx(0.25)  # (0.5 + 0) / 2
    assert pooled_word_error_rate(pairs) == pytest.approx(2 / 14)


def test_pooled_equals_one_wer_of_all_the_words_at_once():
    pairs = [("a b c d", "a x c d"), ("e f", "e"), ("g h i", "g h i j")]
    joined = wk.word_error_rate(" ".join(r for r, _ in pairs), " ".join(h for _, h in pairs))
    assert pooled_word_error_rate(pairs) == pytest.approx(joined) == pytest.approx(3 / 9)


def test_pairs_without_reference_words_are_left_out_and_none_left_is_nan():
    assert pooled_word_error_rate([("", "stray words"), ("one two", "one two")]) == 0.0
    assert math.isnan(pooled_word_error_rate([("", "words")]))
    assert math.isnan(pooled_word_error_rate([]))
