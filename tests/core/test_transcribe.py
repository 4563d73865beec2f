"""Transcription of real speech with the real bundled tiny.en, in both modes."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import whisperkit as wk
from whisperkit.core.samples import reference_text

try:
    from tests import machine
except ImportError:
    import machine

# Measured on the bundled samples (flite voices, tiny.en int8, beam 5): the long sample
# scores 7.4 % batched and 7.7 % sequential; the ten clips 5-6 % on average. The bounds
# leave room for other CPUs' rounding, not for a broken pipeline.
LONG_WER_BOUND = 0.12
CLIPS_WER_BOUND = 0.12


@pytest.mark.parametrize("mode", ["batched", "sequential"])
def test_long_sample_words_match_reference(mode, batched, sequential, long_reference):
    transcript = batched if mode == "batched" else sequential
    assert transcript.text.startswith("Four score and seven years ago")
    assert "shall not perish from the earth" in transcript.text
    assert wk.word_error_rate(long_reference, transcript.text) < LONG_WER_BOUND


@pytest.mark.parametrize("mode", ["batched", "sequential"])
def test_short_clips_words_match_references(mode, model, clips):
    rates = []
    for clip in clips:
        transcript = wk.transcribe(clip, model=model, mode=mode, progress=False)
        rates.append(wk.word_error_rate(reference_text(clip), transcript.text))
    assert len(rates) == 10
    assert np.mean(rates) < CLIPS_WER_BOUND, rates


def test_batched_and_sequential_agree(batched, sequential):
    assert wk.word_error_rate(sequential.text, batched.text) < 0.08


@pytest.mark.parametrize("mode", ["batched", "sequential"])
def test_segments_in_order_and_inside_audio(mode, batched, sequential):
    transcript = batched if mode == "batched" else sequential
    assert transcript.audio_seconds == pytest.approx(79.45, abs=0.01)
    assert len(transcript.segments) >= 3
    previous_start = -1.0
    for segment in transcript.segments:
        assert 0.0 <= segment.start <= segment.end <= transcript.audio_seconds
        assert segment.start >= previous_start
        assert segment.text == segment.text.strip() and segment.text
        previous_start = segment.start
    assert transcript.segments[-1].end > 0.8 * transcript.audio_seconds


def test_timings_add_up(batched):
    assert batched.language == "en"
    assert batched.wall_seconds > 0
    assert batched.prepare_seconds + batched.decode_seconds == pytest.approx(batched.wall_seconds, rel=1e-6)
    assert batched.rtfx == pytest.approx(batched.audio_seconds / batched.wall_seconds)


def test_config_records_what_was_used(batched, sequential):
    assert batched.config["mode"] == "batched" and batched.config["batch_size"] == 8
    assert sequential.config["mode"] == "sequential" and sequential.config["batch_size"] is None
    device, reason = machine.auto_device()
    for key, value in {"model": "tiny.en", "device": device, "compute_type": machine.auto_compute_type(), "beam_size": 5,
                       "num_workers": 1, "cpu_threads": 0, "device_index": 0, "device_reason": reason}.items():
        assert batched.config[key] == value


def test_srt_is_well_formed(batched):
    blocks = batched.to_srt().strip().split("\n\n")
    assert len(blocks) == len(batched.segments)
    for number, (block, segment) in enumerate(zip(blocks, batched.segments), start=1):
        index, times, text = block.split("\n")
        assert index == str(number)
        match = re.fullmatch(r"(\d\d):(\d\d):(\d\d),(\d\d\d) --> (\d\d):(\d\d):(\d\d),(\d\d\d)", times)
        assert match
        h, m, s, ms = map(int, match.groups()[:4])
        assert h * 3600 + m * 60 + s + ms / 1000 == pytest.approx(segment.start, abs=0.001)
        assert text == segment.text


def test_vtt_is_well_formed(sequential):
    text = sequential.to_vtt()
    assert text.startswith("WEBVTT\n\n")
    cues = text[len("WEBVTT\n\n"):].strip().split("\n\n")
    assert len(cues) == len(sequential.segments)
    for cue in cues:
        times, _ = cue.split("\n", 1)
        assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d\d\d --> \d\d:\d\d:\d\d\.\d\d\d", times)


def test_json_holds_text_segments_and_config(batched):
    data = json.loads(batched.to_json())
    assert data["text"] == batched.text
    assert data["segments"][0] == {"start": batched.segments[0].start, "end": batched.segments[0].end,
                                   "text": batched.segments[0].text}
    assert data["rtfx"] == pytest.approx(batched.rtfx)
    assert data["config"]["batch_size"] == 8


def test_array_input_gives_same_words(model, long_sample, sequential):
    samples = wk.load_audio(long_sample).samples
    transcript = wk.transcribe(samples, model=model, mode="sequential", progress=False)
    assert transcript.text == sequential.text
    assert transcript.audio_path is None


def test_user_loaded_whisper_model_is_accepted(model, clips):
    transcript = wk.transcribe(clips[1], model=model.whisper, mode="sequential", progress=False)
    assert "steady wins the race" in transcript.text.lower()
    assert transcript.config["device"] == machine.auto_device()[0]


@pytest.mark.parametrize("mode", ["batched", "sequential"])
def test_silence_and_empty_audio_give_empty_transcript(mode, model, quiet_audio):
    for path in quiet_audio.values():
        transcript = wk.transcribe(path, model=model, mode=mode, progress=False)
        assert transcript.segments == [] and transcript.text == ""


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_batch_size_below_one_or_not_whole_is_an_error(bad, model, clips):
    with pytest.raises(wk.ConfigError, match="batch_size must be a whole number from 1 to 256"):
        wk.transcribe(clips[0], model=model, batch_size=bad)


def test_unknown_mode_is_an_error(model, clips):
    with pytest.raises(wk.ConfigError, match="unknown mode 'fast'.*batched, sequential"):
        wk.transcribe(clips[0], model=model, mode="fast")


def fail_encoding_above_two(model, monkeypatch, message: str) -> list[int]:
    """Make the encoder raise ``RuntimeError(message)`` for batches above 2 chunks; returns the
    batch sizes it is called with."""
    real_encode = model.whisper.encode
    sizes: list[int] = []

    def encode(features):
        sizes.append(len(features))
        if len(features) > 2:
            raise RuntimeError(message)
        return real_encode(features)

    monkeypatch.setattr(model.whisper, "encode", encode)
    return sizes


def test_out_of_memory_halves_the_batch_and_goes_on(model, long_sample, monkeypatch, batched):
    """Inject CTranslate2's out-of-memory error at the encoder call for batches above 2 chunks."""
    batch_sizes_seen = fail_encoding_above_two(model, monkeypatch, "CUDA failed with error out of memory")
    transcript = wk.transcribe(long_sample, model=model, mode="batched", batch_size=8, progress=False)
    assert [retry["batch_size"] for retry in transcript.batch_retries] == [8, 4]
    assert "out of memory" in transcript.batch_retries[0]["error"]
    assert transcript.config["batch_size"] == 2
    assert max(batch_sizes_seen[-2:]) <= 2
    assert transcript.text == batched.text


