"""Reading audio, and every way an audio file can be wrong."""

from __future__ import annotations

import pytest

import whisperkit as wk


def test_bundled_sample_decodes_to_16k_mono(long_sample):
    audio = wk.load_audio(long_sample)
    assert audio.samples.dtype.name == "float32" and audio.samples.ndim == 1
    assert audio.seconds == pytest.approx(79.45, abs=0.01)
    assert audio.warnings == [] and not audio.is_silent


@pytest.mark.parametrize(
    "name, message",
    [
        ("missing", "no such file"),
        ("directory", "is a directory"),
        ("empty_bytes", r"file is empty \(0 bytes\)"),
        ("text", "not audio or damaged"),
        ("noise", "not audio or damaged"),
    ],
)
def test_bad_files_give_one_line_errors_naming_the_file(bad_audio, name, message):
    with pytest.raises(wk.AudioError, match=message) as caught:
        wk.load_audio(bad_audio[name])
    text = str(caught.value)
    assert bad_audio[name] in text and "\n" not in text


def test_truncated_file_decodes_what_it_can_and_says_so(bad_audio):
    audio = wk.load_audio(bad_audio["truncated"])
    assert 10 < audio.seconds < 40
    assert any("truncated" in warning and "79.5 s" in warning for warning in audio.warnings)


def test_truncated_file_is_still_transcribed(bad_audio, model):
    transcript = wk.transcribe(bad_audio["truncated"], model=model, progress=False)
    assert transcript.text.startswith("Four score and seven years ago")
    assert transcript.warnings


def test_empty_and_silent_audio_decode(quiet_audio):
    assert wk.load_audio(quiet_audio["empty"]).seconds == 0
    silence = wk.load_audio(quiet_audio["silence"])
    assert silence.seconds == pytest.approx(3.0) and silence.is_silent
