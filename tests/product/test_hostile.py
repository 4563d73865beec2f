"""Hostile but realistic input, by class: each gives one clear line (or a correct result), never a
crash, a hang, a traceback, runaway memory, silent garbage or a lost or overwritten result.

The command line runs as a user runs it (``python -m whisperkit`` in a subprocess, with PYTHONPATH
at this checkout, under an address-space limit and a timeout); the Python API runs in process.
Damaged audio is made on the spot from the bundled samples.
"""

from __future__ import annotations

import io
import os
import resource
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import whisperkit as wk
from whisperkit.core.samples import sample_path

try:
    from tests.expect import one_error_line
except ImportError:
    from expect import one_error_line


ROOT = Path(__file__).resolve().parents[2]
CLIP = "aesop_02"  # "Slow and steady wins the race."
WORDS = "slow and steady wins the race"
MEMORY_LIMIT = 3 * 2**30  # bytes of address space for a command that must stop before any real work


def environment() -> dict[str, str]:
    """This environment with this checkout first on PYTHONPATH (anything already there is kept)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1"}


def whisperkit(*args: str, cwd=None, stdin=None, stdout=subprocess.PIPE, memory_limit: int | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m whisperkit ARGS`` with PYTHONPATH at this checkout."""
    env = environment()

    def limits():
        if memory_limit:
            resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))

    return subprocess.run([sys.executable, "-m", "whisperkit", *args], cwd=cwd, env=env, stdin=stdin,
                          stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=timeout, preexec_fn=limits)


@pytest.fixture(scope="module")
def model():
    """The bundled tiny.en on the CPU (these cases are about input, not placement)."""
    return wk.load_model(device="cpu")


@pytest.fixture(scope="module")
def clip() -> str:
    return sample_path(CLIP)


@pytest.fixture(scope="module")
def samples(clip):
    return wk.load_audio(clip).samples


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """A 12 s mp3 with 3 kB of its middle overwritten, and a FLAC cut inside its first frame."""
    import av

    folder = tmp_path_factory.mktemp("damaged")
    speech = wk.load_audio(sample_path("gettysburg")).samples[: 16000 * 12]
    mp3 = folder / "speech.mp3"
    try:
        with av.open(str(mp3), "w", format="mp3") as container:
            stream = container.add_stream("libmp3lame", rate=16000)
            stream.layout = "mono"
            pcm = (speech * 32767).astype(np.int16)
            for start in range(0, len(pcm), 1152):
                frame = av.AudioFrame.from_ndarray(pcm[None, start:start + 1152], format="s16", layout="mono")
                frame.rate = 16000
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
    except (av.error.FFmpegError, ValueError) as error:  # no mp3 encoder in this PyAV build
        pytest.skip(f"cannot make an mp3 here: {error}")
    data = bytearray(mp3.read_bytes())
    middle = len(data) // 4
    data[middle:middle + 3000] = np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    corrupt = folder / "corrupt.mp3"
    corrupt.write_bytes(bytes(data))
    header_only = folder / "header_only.flac"
    header_only.write_bytes(Path(sample_path("gettysburg")).read_bytes()[:300])
    return {"mp3": str(mp3), "corrupt": str(corrupt), "header_only": str(header_only)}


# -- class 1: settings without an upper bound ----------------------------------------------------

@pytest.mark.parametrize("args, words", [
    (["--cpu-threads", "100000"], ["cpu_threads", "from 0 to"]),
    (["--beam-size", "100000"], ["beam_size", "from 1 to 16"]),
    (["--batch-size", "100000"], ["batch_size", "from 1 to 256"]),
    (["--num-workers", "100000"], ["num_workers", "from 1 to 64"]),
    (["--language", "xx"], ["unknown language 'xx'", "en, es"]),
])
def test_out_of_range_settings_stop_at_once_with_one_line(clip, args, words):
    result = whisperkit("transcribe", clip, "--device", "cpu", *args, memory_limit=MEMORY_LIMIT, timeout=60)
    assert result.returncode == 2
    one_error_line(result, *words)