def test_cublas_allocation_failure_halves_the_batch_to_two(model, long_sample, monkeypatch, batched):
    """cuBLAS's wording for a failed allocation, injected at the encoder call above 2 chunks."""
    sizes = fail_encoding_above_two(model, monkeypatch, "cuBLAS failed with status CUBLAS_STATUS_ALLOC_FAILED")
    transcript = wk.transcribe(long_sample, model=model, mode="batched", batch_size=8, progress=False, monitor=True)
    assert transcript.batch_retries == [
        {"batch_size": 8, "error": "cuBLAS failed with status CUBLAS_STATUS_ALLOC_FAILED"},
        {"batch_size": 4, "error": "cuBLAS failed with status CUBLAS_STATUS_ALLOC_FAILED"}]
    assert transcript.config["batch_size"] == 2 and max(sizes[2:]) <= 2
    assert transcript.text == batched.text
    assert list(transcript.marks["label"]).count("retry") == 2
    # the phase times are the successful attempt's; the failed ones are retry time
    assert transcript.retry_seconds > 0
    assert transcript.prepare_seconds + transcript.decode_seconds + transcript.retry_seconds == pytest.approx(
        transcript.wall_seconds, rel=1e-6)
    assert transcript.to_dict()["retry_seconds"] == transcript.retry_seconds


def test_other_cuda_errors_are_one_line_device_errors(model, clips, monkeypatch):
    def encode(features):
        raise RuntimeError("CUDA failed with error an illegal memory access was encountered\n  at ...")

    monkeypatch.setattr(model.whisper, "encode", encode)
    for mode in ("batched", "sequential"):
        with pytest.raises(wk.DeviceError, match=r"failed while transcribing \(CUDA failed with error an illegal memory access was encountered\); check the GPU") as caught:
            wk.transcribe(clips[0], model=model, mode=mode, progress=False)
        assert "\n" not in str(caught.value)


def test_out_of_memory_at_batch_size_one_is_a_device_error(model, clips, monkeypatch):
    def encode(features):
        raise RuntimeError("CUDA failed with error out of memory")

    monkeypatch.setattr(model.whisper, "encode", encode)
    with pytest.raises(wk.OutOfMemoryError, match="even at batch size 1"):
        wk.transcribe(clips[0], model=model, mode="batched", batch_size=2, progress=False)


def test_progress_bar_counts_audio_seconds(model, clips, capsys):
    wk.transcribe(clips[0], model=model, progress=True)
    shown = capsys.readouterr().err
    assert "aesop_01.flac" in shown and "/4.3" in shown and "s/s" in shown
    wk.transcribe(clips[0], model=model, progress=False)
    assert capsys.readouterr().err == ""


def test_monitored_transcription_has_a_timeline_with_phases(long_sample):
    transcript = wk.transcribe(long_sample, mode="batched", monitor=True, monitor_interval=0.1, progress=False)
    marks = transcript.marks
    assert list(marks["label"]) == ["load", "prepare", "decode"]
    assert list(marks["time_s"]) == sorted(marks["time_s"])
    # the decode mark comes when the pipeline has done VAD and features, before decoding ends
    assert marks["time_s"].iloc[2] - marks["time_s"].iloc[1] == pytest.approx(transcript.prepare_seconds, abs=0.05)
    timeline = transcript.timeline
    assert timeline["time_s"].iloc[-1] >= marks["time_s"].iloc[-1] + 0.9 * transcript.decode_seconds
    assert len(timeline) >= 10 * transcript.wall_seconds * 0.7  # 10 Hz, less a skipped slot a second
    decoding = timeline[timeline["time_s"] > marks["time_s"].iloc[2]]
    assert decoding["process_cpu_percent"].mean() > 20  # the model keeps this process busy
