"""Each faster-whisper name outside its public API that whisperkit uses (all in
``whisperkit/core/whisper_internals.py``), with a test that fails when faster-whisper changes it."""

from __future__ import annotations

import inspect

import numpy as np

from whisperkit.core import chunking, whisper_internals


def test_language_codes_are_whispers():
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    codes = whisper_internals.language_codes()
    assert codes == tuple(_LANGUAGE_CODES) and len(codes) >= 99
    assert {"en", "de", "fr", "ja", "yue"} <= set(codes)


def test_batched_forward_takes_ready_features_and_keeps_a_word_time_state(model):
    from faster_whisper import BatchedInferencePipeline

    parameters = list(inspect.signature(BatchedInferencePipeline.forward).parameters)
    assert parameters == ["self", "features", "tokenizer", "chunks_metadata", "options"]
    pipeline = BatchedInferencePipeline(model.whisper)
    assert pipeline.last_speech_timestamp == 0.0  # the state batched_forward resets for each batch
    assert "self.last_speech_timestamp" in inspect.getsource(BatchedInferencePipeline.forward)


def test_the_batched_pipelines_vad_default_is_the_one_named_here():
    from faster_whisper import BatchedInferencePipeline
    from faster_whisper.vad import VadOptions

    source = inspect.getsource(BatchedInferencePipeline.transcribe)
    assert f"min_silence_duration_ms={whisper_internals.BATCHED_MIN_SILENCE_MS}" in source
    assert "max_speech_duration_s=chunk_length" in source
    assert {"min_silence_duration_ms", "max_speech_duration_s"} <= set(inspect.signature(VadOptions).parameters)


def test_speech_is_merged_into_chunks_as_collect_chunks_merges_it():
    """The same grouping of speech stretches (by their summed length) as faster-whisper's
    ``collect_chunks``: the chunks' lengths and their audio agree."""
    from faster_whisper.vad import collect_chunks

    rng = np.random.default_rng(0)
    audio = rng.standard_normal(16000 * 120).astype(np.float32)
    speech, at = [], 0
    for length in (5, 9, 12, 8, 20, 3, 14, 6):  # seconds of speech, 1 s of silence after each
        speech.append({"start": at * 16000, "end": (at + length) * 16000})
        at += length + 1
    ours = chunking._merge(speech, 30 * 16000)
    audios, metadata = collect_chunks(audio, speech, max_duration=30)
    assert [round(chunk.speech_seconds, 3) for chunk in ours] == [round(m["duration"], 3) for m in metadata]
    joined = chunking.join_chunks(audio, ours)
    assert np.array_equal(joined.samples, np.concatenate(audios))
