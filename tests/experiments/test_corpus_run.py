"""A corpus run as an experiment: ``wk.run(folder, Config(mode="corpus"))`` is a Run that is
saved, loaded, reported, plotted and diagnosed like the others, with the corpus's stages."""

from __future__ import annotations

import html
import shutil

import pytest

import whisperkit as wk
from whisperkit.core.samples import reference_text


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory, clips):
    """Six bundled clips, each with its reference ``.txt`` beside it."""
    folder = tmp_path_factory.mktemp("clips")
    for clip in clips[:6]:
        copied = shutil.copy(clip, folder)
        shutil.copy(clip.rsplit(".", 1)[0] + ".txt", folder)
        assert reference_text(copied)
    return folder


@pytest.fixture(scope="module")
def corpus_run(model, clip_folder):
    return wk.run(clip_folder, wk.Config(mode="corpus", batch_size=4), interval=0.05, progress=False)


def test_a_corpus_run_holds_each_files_words_and_the_stages(corpus_run, clip_folder):
    corpus = corpus_run.corpus
    assert len(corpus.transcripts) == 6 and not corpus.failures
    for path, transcript in corpus.transcripts.items():
        assert wk.word_error_rate(reference_text(path), transcript.text) < 0.25, path
    assert corpus_run.transcript.text == " ".join(t.text for t in corpus.transcripts.values())
    assert corpus_run.metrics["wer_vs_reference"] < 0.15  # against the .txt beside each file
    assert corpus_run.metrics["files_done"] == 6 and corpus_run.metrics["files_failed"] == 0
    assert corpus_run.metrics["model_wait_percent"] == pytest.approx(corpus.model_wait_percent)
    assert corpus_run.metrics["audio_seconds"] == pytest.approx(corpus.audio_seconds)
    assert corpus_run.label == "corpus, packed, batch 4"
    assert corpus.windows < 6  # packed: several clips per window


def test_a_corpus_run_marks_its_phases_on_the_timeline(corpus_run):
    marks = corpus_run.marks.set_index("label")["time_s"]
    assert list(marks.index) == ["load", "prepare", "first batch"]
    first_batch = marks["first batch"] - marks["prepare"]
    assert first_batch == pytest.approx(corpus_run.corpus.first_batch_seconds, abs=1e-6)
    assert corpus_run.transcript.prepare_seconds == pytest.approx(first_batch, abs=1e-6)
    model_spans = [span for span in corpus_run.corpus.spans if span.stage == "model"]
    assert model_spans[0].start_s >= marks["prepare"]  # spans are on the sampler's clock
    assert model_spans[-1].end_s <= corpus_run.timeline["time_s"].iloc[-1] + 0.5


def test_a_corpus_run_is_saved_loaded_reported_and_plotted(corpus_run, tmp_path):
    folder = wk.save(corpus_run, tmp_path / "run")
    loaded = wk.load_run(folder)
    assert loaded.config.mode == "corpus" and loaded.config.pack
    assert loaded.corpus.transcripts.keys() == corpus_run.corpus.transcripts.keys()
    assert [t.text for t in loaded.corpus.transcripts.values()] == [t.text for t in corpus_run.corpus.transcripts.values()]
    assert loaded.corpus.stages == corpus_run.corpus.stages and loaded.corpus.spans == corpus_run.corpus.spans
    assert loaded.metrics["files_done"] == 6

    figure = wk.plots.stage_timeline(loaded)
    names = {trace.name for trace in figure.data}
    assert {"read", "pack", "model", "write"} <= names and "machine CPU %" in names
    assert "prepare (CPU)" in str(wk.plots.timeline(loaded).to_dict()["layout"])

    page = (tmp_path / "report.html")
    wk.report(loaded, page)
    text = page.read_text()
    assert "Corpus stages" in text and "<th>model wait %</th>" not in text  # descriptions in the report
    assert "the model's wait for its next batch" in html.unescape(text) and "6 file(s) done" in text


def test_a_run_that_is_not_a_corpus_run_has_no_stage_timeline(model, clips):
    run = wk.run(clips[0], wk.Config(mode="batched", batch_size=2), progress=False)
    assert "model wait %" not in run.table()["value"].index
    with pytest.raises(wk.WhisperkitError, match="not a corpus run"):
        wk.plots.stage_timeline(run)


def test_corpus_mode_is_refused_where_one_file_is_transcribed(clips):
    with pytest.raises(wk.ConfigError, match="transcribe_corpus"):
        wk.transcribe(clips[0], mode="corpus")
    with pytest.raises(wk.ConfigError, match="pack must be True or False"):
        wk.Config(mode="corpus", pack="yes")