def test_monitor_interval_has_a_minimum():
    result = whisperkit("monitor", "--interval", "1e-6", "--", sys.executable, "-c", "pass", timeout=30)
    assert result.returncode == 2 and "at least 0.01 seconds" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("settings, words", [
    (dict(beam_size=10**5), "beam_size must be a whole number from 1 to 16"),
    (dict(cpu_threads=10**5), "cpu_threads must be a whole number from 0 to"),
    (dict(num_workers=10**4), "num_workers must be a whole number from 1 to 64"),
    (dict(batch_size=2.5), "batch_size must be a whole number from 1 to 256"),
    (dict(temperature="hot"), "temperature must be a number at least 0 and at most 2, got 'hot'"),
    (dict(temperature=[0.0, float("nan")]), "temperature must be a number"),
    (dict(best_of=0), "best_of must be a whole number from 1 to 16"),
    (dict(patience=-1), "patience must be a number above 0"),
    (dict(vad_filter="yes"), "vad_filter must be True or False"),
    (dict(initial_prompt=b"x"), "initial_prompt must be a string"),
    (dict(vad_filtr=True), "unknown option 'vad_filtr'.*did you mean vad_filter"),
    (dict(language="xx"), "unknown language 'xx'"),
    (dict(language="de"), "English-only: language must be en"),
    (dict(language=5), "unknown language 5"),
    (dict(progress="yes"), "progress must be True or False"),
    (dict(monitor=True, monitor_interval=1e-6), "sampling interval must be a number of seconds of at least 0.01"),
])
def test_api_settings_are_checked_with_a_config_error_naming_them(model, clip, settings, words):
    with pytest.raises(wk.ConfigError, match=words):
        wk.transcribe(clip, model=model, **settings)


@pytest.mark.parametrize("settings, words", [
    (dict(batch_size=0), "batch_size must be a whole number from 1 to 256"),
    (dict(beam_size=99), "beam_size must be a whole number from 1 to 16"),
    (dict(language="de"), "English-only"),
])
def test_clip_batches_check_the_same_settings(model, settings, words):
    with pytest.raises(wk.ConfigError, match=words):
        wk.transcribe_clips([sample_path(CLIP)], model=model, progress=False, **settings)


def test_sampler_interval_minimum():
    from whisperkit.measure.sampler import MIN_INTERVAL_S

    with pytest.raises(wk.ConfigError, match="at least 0.01"):
        wk.Sampler(interval=1e-6)
    assert wk.Sampler(interval=MIN_INTERVAL_S).interval == MIN_INTERVAL_S


def test_a_cpu_run_that_cannot_fit_in_memory_is_refused_before_it_starts(model, clip, monkeypatch):
    import psutil

    class Tight:  # psutil's answer on a machine with 100 MiB free
        available = 100 * 2**20

    monkeypatch.setattr(psutil, "virtual_memory", lambda: Tight())
    with pytest.raises(wk.ConfigError, match=r"batch size 64 with beam 16 needs about \d+ MiB.*100 MiB"):
        wk.transcribe(clip, model=model, batch_size=64, beam_size=16, progress=False)


def test_recommend_batch_size_names_the_known_sizes():
    with pytest.raises(wk.ModelError, match="unknown model 'nope'.*tiny, base, small"):
        wk.recommend_batch_size("nope", memory_gb=8.0)
    with pytest.raises(wk.ConfigError, match="unknown compute type 'fp99'.*float16"):
        wk.recommend_batch_size("large-v3", "fp99", memory_gb=8.0)
    with pytest.raises(wk.ConfigError, match="memory_gb must be a number above 0"):
        wk.recommend_batch_size("large-v3", memory_gb=float("nan"))
    assert wk.recommend_batch_size("/models/my-finetune", memory_gb=80.0) >= 1  # a folder may be any name


# -- class 2: wrong input silently accepted -------------------------------------------------------

