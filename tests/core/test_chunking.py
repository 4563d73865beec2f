"""The batched pipeline's chunks, computed by whisperkit, against what faster-whisper really decodes;
and the sequential pipeline given the same chunks."""

from __future__ import annotations

import numpy as np
import pytest

import whisperkit as wk
from whisperkit.core.audio import load_audio
from whisperkit.core.chunking import Chunk, batched_chunks, join_chunks, spans
from whisperkit.core.config import Config, matched_options
from whisperkit.core.transcription import transcribe_config
from whisperkit.errors import ConfigError


@pytest.fixture(scope="module")
def gettysburg_samples(long_sample):
    return load_audio(long_sample).samples


def test_computed_chunks_are_the_ones_the_batched_pipeline_decodes(batched, gettysburg_samples):
    computed = batched_chunks(gettysburg_samples)
    assert len(computed) == batched.chunks == 4  # the sequential pipeline cuts 3 windows here
    np.testing.assert_allclose(spans(computed), batched.chunk_spans, atol=0.02)
    assert all(chunk.speech_seconds <= 30 for chunk in computed)


def test_sequential_on_batched_chunks_decodes_exactly_those_chunks(model, long_sample, batched):
    config = Config(mode="sequential", segmentation="batched", options=matched_options(Config(mode="batched")))
    seq = transcribe_config(long_sample, config, model=model, progress=False)
    assert seq.chunks == batched.chunks
    np.testing.assert_allclose(seq.chunk_spans, batched.chunk_spans, atol=0.02)
    assert len(seq.segments) == 4  # one window per chunk, no timestamps: one segment each
    for got, chunk in zip(seq.segments, batched.chunk_spans):  # times mapped back to the original audio
        assert got.start == pytest.approx(chunk[0], abs=0.02) and got.end == pytest.approx(chunk[1], abs=0.02)
    assert seq.text.startswith("Four score and seven years ago")
    assert "shall not perish from the earth" in seq.text


def test_sequential_takes_clip_timestamps_in_the_batched_form(model, long_sample):
    clips = [{"start": 0.0, "end": 6.9}, {"start": 51.12, "end": 79.45}]
    seq = wk.transcribe(long_sample, model=model, mode="sequential", clip_timestamps=clips,
                        without_timestamps=True, progress=False)
    assert seq.text.startswith("Four score")
    assert "perish from the earth" in seq.text and "civil war" not in seq.text
    assert all(s.start >= 51 for s in seq.segments[1:])


def test_clip_timestamps_are_one_chunk_each_and_long_audio_without_vad_is_an_error(gettysburg_samples):
    chunks = batched_chunks(gettysburg_samples, clip_timestamps=[{"start": 1.0, "end": 2.5}, {"start": 3, "end": 4}])
    assert spans(chunks) == [[1.0, 2.5], [3.0, 4.0]]
    assert len(batched_chunks(gettysburg_samples[: 16000 * 5], vad_filter=False)) == 1
    with pytest.raises(ConfigError, match="clip_timestamps"):
        batched_chunks(gettysburg_samples, vad_filter=False)


def test_joined_times_map_back_to_the_original_audio():
    samples = np.arange(16000 * 10, dtype=np.float32)
    chunks = [Chunk(((16000, 32000), (48000, 64000))), Chunk(((80000, 96000),))]
    joined = join_chunks(samples, chunks)
    assert joined.clip_timestamps == [0.0, 2.0, 2.0, 3.0]
    np.testing.assert_array_equal(joined.samples[16000:16003], samples[48000:48003])
    assert joined.original_seconds(0.5) == 1.5
    assert joined.original_seconds(1.0) == 3.0  # a start at a seam: the later span
    assert joined.original_seconds(1.0, is_end=True) == 2.0  # an end at a seam: the earlier span
    assert joined.original_seconds(2.0) == 5.0 and joined.original_seconds(3.0, is_end=True) == 6.0


def test_unknown_segmentation_is_a_config_error():
    with pytest.raises(ConfigError, match="segmentation"):
        Config(segmentation="windows")
