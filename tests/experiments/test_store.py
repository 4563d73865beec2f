"""Saved runs (:mod:`whisperkit.experiments.store`): a damaged run is "damaged" (exit 2), never an
internal error, and no run of an experiment is written over another."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

import whisperkit as wk
from whisperkit.core.samples import sample_path


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs") / "run"
    wk.save(wk.run(sample_path("aesop_02"), wk.Config(device="cpu"), progress=False), folder)
    return folder


def damage_environment(folder):
    document = json.loads((folder / "run.json").read_text())
    document["environment"]["gpus"] = "NVIDIA H100"
    (folder / "run.json").write_text(json.dumps(document))


def drop_time(folder):
    timeline = pd.read_parquet(folder / "timeline.parquet")
    timeline.drop(columns=["time_s"]).to_parquet(folder / "timeline.parquet", index=False)


def time_as_text(folder):
    timeline = pd.read_parquet(folder / "timeline.parquet")
    timeline["time_s"] = [f"{value:.2f} s" for value in timeline["time_s"]]
    timeline.to_parquet(folder / "timeline.parquet", index=False)


@pytest.mark.parametrize("damage, words", [
    (damage_environment, "run.json: damaged, its environment's gpus are str, not a list of GPUs"),
    (drop_time, "timeline.parquet: damaged, it has no time_s column"),
    (time_as_text, "timeline.parquet: damaged, its column time_s holds text, not numbers"),
])
def test_report_and_diagnose_of_a_damaged_run_say_damaged_and_exit_2(saved_run, tmp_path, cli, damage, words):
    folder = tmp_path / "run"
    shutil.copytree(saved_run, folder)
    damage(folder)
    with pytest.raises(wk.RunError, match=words):
        wk.load_run(folder)
    for command in (["report", str(folder), "--output", str(tmp_path / "r.html")], ["diagnose", str(folder)]):
        result = cli(*command, timeout=120)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.strip().splitlines() == [f"whisperkit: error: {folder}/{words}"]
    assert not (tmp_path / "r.html").exists()


def test_a_sweep_with_a_batch_size_twice_is_refused_and_save_never_overwrites_a_point(saved_run, tmp_path, cli):
    result = cli("sweep", sample_path("aesop_02"), "--batch-sizes", "1,4,1", "--output-dir", str(tmp_path / "s"),
                 timeout=60)
    assert result.returncode == 2 and "batch size 1 given twice in '1,4,1'; give each once" in result.stderr
    assert not (tmp_path / "s").exists()
    from whisperkit.experiments.results import Sweep

    run = wk.load_run(saved_run)
    first, second = (dataclasses.replace(run, started_at=f"2026-01-01T00:00:0{n}") for n in (1, 2))
    wk.save(Sweep(points=[], runs=[first, second]), tmp_path / "sweep")  # one batch size measured twice
    size = run.config.batch_size
    assert sorted(p.name for p in (tmp_path / "sweep" / "runs").iterdir()) == [f"batch-{size:03d}", f"batch-{size:03d}-2"]
    assert [r.started_at for r in wk.load_runs(tmp_path / "sweep" / "runs")] == [first.started_at, second.started_at]


# a corpus run saved by whisperkit before Utilization and Settings (its sampler's reasons in the
# environment, each config a plain dict): hand-built, no model, two files done, one failed
SAVED_BEFORE = Path(__file__).parent / "saved_runs" / "corpus-0.x"


def test_a_corpus_run_saved_by_an_earlier_version_loads_and_saves_again(tmp_path):
    from whisperkit.core.config import Settings

    run = wk.load_run(SAVED_BEFORE)
    assert run.utilization.column_reasons == {"gpu0_sm_active_percent": "no GPM on this GPU"}
    assert run.utilization.process_gpu_unavailable_reason == "no GPU"
    assert list(run.marks["label"]) == ["load", "prepare"] and run.timeline is run.utilization.timeline
    assert isinstance(run.transcript.config, Settings) and run.transcript.config["batch_size"] == 3
    assert run.corpus.transcripts["b.flac"].config.get("batch_size") == 3 and run.label == "corpus, packed, batch 3"
    wk.save(run, tmp_path / "again")
    document = json.loads((tmp_path / "again" / "run.json").read_text())
    assert document["utilization"]["column_reasons"] == run.utilization.column_reasons
    assert [mark["label"] for mark in document["marks"]] == ["load", "prepare"]  # where earlier versions read them
    again = wk.load_run(tmp_path / "again")
    assert again.utilization.column_reasons == run.utilization.column_reasons and again.marks.equals(run.marks)
    assert again.transcript.config == run.transcript.config and again.corpus.stage_table().equals(run.corpus.stage_table())


def test_the_stage_table_shows_the_same_numbers_in_the_dataframe_and_the_report(tmp_path):
    from whisperkit.core.corpus.tables import STAGE_COLUMNS
    from whisperkit.views.tables import STAGE_HEADER, stage_rows

    corpus = wk.load_run(SAVED_BEFORE).corpus
    table = corpus.stage_table()
    assert table.loc["read", "busy_seconds"] == 0.46 and table.loc["model", "busy_percent"] == 61.7
    assert STAGE_HEADER == [column.label for column in STAGE_COLUMNS]
    for row in stage_rows(corpus):
        for column, cell in zip(STAGE_COLUMNS[1:], row[1:]):
            assert float(cell.replace(",", "")) == table.loc[row[0], column.key], (row[0], column.key)
    page = wk.report(wk.load_run(SAVED_BEFORE), tmp_path / "r.html")
    assert "<td>0.46</td>" in Path(page).read_text(encoding="utf-8")


def test_a_corpus_run_as_one_transcript_keeps_each_files_words_in_order():
    run = wk.load_run(SAVED_BEFORE)
    corpus = run.corpus
    whole = corpus.as_transcript("a.flac, b.flac")
    assert whole.to_dict() == run.transcript.to_dict()  # as the earlier version recorded it
    assert whole.text == "The fox. Grapes. The crow." and whole.audio_path == "a.flac, b.flac"
    assert [s.start for s in whole.segments] == [0.0, 2.5, 0.0]  # each file's own times
    assert whole.prepare_seconds == corpus.first_batch_seconds == 0.5 and whole.chunks == corpus.windows == 2
    assert whole.prepare_seconds + whole.decode_seconds + whole.retry_seconds == pytest.approx(whole.wall_seconds)
    assert whole.warnings == ["b.flac: quiet", "c.flac: unreadable"] and whole.config is corpus.config
    assert whole.batch_retries == corpus.batch_retries and whole.batch_retries is not corpus.batch_retries
