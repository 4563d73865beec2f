"""Reading audio, and every way an audio file can be wrong."""

from __future__ import annotations

import pytest

import whisperkit as wk

try:
    from tests.audio_files import write_wav
except ImportError:  # run from inside tests/
    from audio_files import write_wav


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


def test_channels_are_kept_beside_the_unchanged_mono_mix(tmp_path):
    import numpy as np

    left = wk.load_audio(wk.sample_path("aesop_02")).samples
    right = np.pad(wk.load_audio(wk.sample_path("aesop_04")).samples, (0, 5000))[: len(left)]
    path = write_wav(tmp_path / "stereo.wav", left, right)
    mixed, kept = wk.load_audio(path), wk.load_audio(path, keep_channels=True)
    assert mixed.channels is None and np.array_equal(mixed.samples, kept.samples)  # the mix as it always was
    assert kept.channels.shape == (2, len(kept.samples))
    assert np.abs(kept.channels - np.stack([left, right])).max() < 1e-4
    from whisperkit.core.audio import count_channels, stream_audio

    assert count_channels(path) == 2 and count_channels(wk.sample_path("aesop_02")) == 1
    for channel in (0, 1):
        streamed = np.concatenate([block.samples for block in stream_audio(path, 1.0, channel=channel)])
        assert np.array_equal(streamed, kept.channels[channel])
    blocks = list(stream_audio(path, 1.0, channel="all"))
    assert all(block.samples.shape[0] == 2 for block in blocks) and blocks[-1].last
    with pytest.raises(wk.AudioError, match="has no channel 2"):
        list(stream_audio(path, 1.0, channel=2))
    assert wk.load_audio(wk.sample_path("aesop_02"), keep_channels=True).channels is None  # mono: no channels


def test_array_channels_are_kept_when_asked():
    import numpy as np

    from whisperkit.core.audio import audio_from_array

    rows = np.stack([np.linspace(-0.5, 0.5, 16000), np.zeros(16000)]).astype(np.float32)
    for given in (rows, rows.T):
        audio = audio_from_array(given, keep_channels=True)
        assert np.array_equal(audio.channels, rows) and np.allclose(audio.samples, rows.mean(axis=0))
    assert audio_from_array(rows).channels is None


def test_a_wav_cut_short_is_decoded_with_a_warning_of_what_its_header_declares(tmp_path, long_sample):
    from whisperkit.core.audio import stream_audio, wav_header_seconds

    speech = wk.load_audio(long_sample).samples[: 16000 * 30]
    whole = tmp_path / "whole.wav"
    write_wav(whole, speech)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(whole.read_bytes()[: 44 + 2 * 16000 * 15])  # a copy stopped halfway
    assert wav_header_seconds(str(cut)) == pytest.approx(30.0)
    assert wk.load_audio(whole).warnings == []
    audio = wk.load_audio(cut)
    assert audio.seconds == pytest.approx(15.0, abs=0.01)
    assert audio.warnings == [f"{cut}: damaged or truncated audio, decoded 15.0 s of the 30.0 s its header "
                              "declares (15.0 s lost)"]
    assert list(stream_audio(cut))[-1].warnings == audio.warnings  # the corpus pipeline says so too


def test_a_wav_written_to_a_pipe_declares_no_length_and_gets_no_warning(tmp_path):
    import numpy as np

    from whisperkit.core.audio import wav_header_seconds

    path = tmp_path / "streamed.wav"
    write_wav(path, np.sin(np.arange(16000) / 5) * 0.3)
    data = bytearray(path.read_bytes())
    data[40:44] = b"\xff\xff\xff\xff"  # the data size a streaming writer leaves open
    path.write_bytes(bytes(data))
    assert wav_header_seconds(str(path)) is None
    assert wk.load_audio(path).warnings == []


def test_an_unreadable_file_says_it_cannot_be_read(tmp_path, long_sample):
    import os
    import shutil
    import subprocess
    import sys
    import tempfile

    folder = tempfile.mkdtemp(prefix="whisperkit-test-")
    try:
        os.chmod(folder, 0o755)
        locked = os.path.join(folder, "locked.flac")
        shutil.copy(long_sample, locked)
        os.chmod(locked, 0o000)
        drop = "os.setgid(65534); os.setuid(65534)\n" if os.geteuid() == 0 else ""
        code = ("import os, sys\nimport whisperkit as wk\nimport whisperkit.core.audio, av\n" + drop +
                "try:\n    wk.load_audio(sys.argv[1])\nexcept wk.AudioError as error:\n    print(error)\n")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}
        done = subprocess.run([sys.executable, "-c", code, locked], capture_output=True, text=True, timeout=60, env=env)
        assert done.stdout.strip() == f"{locked}: cannot read (Permission denied); check its permissions", done.stderr
    finally:
        shutil.rmtree(folder)


def test_two_arrays_in_a_list_are_refused_not_mixed_as_channels(model, clips):
    a, b = (wk.load_audio(clip).samples[:16000 * 2] for clip in clips[:2])
    for given in ([a, b], (a, b), [list(a[:100]), list(b[:100])]):
        with pytest.raises(wk.AudioError, match="arrays, several recordings rather than one; transcribe each") as caught:
            wk.transcribe(given, model=model, progress=False)
        assert "\n" not in str(caught.value)
    assert wk.transcribe(list(a), model=model, progress=False).text  # a plain list of samples is one recording
