"""Saved runs (:mod:`whisperkit.experiments.store`): a damaged run is "damaged" (exit 2), never an
internal error, and no run of an experiment is written over another."""

from __future__ import annotations

import dataclasses
import json
import shutil

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