@pytest.mark.parametrize("convert, warning", [
    (lambda s: (s * 32767).astype(np.int16), "int16 PCM converted to float32 (divided by 32768)"),
    (lambda s: (s * 2**31 * 0.99).astype(np.int32), "int32 PCM converted"),
    (lambda s: (s * 127 + 128).astype(np.uint8), "uint8 PCM converted to float32 (centred on 128"),
    (lambda s: s * 20000, "beyond [-1, 1]; scaled down by that peak"),
    (lambda s: np.stack([s, s]), "shape (2, 43280), averaged 2 channels to mono"),
    (lambda s: np.stack([s, s]).T, "shape (43280, 2), averaged 2 channels to mono"),
])
def test_arrays_are_converted_with_a_warning_and_give_the_words(model, samples, convert, warning):
    transcript = wk.transcribe(convert(samples), model=model, progress=False)
    assert WORDS in transcript.text.lower().rstrip(".")
    assert any(warning in w for w in transcript.warnings), transcript.warnings


@pytest.mark.parametrize("make, words", [
    (lambda s: np.where(np.arange(len(s)) == 100, np.nan, s), "1 sample(s) are NaN or infinite"),
    (lambda s: np.where(np.arange(len(s)) < 5, np.inf, s), "5 sample(s) are NaN or infinite"),
    (lambda s: s.reshape(1, 1, -1), "shape (1, 1, 43280) is not 16 kHz audio"),
    (lambda s: s.reshape(-1, 20), "shape (2164, 20) is not 16 kHz audio"),
    (lambda s: s.astype(np.complex64), "complex64 are not audio"),
    (lambda s: ["a", "b"], "are not audio"),
    (lambda s: b"RIFF\x00\x00", "got bytes; pass a path, a binary file object"),
    (lambda s: object(), "object are not audio"),
])
def test_wrong_arrays_are_refused_with_the_reason(model, samples, make, words):
    with pytest.raises(wk.AudioError) as caught:
        wk.transcribe(make(samples), model=model, progress=False)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_file_objects_are_read(model, clip):
    with open(clip, "rb") as handle:
        assert WORDS in wk.transcribe(handle, model=model, progress=False).text.lower()
    in_memory = io.BytesIO(Path(clip).read_bytes())
    assert WORDS in wk.transcribe(in_memory, model=model, progress=False).text.lower()
    with open(clip, encoding="latin-1") as text_mode, pytest.raises(wk.AudioError, match="open it with 'rb'"):
        wk.transcribe(text_mode, model=model, progress=False)


def test_reference_is_a_file_when_it_is_one_and_text_only_when_it_is_not(tmp_path):
    from whisperkit.core.accuracy import read_reference

    odd_name = tmp_path / "expected.transcript"
    odd_name.write_text("Slow and steady.\n")
    assert read_reference(str(odd_name)) == "Slow and steady."  # any extension
    assert read_reference(odd_name) == "Slow and steady."
    assert read_reference("Slow and steady wins the race.") == "Slow and steady wins the race."
    assert read_reference("Hello.") == "Hello."
    with pytest.raises(wk.ConfigError, match="reference file missing.txt does not exist"):
        read_reference("missing.txt")
    with pytest.raises(wk.ConfigError, match="is not UTF-8 text"):
        read_reference(Path(sample_path(CLIP)))
    with pytest.raises(wk.ConfigError, match="reference must be text or a path"):
        read_reference(42)


def test_compare_reference_options(clip, tmp_path):
    missing = whisperkit("compare", clip, "--output-dir", str(tmp_path / "a"), "--reference", "nothere.ref",
                         cwd=tmp_path, timeout=60)
    assert missing.returncode == 2
    one_error_line(missing, "cannot read reference nothere.ref")
    audio_as_text = whisperkit("compare", clip, "--output-dir", str(tmp_path / "b"), "--reference", clip, timeout=60)
    assert audio_as_text.returncode == 2
    one_error_line(audio_as_text, "is not UTF-8 text")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # refused before any work


# -- class 3: results overwritten or mixed ---------------------------------------------------------

