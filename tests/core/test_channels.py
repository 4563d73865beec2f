"""Per-channel transcription: two speakers on two channels come out apart, named by channel.

Stereo files are made at test time from two bundled clips (one per channel), and the real
two-speaker recording faster-whisper tests with (``stereo_diarization.wav``) is read where it
lies, beside the repository (``../shared/data/real-speech``, or ``$WHISPERKIT_REAL_SPEECH``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import whisperkit as wk
from whisperkit.core.accuracy import word_error_rate
from whisperkit.core.channels import channel_names, choose_for
from whisperkit.core.samples import reference_text

try:
    from tests.audio_files import write_wav
    from tests.conftest import run_cli
except ImportError:  # run from inside tests/
    from audio_files import write_wav
    from conftest import run_cli

LEFT_CLIP, RIGHT_CLIP = "aesop_02", "aesop_05"  # "Slow and steady wins the race." / "A lion was awakened ..."
REAL_SPEECH = Path(os.environ.get("WHISPERKIT_REAL_SPEECH")
                   or Path(__file__).resolve().parents[3] / "shared" / "data" / "real-speech")
DIARIZATION = REAL_SPEECH / "stereo" / "stereo_diarization.wav"
MAX_CHANNEL_WER = 0.15


def clip(name: str) -> np.ndarray:
    return wk.load_audio(wk.sample_path(name)).samples


@pytest.fixture(scope="session")
def two_speakers(tmp_path_factory) -> str:
    """A stereo WAV: one bundled clip on the left, another on the right, their references beside it."""
    folder = tmp_path_factory.mktemp("two_speakers")
    path = write_wav(folder / "call.wav", clip(LEFT_CLIP), clip(RIGHT_CLIP))
    for channel, name in (("left", LEFT_CLIP), ("right", RIGHT_CLIP)):
        (folder / f"call.{channel}.txt").write_text(reference_text(wk.sample_path(name)), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def same_speech(tmp_path_factory) -> str:
    """A stereo WAV with the same clip on both channels (a stereo file made from mono)."""
    samples = clip("aesop_03")
    return write_wav(tmp_path_factory.mktemp("same_speech") / "mono_as_stereo.wav", samples, samples)


def references(names=(LEFT_CLIP, RIGHT_CLIP)) -> dict[str, str]:
    return dict(zip(("left", "right"), (reference_text(wk.sample_path(name)) for name in names)))


def assert_each_channel_heard(transcript, expected: dict[str, str]) -> None:
    assert transcript.channels == list(expected)
    for channel, text in expected.items():
        assert word_error_rate(text, transcript.channel_text(channel)) <= MAX_CHANNEL_WER, (channel, transcript.segments)
    assert [s.start for s in transcript.segments] == sorted(s.start for s in transcript.segments)


# -- choosing: names, checks and auto's test --------------------------------------------------------

def test_names_default_to_left_right_and_ch_numbers_and_are_checked():
    assert channel_names(2) == ["left", "right"]
    assert channel_names(4) == ["ch0", "ch1", "ch2", "ch3"]
    assert channel_names(2, ("agent", "caller")) == ["agent", "caller"]
    with pytest.raises(wk.AudioError, match="has 3 channel.*2 channel name"):
        channel_names(3, ("a", "b"), "x.wav")
    with pytest.raises(wk.ConfigError, match="unknown channels 'stereo'; expected one of: mix, split, auto"):
        wk.Config(channels="stereo")
    for bad in (("a", "a"), ("<v>", "b"), "ab", ()):
        with pytest.raises(wk.ConfigError, match="channel"):
            wk.Config(channels="split", channel_names=bad)
    assert wk.Config.from_dict(wk.Config(channel_names=("a", "b")).to_dict()).channel_names == ("a", "b")


def test_auto_splits_two_speakers_and_mixes_the_same_signal():
    left, right = clip(LEFT_CLIP), clip(RIGHT_CLIP)
    length = max(len(left), len(right))
    left, right = np.pad(left, (0, length - len(left))), np.pad(right, (0, length - len(right)))
    two = choose_for("auto", np.stack([left, right]))
    assert two.split and two.names == ("left", "right") and "different signals" in two.note
    for same in (np.stack([left, left]), np.stack([left, 0.3 * left]),  # another gain: still one signal
                 np.stack([left, 0.7 * np.roll(left, 40)])):  # a second microphone 2.5 ms further away
        choice = choose_for("auto", same)
        assert not choice.split and "nearly the same signal" in choice.note
    one_silent = choose_for("auto", np.stack([left, np.zeros_like(left)]))
    assert not one_silent.split and "only left carries sound" in one_silent.note
    assert not choose_for("mix", np.stack([left, right])).split


# -- sequential and batched -------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["sequential", "batched"])
def test_split_gives_each_channel_its_words_and_names_the_speaker(model, two_speakers, mode):
    transcript = wk.transcribe(two_speakers, model=model, mode=mode, channels="split", progress=False)
    assert_each_channel_heard(transcript, references())
    assert "left: slow and steady wins the race" in transcript.to_txt().lower()
    assert "<v left>slow and steady wins the race" in transcript.to_vtt().lower()
    assert "\nright: " in transcript.to_srt() and "lion was awakened" in transcript.to_srt()
    segments = json.loads(transcript.to_json())["segments"]
    assert {segment["channel"] for segment in segments} == {"left", "right"}
    assert wk.Transcript.from_dict(transcript.to_dict()).segments == transcript.segments


def test_auto_splits_two_speakers_and_says_why(model, two_speakers):
    transcript = wk.transcribe(two_speakers, model=model, progress=False)  # channels="auto" is the default
    assert_each_channel_heard(transcript, references())
    assert any("split into left, right (channels=auto)" in w for w in transcript.warnings), transcript.warnings


def test_auto_does_not_split_the_same_speech_on_both_channels(model, same_speech):
    auto = wk.transcribe(same_speech, model=model, progress=False)
    mixed = wk.transcribe(same_speech, model=model, channels="mix", progress=False)
    assert auto.channels == [] and all(s.channel is None for s in auto.segments)
    assert auto.segments == mixed.segments and "thirst" in auto.text
    assert any("mixed to mono (channels=auto): nearly the same signal" in w for w in auto.warnings)
    assert mixed.warnings == []


def test_mix_is_the_mono_downmix_as_before(model, two_speakers):
    mixed = wk.transcribe(two_speakers, model=model, channels="mix", progress=False)
    downmix = wk.transcribe(wk.load_audio(two_speakers).samples, model=model, progress=False)
    assert mixed.segments == downmix.segments and mixed.channels == [] and mixed.warnings == []


def test_mono_files_are_transcribed_as_before_and_split_says_it_was_mono(model):
    path = wk.sample_path(LEFT_CLIP)
    mixed = wk.transcribe(path, model=model, channels="mix", progress=False)
    auto = wk.transcribe(path, model=model, progress=False)
    split = wk.transcribe(path, model=model, channels="split", progress=False)
    assert mixed.segments == auto.segments == split.segments and auto.warnings == []
    data = json.loads(mixed.to_json())
    assert "channels" not in data and all(set(segment) == {"start", "end", "text"} for segment in data["segments"])
    assert split.warnings == [f"{path}: mono (1 channel), nothing to split; transcribed as it is"]


def test_user_names_the_channels(model, two_speakers):
    transcript = wk.transcribe(two_speakers, model=model, channels="split", channel_names=["Ann", "Bob"],
                               progress=False)
    assert transcript.channels == ["Ann", "Bob"] and "<v Bob>" in transcript.to_vtt()
    assert "lion was awakened" in transcript.channel_text("Bob")


def test_more_than_eight_channels_are_refused_as_before(model, tmp_path):
    speech = clip(LEFT_CLIP)
    path = write_wav(tmp_path / "nine.wav", *[speech * (0.5 + index / 20) for index in range(9)])
    with pytest.raises(wk.AudioError, match="has 9 channels; whisperkit splits at most 8") as caught:
        wk.transcribe(path, model=model, channels="split", progress=False)
    assert "\n" not in str(caught.value)
    corpus = wk.transcribe_corpus([path], model, channels="split", progress=False)
    assert "has 9 channels; whisperkit splits at most 8" in corpus.failures[path]
    with pytest.raises(wk.AudioError, match=r"shape \(9, 39040\) is not 16 kHz audio"):
        wk.transcribe(np.stack([speech] * 9)[:, :39040], model=model, channels="split", progress=False)


# -- corpus mode --------------------------------------------------------------------------------------

@pytest.mark.parametrize("pack", [True, False])
def test_corpus_mode_splits_channels_into_streams_of_their_own(model, two_speakers, tmp_path, pack):
    mono = wk.sample_path("aesop_04")
    result = wk.transcribe_corpus([two_speakers, mono], model, channels="split", pack=pack, output_dir=tmp_path,
                                  output_format="all", progress=False)
    assert not result.failures
    assert_each_channel_heard(result.transcripts[two_speakers], references())
    assert result.transcripts[mono].channels == [] and "grapes" in result.transcripts[mono].text
    assert "<v right>" in (tmp_path / "call.vtt").read_text() and "lion was awakened" in (tmp_path / "call.vtt").read_text()
    assert "left: slow and steady wins the race" in (tmp_path / "call.txt").read_text().lower()
    assert json.loads((tmp_path / "manifest.json").read_text())["config"]["channels"] == "split"


def test_packing_never_mixes_channels_in_a_window():
    from whisperkit.core.corpus.stages import Packer, Piece

    def piece(number, channel):
        return Piece(0, number, np.full(16000 * 3, 0.1, dtype=np.float32), ((3.0 * number, 3.0),), channel=channel)

    pieces = [piece(0, "left"), piece(1, "right"), piece(2, "left"), piece(3, None), piece(4, "right"), piece(5, None)]
    packer = Packer()
    windows = [window for p in pieces for window in packer.add(p)] + packer.flush()
    assert sorted(len(w.places) for w in windows) == [2, 2, 2]
    for window in windows:
        assert len({place.piece.channel for place in window.places}) == 1


# -- the real two-speaker recording, in all three modes -------------------------------------------

needs_real_speech = pytest.mark.skipif(not DIARIZATION.is_file(), reason=f"no {DIARIZATION} (shared data absent)")


@needs_real_speech
@pytest.mark.parametrize("mode", ["sequential", "batched", "corpus"])
def test_real_two_speaker_recording_per_channel_wer(mode):
    run = wk.run(str(DIARIZATION), wk.Config(mode=mode, channels="split"), progress=False)
    assert set(run.wer_by_channel) == {"left", "right"}
    assert all(wer <= MAX_CHANNEL_WER for wer in run.wer_by_channel.values()), run.wer_by_channel
    transcript = run.corpus.transcripts[str(DIARIZATION)] if mode == "corpus" else run.transcript
    vtt, srt = transcript.to_vtt(), transcript.to_srt()
    assert "<v left>He began a confused complaint" in vtt and "<v right>The horizon seems" in vtt
    cues = [block.splitlines()[2] for block in srt.strip().split("\n\n")]
    assert cues and all(cue.startswith(("left: ", "right: ")) for cue in cues)


@needs_real_speech
def test_auto_splits_the_real_recording_and_the_report_shows_each_channel(tmp_path):
    from whisperkit.views.report import report_html
    from whisperkit.views.tables import channel_wer_rows

    run = wk.run(str(DIARIZATION), wk.Config(mode="batched"), progress=False)
    assert run.transcript.channels == ["left", "right"]
    rows = channel_wer_rows([run])
    assert [row[0] for row in rows] == ["left", "right"] and all(float(row[1]) <= MAX_CHANNEL_WER for row in rows)
    wk.save(run, tmp_path / "run")
    loaded = wk.load_run(tmp_path / "run")
    assert loaded.wer_by_channel == run.wer_by_channel
    html = report_html(loaded)
    assert "the word error rate of each channel against its reference" in html
    assert "<tr><th>left</th><td>" in html and "left: He began a confused complaint" in html


# -- the command line ---------------------------------------------------------------------------------

def test_cli_splits_names_the_speakers_and_refuses_bad_names(two_speakers):
    done = run_cli("transcribe", two_speakers, "--channels", "split", "--channel-names", "agent,caller",
                   "--output-format", "vtt", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "<v agent>slow and steady" in done.stdout.lower() and "<v caller>" in done.stdout
    bad = run_cli("transcribe", two_speakers, "--channels", "split", "--channel-names", "a<b,c")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("whisperkit: error: channel name 'a<b'")


@needs_real_speech
def test_cli_compare_prints_each_channels_wer(tmp_path):
    done = run_cli("compare", str(DIARIZATION), "--channels", "split", "--output-dir", str(tmp_path / "cmp"),
                   "--quiet")
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("WER of channel")]
    assert [line.split()[3] for line in lines] == ["left", "right"], done.stdout
    assert "channel by channel" in (tmp_path / "cmp" / "report.html").read_text()


def test_app_has_a_channels_control():
    from whisperkit.views.app.controls import Controls

    controls = Controls()
    assert controls.config().channels == "auto"
    controls.channels.value = "split"
    assert controls.config().channels == "split" and set(controls.channels.options) == {"auto", "mix", "split"}
