"""The corpus pipeline's stages used on their own, as plain functions (as the Ray engine uses them)."""

from __future__ import annotations

import numpy as np
import pytest

import whisperkit as wk
from whisperkit.core.corpus.decoding import PieceText, WindowDecoder, assemble, is_complete, split_window
from whisperkit.core.corpus.sources import check_collisions, find_sources
from whisperkit.core.corpus.stages import (
    GAP_SECONDS,
    PACK_SECONDS,
    Failure,
    Packer,
    Piece,
    Source,
    add_features,
    read_pieces,
)

RATE = 16000


def pack_pieces(pieces, pack: bool = True) -> list:
    """All ``pieces`` through one :class:`Packer`, as an engine feeds it."""
    packer = Packer(pack)
    return [window for piece in pieces for window in packer.add(piece)] + packer.flush()


def piece(source: int, seconds: float, number: int = 0, last: bool = True, start: float = 0.0) -> Piece:
    return Piece(source, number, np.ones(int(seconds * RATE), dtype=np.float32) * 0.1, ((start, seconds),), last=last,
                 audio_seconds=start + seconds)


def test_packing_fills_windows_up_to_28_s_with_gaps_of_silence():
    pieces = [piece(i, 5.0) for i in range(12)]
    windows = pack_pieces(pieces)
    assert [len(w.places) for w in windows] == [5, 5, 2]
    assert all(w.seconds <= PACK_SECONDS for w in windows)
    first = windows[0]
    assert [round(p.start, 3) for p in first.places] == [round(i * (5 + GAP_SECONDS), 3) for i in range(5)]
    gap = first.samples[int(5.0 * RATE):int((5.0 + GAP_SECONDS) * RATE)]
    assert len(gap) and not gap.any()
    assert all(len(place.piece.samples) == 0 for place in first.places)  # the window holds the audio now


def test_without_packing_each_piece_is_its_own_window_and_empty_pieces_ride_along():
    assert [len(w.places) for w in pack_pieces([piece(0, 5.0), piece(1, 5.0)], pack=False)] == [1, 1]
    empty = Piece(2, 1, np.zeros(0, dtype=np.float32), (), last=True, audio_seconds=40.0)
    packer = Packer()
    assert packer.add(piece(0, 5.0)) == [] and packer.add(empty) == []
    (window,) = packer.flush()
    assert window.seconds == 5.0 and window.places[1].start == window.places[1].end == 5.0


def test_words_go_to_the_piece_holding_their_midpoint_and_gap_words_to_the_piece_before():
    window = pack_pieces([piece(0, 4.0), piece(1, 3.0, start=60.0)])[0]  # second piece from 60 s into its file
    words = [
        {"word": " Slow", "start": 0.5, "end": 1.0}, {"word": " race.", "start": 3.8, "end": 4.4},  # midpoint in the gap
        {"word": " A", "start": 4.7, "end": 5.0}, {"word": " crow.", "start": 5.0, "end": 6.0},
    ]
    first, second = split_window(window, [{"text": "", "start": 0.0, "end": 7.6, "words": words}])
    assert [s.text for s in first.segments] == ["Slow race."]
    assert [s.text for s in second.segments] == ["A crow."]
    assert second.segments[0].start == pytest.approx(60.1) and second.segments[0].end == pytest.approx(61.4)


def test_a_skipped_piece_and_the_one_after_it_are_decoded_again_one_piece_each():
    from whisperkit.core.corpus.decoding import _redo, unpack

    window = pack_pieces([piece(0, 4.0), piece(1, 3.0), piece(2, 4.0), piece(3, 4.0)])[0]
    window.features = np.arange(80 * 3000, dtype=np.float32).reshape(80, 3000)
    starts = [place.start for place in window.places]
    said = [" Slow and steady wins the race.", " The", " fox jumped up but missed the grapes.", " A crow was thirsty."]
    words = [{"word": " " + word, "start": start + 0.3 * i, "end": start + 0.3 * i + 0.25}
             for start, text in zip(starts, said) for i, word in enumerate(text.split(" ")[1:])]
    found = split_window(window, [{"text": "", "start": 0.0, "end": 17.0, "words": words}])
    assert [len(text.segments[0].text.split()) for text in found] == [6, 1, 7, 4]
    assert _redo(window, found) == {1, 2}  # one word in 3 s: piece 1 skipped, its words drifted into piece 2
    assert [w.places[0].piece.source for w in unpack(window, pieces=[1, 2])] == [1, 2]

    window = pack_pieces([piece(0, 4.0), piece(1, 3.0)])[0]
    window.features = np.arange(80 * 3000, dtype=np.float32).reshape(80, 3000)
    words = [{"word": " " + w, "start": 0.2 * i, "end": 0.2 * i + 0.2} for i, w in enumerate("The fox jumped up".split())]
    found = split_window(window, [{"text": "", "start": 0.0, "end": 7.6, "words": words}])
    assert _redo(window, found) == {1}  # nothing for the last piece, the 3 s one
    first, second = unpack(window)
    assert first.places[0].piece.source == 0 and second.places[0].end == pytest.approx(3.0)
    assert second.features.shape == (80, 3000)
    assert second.features[0, 0] == window.features[0, 460] and not second.features[:, 300:].any()