def test_two_inputs_that_would_share_an_output_are_refused_before_transcribing(clip, damaged, tmp_path):
    flac = tmp_path / "talk.flac"
    flac.write_bytes(Path(clip).read_bytes())
    mp3 = tmp_path / "talk.mp3"
    mp3.write_bytes(Path(damaged["mp3"]).read_bytes())
    out = tmp_path / "out"
    result = whisperkit("transcribe", str(flac), str(mp3), "--output-dir", str(out), timeout=60)
    assert result.returncode == 2
    one_error_line(result, "talk.flac and", "talk.mp3 would both be written to", "--mode corpus")
    assert not out.exists()


def refused_before_the_model(*args: str, unprivileged: bool = False) -> subprocess.CompletedProcess:
    """``whisperkit ARGS`` where loading a model ends the command with status 77 (so a refusal
    that came after the model loaded fails the test in every tier); with ``unprivileged``, as
    ``nobody`` when this is root (whisperkit imported first)."""
    drop = ("import whisperkit.cli.commands as commands, whisperkit.core.corpus.outputs, whisperkit.core.models\n"
            "import whisperkit.core.transcription\ncommands.build_parser()\n"  # Python's own files may be root's alone
            "os.setgid(65534); os.setuid(65534)\n") if unprivileged and os.geteuid() == 0 else ""
    code = ("import os, runpy, faster_whisper\n"
            "faster_whisper.WhisperModel.__init__ = lambda *a, **k: os._exit(77)\n" + drop +
            "runpy.run_module('whisperkit', run_name='__main__', alter_sys=True)")
    return subprocess.run([sys.executable, "-c", code, *args], env=environment(), capture_output=True, text=True,
                          timeout=60)


def test_an_output_never_overwrites_its_input(clip, tmp_path):
    audio = tmp_path / "talk.txt"  # FLAC audio under a text name
    audio.write_bytes(Path(clip).read_bytes())
    for extra in ([], ["--overwrite"]):
        result = refused_before_the_model("transcribe", str(audio), "--output-dir", str(tmp_path), *extra)
        assert result.returncode == 2
        one_error_line(result, f"{audio}: its output {audio} would replace an input file")
        assert audio.read_bytes() == Path(clip).read_bytes()
    into_a_file = refused_before_the_model("transcribe", clip, "--output-dir", str(audio))
    assert into_a_file.returncode == 2
    one_error_line(into_a_file, f"output folder {audio} is a file, not a folder")
    assert audio.read_bytes() == Path(clip).read_bytes()


def test_an_existing_output_is_refused_before_the_model_loads(clip, tmp_path):
    mine = tmp_path / "aesop_02.txt"
    mine.write_bytes(b"my own notes\r\n\x00\xff")
    other = tmp_path / "aesop_02.srt"
    other.write_bytes(b"mine too")
    result = refused_before_the_model("transcribe", clip, "--output-dir", str(tmp_path))
    assert result.returncode == 2
    one_error_line(result, f"{mine} already exists; pass --overwrite to replace it")
    everything = refused_before_the_model("transcribe", clip, "--output-dir", str(tmp_path), "--output-format", "all")
    assert everything.returncode == 2
    one_error_line(everything, f"{mine}, {other} already exist; pass --overwrite to replace them")
    assert mine.read_bytes() == b"my own notes\r\n\x00\xff" and other.read_bytes() == b"mine too"
    assert sorted(os.listdir(tmp_path)) == ["aesop_02.srt", "aesop_02.txt"]


def test_an_output_blocked_by_a_folder_or_too_long_is_refused_before_the_model_loads(clip, tmp_path):
    out = tmp_path / "out"
    (out / "aesop_02.txt").mkdir(parents=True)
    (out / "aesop_02.txt" / "kept").write_bytes(b"kept")
    for extra in ([], ["--overwrite"]):
        result = refused_before_the_model("transcribe", clip, "--output-dir", str(out), *extra)
        assert result.returncode == 2
        one_error_line(result, f"its output {out / 'aesop_02.txt'} is blocked by a folder of that name")
        assert os.listdir(out) == ["aesop_02.txt"] and (out / "aesop_02.txt" / "kept").read_bytes() == b"kept"
    long = tmp_path / ("x" * 251 + ".wav")  # 255 bytes: a valid name, but its .json output would be 256
    long.write_bytes(Path(clip).read_bytes())
    named = refused_before_the_model("transcribe", str(long), "--output-dir", str(tmp_path / "long"),
                                     "--output-format", "json")
    assert named.returncode == 2
    one_error_line(named, "is 256 bytes, over the 255-byte limit of file names; rename the file")
    assert not (tmp_path / "long").exists()


