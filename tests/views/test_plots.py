"""Figures from real runs of the bundled model on a short clip (recorded as without a GPU, see
conftest.cpu_only); GPU panels from a synthetic GPU timeline, the same on every machine."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import whisperkit as wk
from whisperkit.experiments import metrics
from whisperkit.experiments.results import Sweep, SweepPoint
from whisperkit.views import plots

PHASES = ("load", "prepare", "decode")


@pytest.fixture(scope="module")
def gpu_comparison(clip_comparison):
    return dataclasses.replace(clip_comparison, before=with_gpu(clip_comparison.before), after=with_gpu(clip_comparison.after))


def with_gpu(run, seed: int = 0):
    """A copy of ``run`` as if NVML had seen one 24 GiB GPU: idle until ``decode``, then busy."""
    rng = np.random.default_rng(seed)
    timeline = run.timeline.copy()
    time_s = timeline["time_s"].to_numpy()
    decode_s = float(run.marks.loc[run.marks["label"] == "decode", "time_s"].iloc[0])
    busy = time_s >= decode_s
    timeline["gpu0_util_percent"] = np.where(busy, rng.uniform(85, 100, len(time_s)), rng.uniform(0, 3, len(time_s)))
    timeline["gpu0_mem_util_percent"] = np.where(busy, rng.uniform(30, 60, len(time_s)), 0.0)
    timeline["gpu0_mem_used_mb"] = np.where(busy, 8400.0, 3200.0)
    timeline["gpu0_mem_total_mb"] = 24576.0
    timeline["gpu0_power_w"] = np.where(busy, 260.0, 60.0)
    timeline["gpu0_sm_clock_mhz"] = 1755.0
    timeline["gpu0_temperature_c"] = 55.0
    timeline["gpu0_process_util_percent"] = timeline["gpu0_util_percent"] * 0.95
    steps = np.diff(time_s, prepend=time_s[0])
    timeline["gpu0_energy_j"] = 1000.0 + np.cumsum(timeline["gpu0_power_w"].to_numpy() * steps)  # joules
    metrics = {
        **run.metrics,
        "mean_gpu_util_percent": float(timeline.loc[busy, "gpu0_util_percent"].mean()),
        "peak_gpu_mem_mb": 8400.0,
    }
    gpu = {"index": 0, "name": "NVIDIA L4", "uuid": "GPU-0", "memory_total_mb": 24576.0,
           "memory_free_mb": 21000.0, "driver_version": "550.54.15", "cuda_driver_version": "12.4"}
    environment = {**run.environment, "gpus": [gpu], "gpu_unavailable_reason": None}
    result = dataclasses.replace(run, utilization=dataclasses.replace(run.utilization, timeline=timeline), metrics=metrics, environment=environment,
                                 gpu_unavailable_reason=None)
    from whisperkit.experiments.metrics import compute_metrics

    result.metrics["gpu_energy_j_per_audio_hour"] = compute_metrics(result)["gpu_energy_j_per_audio_hour"]
    return result


def traces(fig, run, prefix: str = ""):
    """Timeline traces of one run whose column starts with ``prefix``, by column."""
    return {t.meta["column"]: t for t in fig.data
            if t.meta and t.meta.get("run") == run.label and t.meta["column"].startswith(prefix)}


def note_text(fig) -> str | None:
    notes = [a.text for a in fig.layout.annotations if a.name == "no-gpu-note"]
    return notes[0].replace("<br>", " ") if notes else None


# ---- timeline ----------------------------------------------------------------------------


def test_timeline_draws_both_runs_cpu_on_their_own_time(clip_comparison):
    fig = plots.timeline(clip_comparison)
    for run in (clip_comparison.before, clip_comparison.after):
        cpu = traces(fig, run)
        assert set(cpu) == {"cpu_percent", "process_cpu_percent"}
        for column, trace in cpu.items():
            np.testing.assert_array_equal(trace.x, run.timeline["time_s"].to_numpy())
            np.testing.assert_array_equal(trace.y, run.timeline[column].to_numpy(dtype=float))
        assert trace.hovertemplate.count("%") >= 2  # value and unit
    assert fig.layout.template.layout.paper_bgcolor == "white"  # plotly_white
    speedup = clip_comparison.speedup  # a short clip: either side may win on a busy machine
    expected = f"{speedup:.2f}x faster" if speedup >= 1 else f"{1 / speedup:.2f}x slower"
    assert expected in fig.layout.title.text


def test_timeline_rows_share_one_time_axis(clip_comparison):
    fig = plots.timeline(clip_comparison)
    assert fig.layout.xaxis.matches == "x2" and fig.layout.xaxis2.matches is None  # two CPU rows, no GPU rows
    assert "(s)" in fig.layout.xaxis2.title.text
    assert [a.text for a in fig.layout.annotations if a.text.startswith("<b>")] == [
        f"<b>{clip_comparison.before.label}</b> · CPU", f"<b>{clip_comparison.after.label}</b> · CPU"]


def test_timeline_marks_each_phase_of_each_run(clip_comparison):
    fig = plots.timeline(clip_comparison)
    for row, run in enumerate((clip_comparison.before, clip_comparison.after), start=1):
        axis = "x" if row == 1 else f"x{row}"
        regions = {s.name: s for s in fig.layout.shapes if s.xref == axis and s.type == "rect"}
        marks = dict(zip(run.marks["label"], run.marks["time_s"]))
        assert set(PHASES) <= set(regions)
        for label in PHASES:
            assert regions[label].x0 == pytest.approx(marks[label])
    labels = [a.name for a in fig.layout.annotations if a.name and a.name.startswith("phase: ")]
    assert sorted(labels) == sorted(f"phase: {label}" for label in PHASES for _ in range(2))
    prepare = next(a for a in fig.layout.annotations if a.name == "phase: prepare")
    assert "CPU only" in prepare.hovertext


def test_timeline_without_gpu_says_why_and_draws_no_gpu_panel(clip_comparison):
    fig = plots.timeline(clip_comparison)
    assert clip_comparison.before.gpu_unavailable_reason  # recorded as without a GPU
    text = note_text(fig)
    assert text.startswith("No GPU visible: ")
    assert clip_comparison.before.gpu_unavailable_reason.rstrip(". ") in text
    assert "NVML utilization" in text
    assert not any(t.meta["column"].startswith("gpu") for t in fig.data)
    assert "GPU" not in " ".join(a.text for a in fig.layout.annotations if a.text.startswith("<b>"))


def test_timeline_with_gpu_draws_utilization_and_memory(gpu_comparison):
    fig = plots.timeline(gpu_comparison)
    assert note_text(fig) is None
    for run in (gpu_comparison.before, gpu_comparison.after):
        gpu = traces(fig, run, "gpu")
        assert set(gpu) == {"gpu0_util_percent", "gpu0_mem_used_mb"}
        np.testing.assert_array_equal(gpu["gpu0_util_percent"].y, run.timeline["gpu0_util_percent"].to_numpy())
        assert gpu["gpu0_mem_used_mb"].yaxis != gpu["gpu0_util_percent"].yaxis  # memory on the right axis
        assert "MiB" in gpu["gpu0_mem_used_mb"].hovertemplate
    assert len(fig.layout.annotations) and sum("GPU (NVML)" in a.text for a in fig.layout.annotations) == 2
    titles = [getattr(fig.layout, name).title.text for name in fig.layout if name.startswith("yaxis")]
    assert "GPU utilization %" in titles and "GPU memory MiB" in titles


def test_timeline_names_the_run_without_gpu_when_only_one_has_one(clip_comparison, gpu_comparison):
    fig = plots.timeline([gpu_comparison.before, clip_comparison.after])
    assert f"No GPU visible in {clip_comparison.after.label}: " in note_text(fig)
    assert traces(fig, gpu_comparison.before, "gpu") and not traces(fig, clip_comparison.after, "gpu")


def test_timeline_of_one_run_and_the_memory_panel(clip_comparison):
    run = clip_comparison.after
    fig = plots.timeline(run, metrics=("cpu", "memory"))
    assert set(traces(fig, run)) == {"cpu_percent", "process_cpu_percent", "process_rss_mb"}
    assert note_text(fig) is None  # no GPU panel was asked for
    assert "RTFx" in fig.layout.title.text
    with pytest.raises(wk.WhisperkitError, match="cpu, gpu, memory"):
        plots.timeline(run, metrics=["disk"])
    with pytest.raises(wk.WhisperkitError, match="a Run, a Comparison"):
        plots.timeline("not a run")


# ---- summary -----------------------------------------------------------------------------


def test_summary_bars_carry_the_metrics(clip_comparison):
    fig = plots.summary(clip_comparison)
    for run in (clip_comparison.before, clip_comparison.after):
        bars = [t for t in fig.data if t.meta["run"] == run.label]
        values = {key: y for t in bars for key, y in zip(t.meta["metrics"], t.y)}
        for key in ("rtfx", "mean_cpu_percent", "mean_process_cpu_percent", "peak_rss_mb"):
            assert values[key] == pytest.approx(run.metrics[key])
        assert "mean_gpu_util_percent" not in values and "peak_gpu_mem_mb" not in values
    assert {t.marker.color for t in fig.data if t.meta["run"] == clip_comparison.before.label} == {plots.RUN_COLORS[0]}
    assert [a.text for a in fig.layout.annotations if a.name is None] == ["throughput", "CPU", "peak memory"]
    # bar labels and decimals come from the metrics registry
    first = next(t for t in fig.data if t.meta["run"] == clip_comparison.before.label and "rtfx" in t.meta["metrics"])
    assert list(first.x) == [metrics.metric("rtfx").label]
    assert list(first.text) == [f"{clip_comparison.before.metrics['rtfx']:.{metrics.metric('rtfx').digits}f}"]
    assert note_text(fig).startswith("No GPU visible: ")


def test_summary_with_gpu_has_gpu_bars(gpu_comparison):
    fig = plots.summary(gpu_comparison)
    after = gpu_comparison.after
    values = {key: y for t in fig.data if t.meta["run"] == after.label for key, y in zip(t.meta["metrics"], t.y)}
    assert values["mean_gpu_util_percent"] == pytest.approx(after.metrics["mean_gpu_util_percent"])
    assert values["peak_gpu_mem_mb"] == 8400.0
    assert note_text(fig) is None


# ---- sweep -------------------------------------------------------------------------------


def test_sweep_plots_rtfx_on_a_log_axis_and_marks_the_best(clip_sweep):
    fig = plots.sweep(clip_sweep)
    rtfx = next(t for t in fig.data if t.meta["series"] == "rtfx")
    assert list(rtfx.x) == [1, 4]
    assert list(rtfx.y) == pytest.approx([p.rtfx for p in clip_sweep.points])
    best = next(t for t in fig.data if t.meta["series"] == "best")
    assert list(best.x) == [clip_sweep.best]
    assert fig.layout.xaxis.type == "log" and list(fig.layout.xaxis.tickvals) == [1, 4]
    assert f"Batch-size sweep<br><sup>{clip_sweep.verdict[:1].upper()}" in fig.layout.title.text
    assert note_text(fig).startswith("No GPU visible: ")


def test_sweep_marks_out_of_memory_points():
    points = [
        SweepPoint(4, 52.0, 1.5, 1000.0, 5600.0, 80.0, 78.0),
        SweepPoint(8, 61.0, 1.3, 1050.0, 9000.0, 85.0, 92.0),
        SweepPoint(16, 58.0, 1.4, 1100.0, 16000.0, 85.0, 95.0, oom=True),
        SweepPoint(32, math.nan, math.nan, math.nan, None, math.nan, None, oom=True),
    ]
    fig = plots.sweep(Sweep(points=points, stopped_because="out of memory at batch size 32"))
    oom = next(t for t in fig.data if t.meta["series"] == "oom")
    assert list(oom.x) == [16, 32] and list(oom.y) == [58.0, 0.0]
    assert list(next(t for t in fig.data if t.meta["series"] == "best").x) == [8]
    assert any(t.meta["series"] == "peak_gpu_mem_mb" for t in fig.data)
    best_line = [s for s in fig.layout.shapes if s.name == "best"]
    assert best_line and best_line[0].x0 == 8  # shapes take data values on a log axis
    assert "out of memory at batch size 32" in fig.layout.title.text
