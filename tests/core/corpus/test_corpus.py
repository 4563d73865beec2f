"""The corpus pipeline on a folder of real speech: words per file, bad files, resume, outputs.

A corpus made on the spot from the bundled samples: ten short clips in two subfolders whose
files share names, the 79 s Gettysburg address (voice-detected into chunks), and bad files.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import whisperkit as wk
from whisperkit.core.samples import reference_text

try:
    from tests.audio_files import write_wav
except ImportError:  # run from inside tests/
    from audio_files import write_wav


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, clips, long_sample, bad_audio, quiet_audio):
    """Folder ``corpus/`` and the reference text of each good file, by path."""
    folder = tmp_path_factory.mktemp("corpus")
    references = {}
    for number, clip in enumerate(clips):
        subfolder = folder / ("first" if number < 5 else "second")
        subfolder.mkdir(exist_ok=True)
        path = subfolder / f"clip_{number % 5}.flac"  # the same names in both subfolders
        shutil.copy(clip, path)
        references[str(path)] = reference_text(clip)
    (folder / "long").mkdir()
    shutil.copy(long_sample, folder / "long" / "speech.flac")
    references[str(folder / "long" / "speech.flac")] = reference_text(long_sample)
    bad = folder / "bad"
    bad.mkdir()
    shutil.copy(bad_audio["truncated"], bad / "truncated.flac")  # damaged but partly readable
    shutil.copy(bad_audio["noise"], bad / "noise.flac")
    shutil.copy(bad_audio["text"], bad / "notes.wav")
    shutil.copy(bad_audio["empty_bytes"], bad / "empty.mp3")
    shutil.copy(quiet_audio["silence"], bad / "silence.wav")
    (folder / "readme.txt").write_text("not looked at: not an audio extension\n")
    failing = {str(bad / name) for name in ("noise.flac", "notes.wav", "empty.mp3", "silence.wav")}
    return folder, references, failing, str(bad / "truncated.flac")


@pytest.fixture(scope="module")
def first_run(model, corpus, tmp_path_factory):
    folder, *_ = corpus
    output = tmp_path_factory.mktemp("out")
    result = wk.transcribe_corpus(folder, model, output_dir=output, output_format="all", progress=False)
    return result, output


def test_each_file_gets_its_own_words(first_run, corpus):
    result, _ = first_run
    _, references, _, _ = corpus
    rates = {path: wk.word_error_rate(reference, result.transcripts[path].text) for path, reference in references.items()}
    assert np.mean(list(rates.values())) < 0.15, rates
    by_name = {path.split("corpus")[-1]: t.text.lower() for path, t in result.transcripts.items()}
    assert "steady wins the race" in by_name[next(k for k in by_name if k.endswith("first/clip_1.flac"))]
    assert "hanging grapes" in by_name[next(k for k in by_name if k.endswith("first/clip_3.flac"))]
    assert "prove great friends" in by_name[next(k for k in by_name if k.endswith("second/clip_3.flac"))]
    long_text = by_name[next(k for k in by_name if k.endswith("long/speech.flac"))]
    assert long_text.startswith("four score and seven years ago") and "shall not perish from the earth" in long_text


def test_segment_times_are_relative_to_each_file(first_run):
    result, _ = first_run
    for transcript in result.transcripts.values():
        assert transcript.segments
        for segment in transcript.segments:
            assert 0.0 <= segment.start <= segment.end <= transcript.audio_seconds + 0.01
    long = next(t for p, t in result.transcripts.items() if p.endswith("speech.flac"))
    assert long.segments[-1].end > 70


def test_bad_files_are_reported_and_never_stop_the_others(first_run, corpus):
    result, _ = first_run
    _, references, failing, truncated = corpus
    assert set(result.failures) == failing
    assert "silent" in result.failures[next(p for p in failing if p.endswith("silence.wav"))]
    assert "empty" in result.failures[next(p for p in failing if p.endswith("empty.mp3"))]
    for path, reason in result.failures.items():
        assert reason.startswith(path) and "\n" not in reason
    assert set(references) | {truncated} == set(result.transcripts)
    assert any("truncated" in w or "damaged" in w for w in result.transcripts[truncated].warnings)


def test_outputs_mirror_the_folders(first_run, corpus):
    result, output = first_run
    folder, references, failing, truncated = corpus
    for path in [*references, truncated]:
        relative = path[len(str(folder)) + 1:].rsplit(".", 1)[0]
        for fmt in ("txt", "json", "srt", "vtt"):
            assert (output / f"{relative}.{fmt}").is_file(), relative
        text = (output / f"{relative}.txt").read_text()
        assert text.split() == result.transcripts[path].to_txt().split()
    assert (output / "first" / "clip_1.txt").read_text() != (output / "second" / "clip_1.txt").read_text()
    saved = json.loads((output / "long" / "speech.json").read_text())
    assert saved["segments"][0]["start"] < 1.0
    assert (output / "long" / "speech.vtt").read_text().startswith("WEBVTT")
    assert not list(output.rglob("*.tmp*"))


def test_the_manifest_records_the_config_and_each_file(first_run, corpus):
    _, output = first_run
    _, references, failing, _ = corpus
    manifest = json.loads((output / "manifest.json").read_text())
    assert manifest["config"]["pack"] is True and manifest["config"]["formats"] == ["txt", "json", "srt", "vtt"]
    statuses = {entry["path"]: entry["status"] for entry in manifest["files"].values()}
    assert all(statuses[path] == "done" for path in references)
    assert all(statuses[path] == "failed" for path in failing)


def test_a_rerun_skips_the_files_done_and_overwrite_redoes_them(model, first_run, corpus, tmp_path):
    result, output = first_run
    folder, references, failing, _ = corpus
    again = wk.transcribe_corpus(folder, model, output_dir=output, output_format="all", progress=False)
    assert set(again.skipped) == set(result.transcripts)
    assert again.transcripts == {} and set(again.failures) == failing
    with pytest.raises(wk.ConfigError, match="other settings"):
        wk.transcribe_corpus(folder, model, output_dir=output, output_format="txt", progress=False)
    some = tmp_path / "some"
    shutil.copytree(folder / "first", some)
    first = wk.transcribe_corpus(some, model, output_dir=tmp_path / "out", progress=False)
    redone = wk.transcribe_corpus(some, model, output_dir=tmp_path / "out", resume=False, progress=False)
    assert redone.skipped == [] and set(redone.transcripts) == set(first.transcripts)


def test_stage_accounting(first_run, corpus):
    result, _ = first_run
    assert set(result.stages) == {"read", "pack", "model", "write"}
    assert result.stages["model"].items == result.windows > 0
    assert result.stages["read"].items >= result.pieces >= 11
    assert 0 <= result.model_wait_percent <= 100
    assert result.windows < result.pieces  # short clips were packed
    assert {span.stage for span in result.spans} == {"read", "pack", "model", "write"}
    assert set(result.stage_table().index) == {"read", "pack", "model", "write"}
    figure = wk.plots.stage_timeline(result)
    assert {trace.name for trace in figure.data} == {"read", "pack", "model", "write"}
    with pytest.raises(wk.WhisperkitError, match="transcribe_corpus"):
        wk.plots.stage_timeline("not a result")


def test_one_long_file_has_the_words_of_batched_transcribe(model, batched, long_sample):
    result = wk.transcribe_corpus(long_sample, model, batch_size=8, progress=False)
    assert wk.word_error_rate(batched.text, result.transcripts[long_sample].text) <= 0.02


def test_unpacked_words_match_and_monitor_marks_the_stages(model, clips):
    result = wk.transcribe_corpus(clips[:4], model, pack=False, monitor=True, monitor_interval=0.1, progress=False)
    assert result.windows == 4
    assert "steady wins the race" in result.transcripts[clips[1]].text.lower()
    assert len(result.timeline) > 0 and {"prepare", "first batch"} <= set(result.marks["label"])
    assert "process CPU % (of all cores)" in {trace.name for trace in wk.plots.stage_timeline(result).data}


def test_out_of_memory_halves_the_batch(model, clips, fail_above):
    from whisperkit.core.corpus.decoding import WindowDecoder

    fail_above(WindowDecoder, "__call__", 2, "CUDA failed with error out of memory")
    result = wk.transcribe_corpus(clips[:6], model, pack=False, batch_size=8, progress=False)
    assert [retry["batch_size"] for retry in result.batch_retries] == [6, 3]
    assert result.batch_size == 1
    assert "steady wins the race" in result.transcripts[clips[1]].text.lower()


def test_bad_settings_are_errors(model, clips, tmp_path):
    with pytest.raises(wk.ConfigError, match="batch_size"):
        wk.transcribe_corpus(clips, model, batch_size=0)
    with pytest.raises(wk.ConfigError, match="English-only"):
        wk.transcribe_corpus(clips, model, language="de")
    with pytest.raises(wk.ConfigError, match="output format"):
        wk.transcribe_corpus(clips, model, output_format="docx")
    with pytest.raises(wk.ConfigError, match="no audio"):
        wk.transcribe_corpus(tmp_path, model)
    with pytest.raises(wk.ConfigError, match="sets vad_filter itself"):
        wk.transcribe_corpus(clips, model, vad_filter=True)


def test_the_command_line_reports_each_bad_file_and_exits_2(cli, clips, bad_audio, tmp_path):
    folder = tmp_path / "recordings"
    (folder / "a").mkdir(parents=True)
    shutil.copy(clips[1], folder / "a" / "one.flac")
    shutil.copy(clips[3], folder / "two.flac")
    shutil.copy(bad_audio["text"], folder / "bad.wav")
    output = tmp_path / "out"
    first = cli("transcribe", str(folder), "--mode", "corpus", "--output-dir", str(output), "--quiet")
    assert first.returncode == 2, first.stderr
    errors = [line for line in first.stderr.splitlines() if line.startswith("whisperkit: error:")]
    assert len(errors) == 2 and "bad.wav" in errors[0] and "1 file(s) failed, 2 done" in errors[1]
    assert "Traceback" not in first.stderr
    assert "steady wins the race" in (output / "a" / "one.txt").read_text().lower()
    assert "hanging grapes" in (output / "two.txt").read_text()
    again = cli("transcribe", str(folder), "--mode", "corpus", "--output-dir", str(output))
    assert again.returncode == 2 and "2 skipped" in again.stderr
    no_folder = cli("transcribe", str(folder), "--mode", "corpus")
    assert no_folder.returncode == 2 and "--output-dir" in no_folder.stderr


MEMORY_SCRIPT = """
import json, sys, threading, time
import psutil
import whisperkit as wk