def test_an_output_folder_that_cannot_be_written_is_refused_before_the_model_loads(clip):
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="whisperkit-test-")  # one that nobody may enter (pytest's are root's alone)
    try:
        os.chmod(folder, 0o755)
        audio = os.path.join(folder, "talk.flac")
        shutil.copy(clip, audio)
        os.chmod(audio, 0o644)
        out = os.path.join(folder, "out")
        os.mkdir(out)
        os.chmod(out, 0o555)
        result = refused_before_the_model("transcribe", audio, "--output-dir", os.path.join(out, "new"),
                                          unprivileged=True)
        assert result.returncode == 2
        one_error_line(result, f"cannot write in {out} (Permission denied)", "choose a folder you can write to")
        assert os.listdir(out) == []
    finally:
        os.chmod(os.path.join(folder, "out"), 0o755)
        shutil.rmtree(folder)


def test_overwrite_replaces_an_existing_output(tmp_path):
    mine = tmp_path / "aesop_02.txt"
    mine.write_text("an older transcript\n")
    result = whisperkit("transcribe", sample_path(CLIP), "--output-dir", str(tmp_path), "--overwrite", "--quiet",
                        "--device", "cpu", timeout=120)
    assert result.returncode == 0, result.stderr
    assert mine.read_text().strip().lower().rstrip(".") == WORDS
    assert os.listdir(tmp_path) == ["aesop_02.txt"]


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory, clip):
    folder = tmp_path_factory.mktemp("runs") / "run"
    wk.save(wk.run(clip, wk.Config(device="cpu"), progress=False), folder)
    return folder


def test_report_never_overwrites_a_run(saved_run):
    before = (saved_run / "run.json").read_bytes()
    result = whisperkit("report", str(saved_run), "--output", str(saved_run / "run.json"), timeout=60)
    assert result.returncode == 2
    one_error_line(result, "a report is an .html file")
    assert (saved_run / "run.json").read_bytes() == before


def test_an_experiment_folder_holds_one_experiment(clip, tmp_path):
    from whisperkit.experiments.store import LOCK_NAME, claim_folder

    folder = tmp_path / "exp"
    (folder / "runs" / "before").mkdir(parents=True)
    (folder / "comparison.json").write_text("{}")
    result = whisperkit("compare", clip, "--output-dir", str(folder), timeout=60)
    assert result.returncode == 2
    one_error_line(result, "already holds files (comparison.json, runs)", "--overwrite")
    with claim_folder(tmp_path / "busy"):  # another experiment is running there now
        busy = whisperkit("sweep", clip, "--output-dir", str(tmp_path / "busy"), timeout=60)
        assert (tmp_path / "busy" / LOCK_NAME).read_text().split() == [str(os.getpid()), socket.gethostname()]
    assert busy.returncode == 2
    one_error_line(busy, "is in use by another whisperkit experiment", f"pid {os.getpid()}")
    assert not (tmp_path / "busy" / LOCK_NAME).exists()


def test_an_experiment_that_fails_before_writing_leaves_no_folder(tmp_path):
    from whisperkit.experiments.store import claim_folder

    with pytest.raises(wk.ConfigError), claim_folder(tmp_path / "new"):
        wk.Config(beam_size=0)
    assert not (tmp_path / "new").exists()


def test_overwrite_removes_only_an_experiments_own_files(tmp_path):
    from whisperkit.experiments.store import claim_folder

    folder = tmp_path / "exp"
    (folder / "runs" / "before-1").mkdir(parents=True)
    (folder / "report.html").write_text("old")
    (folder / ".whisperkit.lock").write_text("999999999 " + socket.gethostname())  # left by a crash
    with claim_folder(folder, overwrite=True):
        assert [p.name for p in folder.iterdir()] == [".whisperkit.lock"]
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(wk.RunError, match=r"holds files no experiment writes \(notes.txt\)"):
        with claim_folder(folder, overwrite=True):
            pass
    assert (folder / "notes.txt").read_text() == "mine"


