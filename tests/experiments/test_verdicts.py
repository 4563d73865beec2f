"""Verdicts that never crown a value its repeats do not separate, labels that follow the settings,
tables without a bare None. No model: the measurements are written down, as a sweep records them."""

from __future__ import annotations

import math
import statistics

import pytest

from whisperkit.core.config import Config
from whisperkit.core.transcription import Transcript
from whisperkit.experiments.metrics import METRICS
from whisperkit.experiments.results import NO_GPU, Comparison, Run, Sweep, SweepPoint, table_values
from whisperkit.experiments.verdicts import Spread, reconcile_batch_sizes, separated
from whisperkit.measure.utilization import Utilization

AUDIO_S = 60.0


def a_run(wall: float, config: Config | None = None, chunks: int | None = None) -> Run:
    config = config or Config()
    transcript = Transcript([], "en", AUDIO_S, wall, config={"batch_size": config.batch_size}, chunks=chunks)
    return Run(config, transcript, {}, Utilization.empty(), {"rtfx": AUDIO_S / wall, "wall_seconds": wall, "oom_retries": 0})


def a_sweep(rtfx: dict[int, list[float]], chunks: int | None = None) -> Sweep:
    """A sweep whose batch sizes ran at these RTFx values (each point the median)."""
    sweep = Sweep(points=[])
    for size, values in rtfx.items():
        median = statistics.median(values)
        sweep.points.append(SweepPoint(size, median, AUDIO_S / median, 500.0, None, 90.0, None))
        sweep.repeat_rtfx[size] = list(values)
        sweep.runs.append(a_run(AUDIO_S / median, Config(batch_size=size), chunks=chunks))
    return sweep


def a_comparison(before: list[float], after: list[float]) -> Comparison:
    before_runs, after_runs = [a_run(w) for w in before], [a_run(w) for w in after]
    speedup = statistics.median(before) / statistics.median(after)
    return Comparison(before_runs[0], after_runs[0], before_runs, after_runs, speedup, 0.0, None, [])


def test_spread_and_separation():
    assert Spread.of([0.9, 0.8, 1.0]).text("wall_seconds", "s") == "0.90 s (0.80-1.00 over 3 repeats)"
    assert Spread.of([0.9]).text("wall_seconds", "s") == "0.90 s"
    assert not separated([1.0, 1.2, 1.1], [1.15, 1.3, 1.25])  # overlapping ranges
    assert separated([1.0, 1.1], [1.2, 1.3])
    assert not separated([1.0], [2.0])  # one run each: the noise is not known


def test_a_comparison_inside_its_noise_says_so_and_names_no_winner():
    verdict = a_comparison([1.0, 1.3, 1.1], [1.05, 0.95, 1.2]).verdict
    assert verdict.startswith("no difference within noise")
    assert "faster" not in verdict and "slower" not in verdict
    assert "0.95-1.20 over 3 repeats" in verdict  # min, median and max of each side


def test_a_separated_comparison_gives_the_speedup_with_its_spread():
    verdict = a_comparison([2.0, 2.2, 2.1], [1.0, 1.1, 1.05]).verdict
    assert verdict.startswith("after is 2.00x faster (wall 2.10 s (2.00-2.20 over 3 repeats) before")


def test_a_single_run_comparison_is_labelled_quick():
    verdict = a_comparison([2.0], [1.0]).verdict
    assert verdict == "after is 2.00x faster (a single run each: quick mode, noise not measured)"


def test_a_sweep_does_not_crown_the_largest_of_equal_numbers():
    sweep = a_sweep({1: [10, 11, 10.5], 2: [20, 21, 22], 4: [30, 31, 33], 8: [31, 34, 32], 16: [33, 30, 32]})
    assert sweep.fastest == 8 and sweep.tied == [4, 8, 16] and sweep.best == 4
    assert sweep.verdict.startswith("batch sizes 4, 8 and 16 do not differ within noise")
    assert sweep.verdict.endswith("the smallest, 4, needs the least memory")


def test_a_sweep_whose_fastest_stands_out_names_it():
    sweep = a_sweep({1: [10, 11, 10.5], 4: [30, 31, 33], 8: [40, 41, 42]})
    assert sweep.best == sweep.fastest == 8
    assert sweep.verdict.startswith("batch size 8 is fastest (RTFx 41.00 (40.00-42.00 over 3 repeats))")


def test_batch_sizes_that_hold_every_window_do_the_same_work():
    """A corpus of 2 windows: batch sizes 2 to 16 run the same batches, whatever the timer says."""
    sweep = a_sweep({1: [10.0], 2: [20.0], 4: [20.5], 8: [20.2], 16: [21.0]}, chunks=2)
    assert sweep.best == 2 and sweep.tied == [2, 4, 8, 16]
    assert "batch sizes 2, 4, 8 and 16 each hold all 2 chunk(s) in one batch, so they do the same work" in sweep.verdict
    assert "16 is fastest" not in sweep.verdict and "16 was fastest" not in sweep.verdict


def test_a_single_run_sweep_is_labelled_quick():
    sweep = a_sweep({1: [10.0], 2: [20.0]})
    assert sweep.best == 2 and "quick mode, noise not measured" in sweep.verdict