def test_a_piece_maps_its_time_back_through_the_stretches_of_speech_it_joins():
    joined = Piece(0, 0, np.zeros(RATE * 5, dtype=np.float32), ((10.0, 2.0), (20.0, 3.0)))
    assert joined.to_file_seconds(1.0) == 11.0 and joined.to_file_seconds(2.5) == 20.5
    assert joined.to_file_seconds(9.0) == 23.0


def test_a_file_is_complete_when_pieces_0_to_last_arrived():
    texts = [PieceText(0, 1, [], last=True, audio_seconds=9.0), PieceText(0, 0, [])]
    assert not is_complete(texts[:1]) and is_complete(texts)
    assert assemble("x.flac", texts, {}).audio_seconds == 9.0


def test_bad_files_become_failures(bad_audio, quiet_audio):
    for path in (bad_audio["missing"], bad_audio["noise"], bad_audio["empty_bytes"], quiet_audio["silence"]):
        (item,) = list(read_pieces(Source(0, path, "x")))
        assert isinstance(item, Failure) and item.reason.startswith(path)


def test_stages_on_their_own_give_the_words_and_blocks_do_not_change_them(model, long_sample, long_reference):
    decoder = WindowDecoder(model)
    texts = {}
    for block_seconds in (60.0, 17.0):  # 17 s blocks: the carried-over chunk crosses four block boundaries
        pieces = [p for p in read_pieces(Source(0, long_sample, "g"), block_seconds) if isinstance(p, Piece)]
        assert all(p.seconds <= 30.0 for p in pieces) and pieces[-1].last
        assert pieces[-1].audio_seconds == pytest.approx(wk.load_audio(long_sample).seconds)
        windows = [add_features(w, decoder.feature_extractor) for w in pack_pieces(pieces)]
        found = [text for start in range(0, len(windows), 8) for text in decoder(windows[start:start + 8])]
        texts[block_seconds] = assemble(long_sample, found, {}).text
    assert wk.word_error_rate(long_reference, texts[60.0]) < 0.15
    assert wk.word_error_rate(texts[60.0], texts[17.0]) < 0.1


def test_sources_from_folders_lists_and_files(tmp_path, clips):
    (tmp_path / "a" / "deep").mkdir(parents=True)
    (tmp_path / "a" / "deep" / "one.flac").write_bytes(b"x")
    (tmp_path / "a" / "two.WAV").write_bytes(b"x")
    (tmp_path / "a" / "notes.txt").write_text("not audio")
    (tmp_path / "a" / ".hidden.wav").write_bytes(b"x")
    listing = tmp_path / "list.txt"
    listing.write_text(f"# a comment\n\n{clips[0]}\na/two.WAV\nmissing.mp3\n")
    found = find_sources([tmp_path / "a", f"@{listing}"])
    assert [s.name for s in found] == ["two", "deep/one", "aesop_01", "missing"]  # a/two.WAV named twice: once
    (tmp_path / "empty").mkdir()
    with pytest.raises(wk.ConfigError, match="no audio"):
        find_sources(tmp_path / "empty")
    with pytest.raises(wk.ConfigError, match="cannot read the list"):
        find_sources(["@" + str(tmp_path / "nope.txt")])
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "two.flac").write_bytes(b"x")
    with pytest.raises(wk.ConfigError, match="would both write two"):
        check_collisions(find_sources([tmp_path / "a" / "two.WAV", tmp_path / "b" / "two.flac"]))


def test_batches_hold_packed_and_single_piece_windows_apart_and_are_never_over_size():
    from whisperkit.core.corpus.stages import Batcher

    packed = pack_pieces([piece(i, 4.0) for i in range(14)])  # up to six 4 s pieces per 28 s window
    assert len(packed) == 3
    single = pack_pieces([piece(10 + i, 4.0) for i in range(3)], pack=False)
    assert all(w.packed for w in packed) and not any(w.packed for w in single)
    batcher = Batcher(2)
    full = batcher.add([single[0], *packed[:1], single[1], single[2]])
    assert [[w.packed for w in batch] for batch in full] == [[False, False]]
    rest = batcher.add(packed[1:]) + batcher.flush()
    assert [[w.packed for w in batch] for batch in rest] == [[True, True], [True], [False]]  # leftovers, packed first
    assert all(len(batch) <= 2 and len({w.packed for w in batch}) == 1 for batch in full + rest)
    assert sum(len(batch) for batch in full + rest) == len(packed) + len(single)
    assert batcher.flush() == []
