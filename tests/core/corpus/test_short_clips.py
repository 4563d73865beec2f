"""Packing very short clips must not make their words worse than transcribing each file alone.

Clips of two words (0.3-3 s) are cut at word times from real human speech (the real-speech
folder, read where it lies; see ``benchmarks/real_speech.py``) into a temporary folder, then
transcribed per file (batched ``transcribe``) and as a packed corpus.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import numpy as np
import pytest

import whisperkit as wk
from whisperkit.core.corpus.decoding import repeats_itself
from whisperkit.core.corpus.stages import MIN_PACKED_SECONDS, Packer, Piece

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from benchmarks.real_speech import absent_message, cut_short_clips, real_speech_folder  # noqa: E402

SOURCES = 4  # real recordings cut into clips (about 40 clips of two words)


def pack_pieces(pieces) -> list:
    """All ``pieces`` through one :class:`Packer`, as an engine feeds it."""
    packer = Packer(True)
    return [window for piece in pieces for window in packer.add(piece)] + packer.flush()


def piece(source: int, seconds: float) -> Piece:
    return Piece(source, 0, np.ones(int(seconds * 16000), dtype=np.float32) * 0.1, ((0.0, seconds),), last=True,
                 audio_seconds=seconds)


def test_a_piece_shorter_than_the_packing_minimum_gets_a_window_of_its_own():
    short, long = MIN_PACKED_SECONDS * 0.5, MIN_PACKED_SECONDS + 1.0
    windows = pack_pieces([piece(0, long), piece(1, short), piece(2, long), piece(3, short), piece(4, long)])
    assert sorted(len(w.places) for w in windows) == [1, 1, 3]
    packed = next(w for w in windows if w.packed)
    assert [p.piece.source for p in packed.places] == [0, 2, 4]
    alone = [w.places[0].piece.source for w in windows if not w.packed]
    assert alone == [1, 3]


def test_a_packed_piece_whose_text_repeats_itself_is_decoded_again():
    assert repeats_itself("the door, the door, the door, the door".split(), 1.0)  # a loop
    assert repeats_itself(("a " * 12).split(), 1.0)  # twelve words in a second
    assert not repeats_itself("stuns.".split(), 1.0)
    assert not repeats_itself("he could wait no longer".split(), 2.0)
    assert not repeats_itself("and here's some more words words".split(), 3.0)  # said twice, as people do


@pytest.fixture(scope="module")
def short_clips(tmp_path_factory):
    folder = real_speech_folder()
    if folder is None:
        pytest.skip(absent_message())
    clips = cut_short_clips(folder, tmp_path_factory.mktemp("short-clips"), sources=SOURCES)
    assert len(clips) > 20 and all(0.3 <= clip.seconds <= 3.0 for clip in clips)
    return clips


def test_packing_real_clips_of_two_words_is_no_worse_than_per_file(model, short_clips):
    references = {clip.path: clip.reference for clip in short_clips}
    per_file = {path: wk.transcribe(path, model=model, mode="batched", batch_size=8, progress=False).text
                for path in references}
    packed = wk.transcribe_corpus(list(references), model, batch_size=8, pack=True, progress=False)
    assert not packed.failures
    wer_per_file = statistics.mean(wk.word_error_rate(references[p], per_file[p]) for p in references)
    wer_packed = statistics.mean(wk.word_error_rate(references[p], packed.transcripts[p].text) for p in references)
    assert wer_packed <= wer_per_file + 0.01, (wer_packed, wer_per_file)
    longest = max(len(packed.transcripts[p].text.split()) for p in references)
    assert longest <= 8, longest  # no clip of two words came out as a long run of repeated words