# -- class 4: one failure throws away finished work ------------------------------------------------

def test_a_failed_write_loses_only_that_files_output(tmp_path, monkeypatch, capsys):
    """What appears in the way of an output while the files are transcribed (the checks before the
    run found nothing there) is kept, a folder or a user's file, and only that file's outputs are
    lost; the other file's outputs are written."""
    from whisperkit.cli.commands import main
    from whisperkit.core import transcription

    out = tmp_path / "out"
    real = transcription.transcribe_config

    def meanwhile(path, *args, **kwargs):
        if path == sample_path("aesop_02"):
            (out / "aesop_02.txt").mkdir(parents=True)
        if path == sample_path("aesop_09"):
            (out / "aesop_09.srt").write_bytes(b"mine")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(transcription, "transcribe_config", meanwhile)
    status = main(["transcribe", sample_path("aesop_02"), sample_path("aesop_09"), sample_path("aesop_04"),
                   "--output-dir", str(out), "--output-format", "all", "--quiet", "--device", "cpu"])
    errors = capsys.readouterr().err
    assert status == 2
    assert "Traceback" not in errors
    assert f"{out / 'aesop_02.txt'} appeared during the run and is kept" in errors
    assert f"{out / 'aesop_09.srt'} appeared during the run and is kept" in errors and "2 of 3 file(s) failed" in errors
    assert (out / "aesop_09.srt").read_bytes() == b"mine" and not (out / "aesop_09.txt").exists()
    assert "grapes" in (out / "aesop_04.txt").read_text()