short, long = sys.argv[1], sys.argv[2]
model = wk.load_model()
process = psutil.Process()


def peak_growth_mib(path, corpus=True):
    base = peak = process.memory_info().rss
    stop = threading.Event()

    def watch():
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    if corpus:
        transcript = wk.transcribe_corpus(path, model, batch_size=8, progress=False).transcripts[path]
    else:
        transcript = wk.transcribe(path, model=model, batch_size=8, progress=False)
    stop.set()
    watcher.join()
    return (peak - base) / 2**20, transcript


short_growth, _ = peak_growth_mib(short)
long_growth, transcript = peak_growth_mib(long)
whole_growth, _ = peak_growth_mib(long, corpus=False)
print(json.dumps({"short_mib": short_growth, "long_mib": long_growth, "transcribe_mib": whole_growth,
                  "audio_seconds": transcript.audio_seconds, "text": transcript.text}))
"""


@pytest.mark.model
def test_memory_stays_bounded_on_a_30_minute_file(long_sample, tmp_path):
    """A 30-minute file (speech, then quiet noise, five times) raises the peak RSS by less than
    300 MB above what a 160 s file (one full batch of 30 s windows) raises it, and by far less
    than batched ``transcribe`` of the same file raises it.

    The baseline is a short run's own peak because the model's working memory for one batch
    (tiny.en int8 on a CPU, 8 windows at beam 5: most of the 300-450 MiB a corpus run adds to
    the loaded model) is allocated with the first batch whatever the file: what is measured is
    what the length of the file adds. Run in a subprocess, so that this process's memory does
    not count.
    """
    import subprocess
    import sys
    import wave

    speech = wk.load_audio(long_sample).samples
    noise = np.random.default_rng(0).standard_normal(300 * 16000) * 0.003  # 5 minutes at about -50 dBFS
    paths = {"short": tmp_path / "short.wav", "long": tmp_path / "half_hour.wav"}
    for name, parts in (("short", [speech, speech]), ("long", [speech, noise] * 5)):
        with wave.open(str(paths[name]), "wb") as handle:
            handle.setnchannels(1)
            handle.setsampwidth(2)
            handle.setframerate(16000)
            for part in parts:
                handle.writeframes((np.clip(part, -1, 1) * 32767).astype("<i2").tobytes())
    run = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(paths["short"]), str(paths["long"])],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    measured = json.loads(run.stdout.strip().splitlines()[-1])
    assert measured["audio_seconds"] > 30 * 60
    assert measured["text"].lower().count("four score and seven years ago") == 5
    assert measured["long_mib"] - measured["short_mib"] < 300 / 1.048576, measured
    # batched transcribe holds the whole file (and its voice detection) at once: about 900 MiB here
    assert measured["long_mib"] < measured["transcribe_mib"] - 200, measured


FOLDER_MEMORY_SCRIPT = """
import json, resource, sys
import whisperkit as wk
from whisperkit.core.corpus import decoding