def test_sweep_autotune_and_memory_model_reconciled_in_one_sentence():
    sweep = a_sweep({1: [10, 11, 10.5], 2: [20, 21, 22], 4: [30, 31, 33], 8: [31, 34, 32], 16: [33, 30, 32]})
    tuned = a_sweep({1: [10.0], 2: [20.0]})
    tuned.stopped_because = "throughput rose 2.0 % from batch size 2 to 4, less than 5 %"
    sentence = reconcile_batch_sizes(sweep, tuned, 8)
    assert sentence.count(". ") == 0 and sentence.startswith("They answer different questions")
    assert "4, 8 and 16" in sentence and "autotune chose 2" in sentence and "memory model's 8" in sentence
    assert sentence.endswith("so use batch size 4, the smallest batch as fast as the fastest measured")
    agreeing = reconcile_batch_sizes(sweep, a_sweep({4: [31.0]}), 8)
    assert agreeing.startswith("The sweep, autotune and the memory model agree: batch size 4")
    assert reconcile_batch_sizes(recommended=8) == "The memory model gives batch size 8"


def test_a_label_follows_the_settings_that_changed():
    before = Config(mode="sequential", num_workers=24, label="before: sequential, num_workers=24")
    assert before.replace(num_workers=6).label == "before: sequential, num_workers=6"
    assert before.replace(mode="batched").label == "before: batched, num_workers=24"
    after = Config(batch_size="auto", num_workers=6, label="after: batched, batch size from memory")
    assert after.replace(batch_size=4).label == "after: batched, batch_size=4"
    assert after.replace(num_workers=6).label == after.label  # nothing changed
    assert before.replace(options={"vad_filter": True}).label.endswith(", vad_filter=True")
    assert before.replace(num_workers=6, label="mine").label == "mine"  # a label given is kept
    assert before.replace(model="small", device="cpu").label == before.label  # where it runs: in the settings table
    assert Config(model="small", label="small model").replace(model="base").label == "base model"
    assert Config(device="cpu", label="device=cpu").replace(device="cuda").label == "device=cuda"
    assert Config().replace(num_workers=2).label == ""  # no label: runs describe themselves


def test_a_run_without_a_label_names_what_ran():
    assert a_run(1.0, Config(mode="sequential")).label == "sequential"
    assert a_run(1.0, Config(mode="sequential", num_workers=4)).label == "sequential, num_workers=4"
    assert a_run(1.0, Config(batch_size=4)).label == "batched, batch 4"


def test_a_config_reads_as_its_settings():
    import IPython.lib.pretty

    config = Config(mode="sequential", num_workers=24)
    assert str(config) == "mode=sequential, num_workers=24"
    assert IPython.lib.pretty.pretty(config) == "Config(mode='sequential', num_workers=24)"


def test_tables_say_why_a_value_is_missing_never_none():
    run = a_run(2.0)
    run.metrics.update({"mean_gpu_util_percent": None, "peak_gpu_mem_mb": None, "wer_vs_reference": None})
    values = table_values(run)
    assert values["GPU util %"] == NO_GPU and values["peak GPU MiB"] == NO_GPU
    assert values["WER vs reference"] == "n/a (no reference)" and None not in values.values()
    assert values["RTFx"] == 30.0 and values["wall s"] == 2.0
    assert set(values) == {"configuration", *(m.label for m in METRICS if not m.corpus_only)}
    table = a_sweep({1: [10.0, 11.0], 4: [30.0, 32.0]}).table()
    assert table.index.name == "batch size" and list(table.index) == [1, 4]
    assert list(table.columns[:3]) == ["RTFx", "RTFx min", "RTFx max"] and "batch_size" not in table.columns
    assert set(table["peak GPU MiB"]) == {NO_GPU} and set(table["out of memory"]) == {"no"}
    assert table.loc[4, "wall s"] == pytest.approx(round(AUDIO_S / 31.0, 2))
    assert str(table.loc[1, "peak RSS MiB"]) == "500"  # no "500.0"
    assert not any(isinstance(v, float) and math.isnan(v) for v in table.to_numpy().ravel())


def number(cell: str) -> float:
    return float(cell.replace(",", ""))


def test_the_text_views_show_the_numbers_of_the_dataframes():
    """One builder per table: Run.table() and the report's metric rows, Sweep.table() and its
    rows hold the same values (the registry's decimals), a missing one the same reason."""
    from whisperkit.views.tables import metric_rows, sweep_header, sweep_rows

    run = a_run(3.0)
    run.metrics.update({"peak_rss_mb": 1234.567, "mean_cpu_percent": 51.26, "rss_growth_mb": 0.4, "peak_gpu_mem_mb": None})
    column = run.table()["value"]
    rows = metric_rows([run])
    assert [row[0] for row in rows] == list(column.index[1:])  # after "configuration"
    for label, cell in rows:
        value = column[label]
        assert cell == value if isinstance(value, str) else number(cell) == value, label
    assert column["peak RSS MiB"] == 1235 and column["CPU % (system)"] == 51.3 and column["peak GPU MiB"] == NO_GPU
    sweep = a_sweep({1: [10.0, 11.0, 12.5], 4: [30.0, 32.0]})
    table = sweep.table()
    assert list(table.columns) == sweep_header(sweep)[1:]
    for row in sweep_rows(sweep):
        for label, cell in zip(table.columns, row[1:]):
            value = table.loc[int(row[0]), label]
            assert cell == value if isinstance(value, str) else number(cell) == value, label
    assert table.loc[1, "RTFx min"] == 10.0 and table.loc[4, "RTFx max"] == 32.0