def test_monitor_writes_its_timeline_on_sigterm_and_passes_the_status(tmp_path):
    env = environment()
    process = subprocess.Popen(
        [sys.executable, "-m", "whisperkit", "monitor", "--interval", "0.05", "-o", "t.csv", "--",
         sys.executable, "-c", "import time; time.sleep(60)"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = 0
    while lines < 4:  # a GPU line or the header, then samples
        assert process.stdout.readline(), process.stderr.read()
        lines += 1
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 128 + signal.SIGTERM  # the command was terminated, and says so
    assert "Traceback" not in stderr and "wrote" in stderr
    assert len((tmp_path / "t.csv").read_text().splitlines()) >= 3


def test_monitor_output_on_a_full_disk_leaves_no_file_and_keeps_the_status(tmp_path):
    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (512, 512))  # a "full disk" after 512 bytes

    env = environment()
    result = subprocess.run(
        [sys.executable, "-m", "whisperkit", "monitor", "--interval", "0.02", "-o", "t.csv", "--",
         sys.executable, "-c", "import time; time.sleep(0.5); raise SystemExit(3)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, preexec_fn=small_files)
    assert result.returncode == 3
    one_error_line(result, "cannot write t.csv", "File too large")
    assert os.listdir(tmp_path) == []  # neither t.csv nor a temporary file


def test_temporary_names_stay_within_the_name_limit(tmp_path):
    from whisperkit.files import temporary_name, write_text_atomic

    name = "é" * 125 + ".txt"  # 254 bytes: long but valid
    assert len(os.fsencode(os.path.basename(temporary_name(str(tmp_path / name))))) <= 255
    write_text_atomic(tmp_path / name, "kept")
    assert (tmp_path / name).read_text() == "kept" and os.listdir(tmp_path) == [name]


# -- class 5: tracebacks reaching the user ----------------------------------------------------------

def test_a_closed_pipe_ends_quietly(clip):
    env = environment()
    process = subprocess.Popen([sys.executable, "-m", "whisperkit", "transcribe", clip, "--quiet", "--device", "cpu"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # the reader is gone before the first line (as with | head -c5)
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 1
    assert stderr == ""


def test_standard_output_on_a_full_device_is_one_line(clip):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    with open("/dev/full", "w") as full:
        result = whisperkit("transcribe", clip, "--quiet", "--device", "cpu", stdout=full, timeout=120)
    assert result.returncode == 2
    one_error_line(result, "No space left on device")


def test_a_model_folder_with_a_corrupt_tokenizer_is_a_model_error(clip, tmp_path):
    from whisperkit.core.models import bundled_model_path

    folder = tmp_path / "model"
    folder.mkdir()
    for path in Path(bundled_model_path()).iterdir():
        (folder / path.name).symlink_to(path)
    (folder / "tokenizer.json").unlink()
    (folder / "tokenizer.json").write_text('{"broken": ')
    result = whisperkit("transcribe", clip, "--model", str(folder), "--device", "cpu", timeout=60)
    assert result.returncode == 2
    one_error_line(result, f"could not load model from {folder}", "tokenizer.json")


def test_report_of_runs_whose_metrics_are_null_or_text(saved_run, tmp_path):
    import json
    import shutil

    for name, metrics in (("null", None), ("text", "fast"), ("list", [1, 2])):
        folder = tmp_path / name
        shutil.copytree(saved_run, folder)
        document = json.loads((folder / "run.json").read_text())
        document["metrics"] = metrics if metrics != "fast" else {key: "fast" for key in document["metrics"]}
        (folder / "run.json").write_text(json.dumps(document))
    for name in ("null", "text"):
        result = whisperkit("report", str(tmp_path / name), "--output", str(tmp_path / f"{name}.html"), timeout=60)
        assert result.returncode == 0, result.stderr
        assert "n/a" in (tmp_path / f"{name}.html").read_text()
    broken = whisperkit("report", str(tmp_path / "list"), "--output", str(tmp_path / "list.html"), timeout=60)
    assert broken.returncode == 2
    one_error_line(broken, "run.json: damaged, its metrics are a list")


def test_an_internal_error_is_one_line_with_a_hint_and_debug_shows_it(monkeypatch, capsys):
    from whisperkit.cli import commands

    def broken(args):
        raise RuntimeError("something inside went wrong\nsecond line")

    monkeypatch.setattr(commands, "run_env", broken)
    assert commands.main(["env"]) == 1
    line = one_error_line(SimpleNamespace(stderr=capsys.readouterr().err))
    assert "internal error (RuntimeError: something inside went wrong)" in line and "--debug" in line
    with pytest.raises(RuntimeError):
        commands.main(["--debug", "env"])


# -- class 6: damaged audio -----------------------------------------------------------------------

def test_a_corrupted_mp3_decodes_past_the_damage_and_says_how_much_was_lost(damaged):
    whole = wk.load_audio(damaged["mp3"]).seconds
    audio = wk.load_audio(damaged["corrupt"])
    assert audio.seconds > 0.8 * whole  # not cut at the first bad frame
    assert len(audio.warnings) == 1 and "s lost" in audio.warnings[0] and "skipped" in audio.warnings[0]


def test_a_flac_cut_to_its_header_is_an_error_not_silence(damaged):
    result = whisperkit("transcribe", damaged["header_only"], "--device", "cpu", timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"whisperkit: error: {damaged['header_only']}: damaged, only 0.3 s of silence could be decoded "
        "of the 79.5 s its header declares; check the file",
        "whisperkit: error: 1 of 1 file(s) failed",
    ]
    with pytest.raises(wk.AudioError, match="only 0.3 s of silence"):
        wk.load_audio(damaged["header_only"])


# -- class 7: pipes --------------------------------------------------------------------------------

def test_standard_input_and_fifos_are_read_as_streams(clip, tmp_path):
    with open(clip, "rb") as handle:
        piped = whisperkit("transcribe", "/dev/stdin", "--quiet", "--device", "cpu", stdin=handle, timeout=120)
    assert piped.returncode == 0, piped.stderr
    assert WORDS in piped.stdout.lower()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = subprocess.Popen(["sh", "-c", f"cat '{clip}' > '{fifo}'"])
    try:
        audio = wk.load_audio(str(fifo))
    finally:
        writer.wait(timeout=30)
    assert audio.seconds == pytest.approx(wk.load_audio(clip).seconds) and audio.warnings == []
