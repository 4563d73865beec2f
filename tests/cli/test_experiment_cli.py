"""compare, sweep, report and demo from a terminal, end to end."""

from __future__ import annotations

import json

import pytest

from whisperkit.core.samples import sample_path

try:
    from tests import machine
except ImportError:
    import machine

SIDE_KEYS = {"config", "rtfx", "wall_seconds", "load_seconds", "mean_cpu_percent", "mean_process_cpu_percent",
             "mean_gpu_util_percent", "peak_rss_mb", "peak_gpu_mem_mb", "text"}


@pytest.fixture(scope="module")
def compared(cli, tmp_path_factory):
    folder = tmp_path_factory.mktemp("compare")
    result = cli("compare", sample_path("aesop_02"), "--output-dir", str(folder), "--quiet")
    return result, folder


def test_compare_writes_json_report_and_runs(compared):
    result, folder = compared
    assert result.returncode == 0, result.stderr
    data = json.loads((folder / "comparison.json").read_text())
    for side in ("before", "after"):
        assert SIDE_KEYS <= set(data[side])
        assert "slow and steady wins the race" in data[side]["text"].lower()
        if not machine.has_nvml_gpu():
            assert data[side]["mean_gpu_util_percent"] is None and data[side]["peak_gpu_mem_mb"] is None
    assert data["before"]["config"]["num_workers"] == 24 and data["after"]["config"]["mode"] == "batched"
    assert data["speedup"] == pytest.approx(data["before"]["wall_seconds"] / data["after"]["wall_seconds"])
    assert data["wer_between"] == 0.0 and data["wer_vs_reference"] == {"before": 0.0, "after": 0.0}  # .txt beside it
    assert any(d["setting"] == "vad_filter" for d in data["differences"])
    assert (folder / "runs" / "before" / "run.json").is_file() and (folder / "runs" / "after" / "timeline.parquet").is_file()
    assert (folder / "report.html").stat().st_size > 1_000_000  # plotly.js inlined
    assert "speedup" in result.stdout and "report: " in result.stdout and "RTFx" in result.stdout


def test_report_of_saved_runs(cli, compared, tmp_path):
    _, folder = compared
    output = tmp_path / "both.html"
    result = cli("report", str(folder / "runs" / "before"), str(folder / "runs" / "after"), "--output", str(output))
    assert result.returncode == 0, result.stderr
    assert "report of 2 run(s)" in result.stdout
    page = output.read_text()
    assert "before: sequential, num_workers=24" in page and "after: batched" in page


def test_report_of_a_folder_that_holds_no_run(cli, tmp_path):
    result = cli("report", str(tmp_path), "--output", str(tmp_path / "x.html"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"whisperkit: error: {tmp_path}: holds no whisperkit run (no run.json below it)"


def test_sweep_writes_points_and_best(cli, tmp_path):
    result = cli("sweep", sample_path(), "--batch-sizes", "1,4", "--output-dir", str(tmp_path), "--quiet")
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "sweep.json").read_text())
    assert [p["batch_size"] for p in data["points"]] == [1, 4]
    assert data["best"] in (1, 4) and not any(p["oom"] for p in data["points"])
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["batch-001", "batch-004"]
    assert (tmp_path / "report.html").is_file()
    assert f"best batch size: {data['best']}" in result.stdout
    assert data["verdict"] in result.stdout.splitlines()  # the sentence that crowns no size the repeats do not separate


@pytest.mark.parametrize(
    "args, message",
    [
        (["compare", "missing.flac", "--output-dir", "out"], "missing.flac: no such file"),
        (["sweep", "x.flac", "--batch-sizes", "1,0", "--output-dir", "out"], "batch sizes: each must be a whole number from 1 to 256"),
        (["compare", "x.flac", "--repeats", "0", "--output-dir", "out"], "repeats must be a whole number"),
    ],
)
def test_bad_experiment_input_is_one_line(cli, tmp_path, args, message):
    result = cli(*args, cwd=str(tmp_path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr


def test_demo_runs_offline_and_says_where_the_report_is(cli, tmp_path):
    result = cli("demo", "--output-dir", str(tmp_path / "demo"), "--quiet")
    assert result.returncode == 0, result.stderr
    assert f"report: {tmp_path / 'demo' / 'report.html'}" in result.stdout
    assert "speedup" in result.stdout and "WER vs reference" in result.stdout
    assert json.loads((tmp_path / "demo" / "comparison.json").read_text())["audio"].endswith("gettysburg.flac")