def forward(self, windows):  # one word per clip at once: what is left is the pipeline's own memory
    return [[{"text": " word", "start": 0.0, "end": window.seconds,
              "words": [{"word": " word", "start": place.start, "end": place.end, "probability": 0.9}
                        for place in window.places]}] for window in windows]


decoding.WindowDecoder._forward = forward
result = wk.transcribe_corpus("@" + sys.argv[1], wk.load_model(), output_dir=sys.argv[2], batch_size=8, progress=False)
print(json.dumps({"files": len(result.transcripts), "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


@pytest.mark.model
def test_the_pipeline_keeps_nothing_per_file_that_grows_with_the_folder(tmp_path, long_sample):
    """1,000 one-second files peak within 25 MB of 100 (the model's forward pass replaced by one
    that answers at once, in fresh processes): the pipeline's queues, results, outputs and
    manifest hold no more for a larger folder. The model's own working memory against folder
    size is measured with the real model by ``benchmarks/corpus_memory.py``."""
    import subprocess
    import sys

    speech = wk.load_audio(long_sample).samples
    paths = []
    for number in range(1000):
        start = (number * 16000) % (len(speech) - 16000)
        paths.append(write_wav(tmp_path / f"clip_{number:04d}.wav", speech[start:start + 16000]))
    peaks = {}
    for count in (100, 1000):
        listing = tmp_path / f"list_{count}.txt"
        listing.write_text("\n".join(paths[:count]) + "\n")
        run = subprocess.run([sys.executable, "-c", FOLDER_MEMORY_SCRIPT, str(listing), str(tmp_path / f"out_{count}")],
                             capture_output=True, text=True, timeout=900)
        assert run.returncode == 0, run.stderr[-2000:]
        measured = json.loads(run.stdout.strip().splitlines()[-1])
        assert measured["files"] == count
        peaks[count] = measured["peak_mb"]
    assert len(list((tmp_path / "out_1000").glob("*.txt"))) == 1000
    assert peaks[1000] - peaks[100] < 25, peaks


def test_ctrl_c_leaves_whole_outputs_and_a_rerun_finishes(cli, clips, long_sample, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    folder = tmp_path / "recordings"
    folder.mkdir()
    for number, clip in enumerate(clips):
        shutil.copy(clip, folder / f"{number:02d}.flac")
    shutil.copy(long_sample, folder / "99_long.flac")
    output = tmp_path / "out"
    command = [sys.executable, "-m", "whisperkit", "transcribe", str(folder), "--mode", "corpus", "--output-dir",
               str(output), "--no-pack", "--batch-size", "1", "--reader-threads", "1", "--quiet"]
    # Ctrl-C reaches the command as the shell's SIGINT would, also where the suite itself was started
    # in the background (bash then ignores SIGINT for it, and every child inherits that)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    while not list(output.glob("*.txt")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "whisperkit: error: interrupted" in stderr and "Traceback" not in stderr
    assert not list(output.rglob("*.tmp*"))
    manifest = json.loads((output / "manifest.json").read_text())
    done = [name for name, entry in manifest["files"].items() if entry["status"] == "done"]
    assert done and len(done) < 11
    for name in done:
        assert (output / f"{name}.txt").read_text().strip()
    rerun = cli("transcribe", str(folder), "--mode", "corpus", "--output-dir", str(output), "--no-pack",
                "--batch-size", "1")
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(done)} skipped" in rerun.stderr
    assert len(list(output.glob("*.txt"))) == 11