def test_diagnose_says_when_the_model_waited_on_the_cpu_stages(corpus_run):
    import copy
    import dataclasses

    assert "model-waited-in-corpus" not in {f.code for f in wk.diagnose(corpus_run)}  # packed clips: it kept busy
    starved = copy.deepcopy(corpus_run.corpus)
    model = starved.stages["model"]
    starved.stages["model"] = dataclasses.replace(model, wait_seconds=0.6 * starved.wall_seconds)
    finding = next(f for f in wk.diagnose(dataclasses.replace(corpus_run, corpus=starved)) if f.code == "model-waited-in-corpus")
    assert finding.title.startswith("The model waited for its next batch 60 %")
    assert "read " in finding.evidence and "reader_threads" in finding.what_to_do


def test_a_corpus_sweep_batches_windows_across_files(model, clip_folder):
    sweep = wk.sweep(clip_folder, (1, 2), wk.Config(mode="corpus", pack=False), progress=False)
    assert [point.batch_size for point in sweep.points] == [1, 2]
    assert all(run.config.mode == "corpus" and run.corpus.windows == 6 for run in sweep.runs)
    assert [run.corpus.batch_size for run in sweep.runs] == [1, 2]
    texts = [run.transcript.text for run in sweep.runs]
    assert wk.word_error_rate(texts[0], texts[1]) < 0.05 and "steady wins the race" in texts[0].lower()


def test_the_command_line_saves_a_monitored_corpus_run(cli, clips, bad_audio, tmp_path):
    folder = tmp_path / "recordings"
    folder.mkdir()
    for clip in clips[:3]:
        shutil.copy(clip, folder)
    shutil.copy(bad_audio["text"], folder / "bad.wav")
    output, run_dir = tmp_path / "out", tmp_path / "run"
    done = cli("transcribe", str(folder), "--mode", "corpus", "--output-dir", str(output), "--save-run", str(run_dir),
               "--interval", "0.05", "--batch-size", "2")
    assert done.returncode == 2 and "bad.wav" in done.stderr and "Traceback" not in done.stderr  # one bad file
    assert f"run saved in {run_dir}" in done.stderr
    run = wk.load_run(run_dir)
    assert run.config.mode == "corpus" and run.metrics["files_done"] == 3 and run.metrics["files_failed"] == 1
    assert "steady wins the race" in (output / "aesop_02.txt").read_text().lower()
    assert "bad.wav" in (run_dir / "report.html").read_text()
    again = cli("transcribe", str(folder), "--mode", "corpus", "--output-dir", str(output), "--save-run", str(run_dir))
    assert again.returncode == 2 and "already holds files" in again.stderr  # the saved run is kept
    assert wk.load_run(run_dir).metrics["files_done"] == 3
    one_file = cli("transcribe", clips[0], "--save-run", str(tmp_path / "other"))
    assert one_file.returncode == 2 and "--save-run goes with --mode corpus" in one_file.stderr
    old_name = cli("transcribe", clips[0], "--monitor", str(tmp_path / "other"))  # deprecated, still understood
    assert old_name.returncode == 2 and "--monitor RUN_DIR is now --save-run RUN_DIR" in old_name.stderr


def test_the_command_line_sweeps_a_corpus(cli, clip_folder, tmp_path):
    done = cli("sweep", str(clip_folder), "--corpus", "--batch-sizes", "1,4", "--output-dir", str(tmp_path / "sweep"),
               "--quiet")
    assert done.returncode == 0, done.stderr
    runs = wk.load_runs(tmp_path / "sweep" / "runs")
    assert [run.corpus.batch_size for run in runs] == [1, 4] and all(run.config.pack for run in runs)
    assert all(run.corpus.windows < 6 for run in runs)  # packed: the six clips share windows
    assert "steady wins the race" in runs[0].transcript.text.lower()


def test_a_corpus_run_where_every_file_failed_is_still_a_run(model, bad_audio, tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    shutil.copy(bad_audio["text"], folder / "notes.wav")
    run = wk.run(folder, wk.Config(mode="corpus"), progress=False)
    assert run.metrics["files_done"] == 0 and run.metrics["files_failed"] == 1 and run.transcript.text == ""
    loaded = wk.load_run(wk.save(run, tmp_path / "run"))
    assert "notes.wav" in next(iter(loaded.corpus.failures)) and loaded.transcript.prepare_seconds == 0.0
    wk.report(loaded, tmp_path / "report.html")
    assert "nothing transcribed: 1 file(s) failed" in (tmp_path / "report.html").read_text()
