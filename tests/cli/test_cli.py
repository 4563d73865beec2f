"""The whisperkit command end to end, as a user runs it."""

from __future__ import annotations

import json
import os

import pytest

from whisperkit.core.samples import sample_path

try:
    from tests import machine
except ImportError:
    import machine


def test_transcribe_prints_text_to_stdout(cli):
    result = cli("transcribe", sample_path("aesop_02"), "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().lower().rstrip(".") == "slow and steady wins the race"
    assert result.stderr == ""


def test_transcribe_writes_every_format(cli, tmp_path):
    result = cli("transcribe", sample_path("aesop_04"), "--mode", "sequential", "--output-dir", str(tmp_path),
                 "--output-format", "all")
    assert result.returncode == 0, result.stderr
    assert "aesop_04.flac: 4.1 s of audio" in result.stderr and "sequential" in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["aesop_04.json", "aesop_04.srt", "aesop_04.txt", "aesop_04.vtt"]
    data = json.loads((tmp_path / "aesop_04.json").read_text())
    assert "hanging grapes" in data["text"]
    assert data["segments"][0]["start"] >= 0 and data["segments"][0]["text"]
    assert data["language"] == "en" and data["audio_seconds"] == pytest.approx(4.085, abs=0.01)
    assert data["rtfx"] == pytest.approx(data["audio_seconds"] / data["wall_seconds"])
    config = data["config"]
    assert {k: config[k] for k in ("model", "device", "compute_type", "mode", "batch_size", "beam_size",
                                   "num_workers", "cpu_threads")} == {
        "model": "tiny.en", "device": machine.auto_device()[0], "compute_type": machine.auto_compute_type(),
        "mode": "sequential", "batch_size": None,
        "beam_size": 5, "num_workers": 1, "cpu_threads": 0}
    assert (tmp_path / "aesop_04.vtt").read_text().startswith("WEBVTT")
    assert (tmp_path / "aesop_04.srt").read_text().startswith("1\n00:00:00,")


def test_one_bad_file_among_several(cli, tmp_path, bad_audio):
    result = cli("transcribe", sample_path("aesop_02"), bad_audio["missing"], sample_path("aesop_09"),
                 "--output-dir", str(tmp_path), "--quiet")
    assert result.returncode == 2
    assert sorted(os.listdir(tmp_path)) == ["aesop_02.txt", "aesop_09.txt"]
    assert f"whisperkit: error: {bad_audio['missing']}: no such file" in result.stderr
    assert "1 of 3 file(s) failed" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        pytest.param(["--device", "cuda"], "device cuda was asked for", id="cuda-where-it-cannot-run"),
        (["--device-index", "7", "--device", "cuda"], "was asked for"),
        (["--model", "huge-v9"], "unknown model 'huge-v9'"),
        (["--batch-size", "0"], "batch_size must be a whole number from 1 to 256"),
        (["--device", "cpu", "--compute-type", "float16"], "'float16' is not supported on cpu"),
        (["--model", "small"], "not in the local cache"),  # the hub is offline in the CLI tests
    ],
)
def test_bad_settings_exit_2_with_one_line(cli, args, message):
    if args == ["--device", "cuda"] and machine.cuda_usable():
        pytest.skip("CUDA runs here")
    result = cli("transcribe", sample_path("aesop_02"), *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("whisperkit: error: ") and message in lines[0]


@pytest.mark.parametrize("name", ["directory", "text", "noise", "empty_bytes"])
def test_bad_files_exit_2_without_traceback(cli, bad_audio, name):
    result = cli("transcribe", bad_audio[name], "--quiet")
    assert result.returncode == 2
    assert result.stderr.startswith(f"whisperkit: error: {bad_audio[name]}")
    assert "Traceback" not in result.stderr


def test_silence_gives_empty_output_and_exit_0(cli, quiet_audio):
    result = cli("transcribe", quiet_audio["silence"], quiet_audio["empty"], "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


def test_env_describes_the_machine(cli):
    result = cli("env")
    assert result.returncode == 0, result.stderr
    assert "CPU:" in result.stdout
    gpus, reason = machine.nvml_gpus()
    if gpus:
        assert f": {gpus[0]['name']}" in result.stdout and result.stdout.count("\nGPU ") == len(gpus)
    else:
        assert f"GPU: none visible ({reason})" in result.stdout
    assert f"CUDA devices ctranslate2 sees: {machine.cuda_device_count()}" in result.stdout
    device, why = machine.auto_device()
    assert (f"device auto: cpu ({why.removesuffix('; running on the CPU')})" if why else "device auto: cuda") in result.stdout
    data = json.loads(cli("env", "--json").stdout)
    assert len(data["gpus"]) == len(gpus) and data["versions"]["faster-whisper"].startswith("1.2")
    assert (data["cuda_unusable_reason"] is None) == (device == "cuda")


def test_a_name_that_is_not_utf8_reaches_a_strict_standard_output_as_an_escape(monkeypatch):
    import io
    import os
    import sys

    from whisperkit.cli import commands

    written = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(written, encoding="utf-8", errors="strict"))
    commands._write_stdout('{"audio_path": "' + os.fsdecode(b"caf\xe9") + '.flac", "text": "é"}')
    sys.stdout.flush()
    assert written.getvalue() == '{"audio_path": "caf\\udce9.flac", "text": "é"}'.encode()
