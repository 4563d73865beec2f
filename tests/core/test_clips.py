"""Batching across files: the ten bundled clips decoded together (the corpus pipeline, unpacked)."""

from __future__ import annotations

import numpy as np
import pytest

import whisperkit as wk
from whisperkit.core.samples import reference_text


@pytest.fixture(scope="module")
def together(model, clips):
    return wk.transcribe_clips(clips, model=model, batch_size=8, progress=False)


def test_each_clip_gets_its_own_words(together, clips):
    assert list(together.transcripts) == clips
    rates = [wk.word_error_rate(reference_text(path), together.transcripts[path].text) for path in clips]
    assert np.mean(rates) < 0.12, rates
    assert "steady wins the race" in together.transcripts[clips[1]].text.lower()
    assert "hanging grapes" in together.transcripts[clips[3]].text


def test_segment_times_are_relative_to_each_clip(together):
    for transcript in together.transcripts.values():
        assert transcript.segments
        for segment in transcript.segments:
            assert 0.0 <= segment.start <= segment.end <= transcript.audio_seconds


def test_batch_size_does_not_change_the_words(together, model, clips):
    one_at_a_time = wk.transcribe_clips(clips, model=model, batch_size=1, progress=False)
    assert {p: t.text for p, t in one_at_a_time.transcripts.items()} == {p: t.text for p, t in together.transcripts.items()}


def test_timing_covers_all_clips(together, clips):
    assert together.audio_seconds == pytest.approx(sum(wk.load_audio(p).seconds for p in clips))
    assert together.rtfx == pytest.approx(together.audio_seconds / together.wall_seconds)
    assert together.batch_size == 8


def test_bad_files_are_reported_and_the_rest_transcribed(model, clips, bad_audio, long_sample, quiet_audio):
    paths = [clips[1], bad_audio["missing"], long_sample, quiet_audio["silence"]]
    result = wk.transcribe_clips(paths, model=model, progress=False)
    assert set(result.failures) == {bad_audio["missing"], quiet_audio["silence"]}
    assert "no such file" in result.failures[bad_audio["missing"]]
    assert "silent" in result.failures[quiet_audio["silence"]]
    assert "steady wins the race" in result.transcripts[clips[1]].text.lower()
    assert result.transcripts[long_sample].text.lower().startswith("four score")  # cut by voice detection


def test_batch_size_below_one_is_an_error(model, clips):
    with pytest.raises(wk.ConfigError, match="batch_size must be a whole number from 1 to 256"):
        wk.transcribe_clips(clips, model=model, batch_size=0)


def test_allocation_failure_halves_the_clip_batch(together, model, clips, fail_above):
    """cuDNN's wording for a failed allocation, injected where a batch of more than 2 clips
    reaches the encoder (on a CPU, ``EncodeOneByOne`` then encodes them one at a time)."""
    from whisperkit.core.corpus.decoding import EncodeOneByOne

    owner = EncodeOneByOne if model.device == "cpu" else type(model.whisper)  # the encode a batch reaches
    fail_above(owner, "encode", 2, "cuDNN failed with status CUDNN_STATUS_ALLOC_FAILED")
    result = wk.transcribe_clips(clips, model=model, batch_size=8, progress=False)
    assert [retry["batch_size"] for retry in result.batch_retries] == [8, 4]
    assert result.batch_size == 2 and result.retry_seconds > 0
    assert next(iter(result.transcripts.values())).config["batch_size"] == 2
    for path in clips:
        assert result.transcripts[path].text == together.transcripts[path].text
