"""Experiments on the real bundled model and speech: compare, sweep, autotune, runs on disk."""

from __future__ import annotations

import json
import math

import pytest

import whisperkit as wk
from whisperkit.core import batching
from whisperkit.core.config import Config
from whisperkit.core.samples import sample_path
from whisperkit.experiments import metrics, results, runners
from whisperkit.measure.utilization import Utilization

try:
    from tests import machine
except ImportError:
    import machine

CLIP = "aesop_03"  # 5.8 s, one chunk


@pytest.fixture(scope="module")
def comparison():
    """The seed's comparison on the 79 s sample: the demo's own job."""
    return wk.compare(sample_path(), progress=False)


@pytest.fixture(scope="module")
def small_sweep():
    return wk.sweep(sample_path(), batch_sizes=[1, 4], progress=False)


def test_seed_configurations_are_the_notes_own():
    assert (wk.SEED_BEFORE.mode, wk.SEED_BEFORE.num_workers) == ("sequential", 24)
    assert (wk.SEED_AFTER.mode, wk.SEED_AFTER.num_workers, wk.SEED_AFTER.batch_size) == ("batched", 6, "auto")


def test_comparison_measures_both_sides(comparison):
    before, after = comparison.before, comparison.after
    assert before.transcript.config["mode"] == "sequential" and before.transcript.config["num_workers"] == 24
    assert after.transcript.config["mode"] == "batched"
    if after.transcript.config["device"] == "cpu":
        assert after.transcript.config["batch_size"] == batching.CPU_BATCH_SIZE  # auto on the CPU
    assert comparison.speedup == pytest.approx(before.transcript.wall_seconds / after.transcript.wall_seconds)
    assert comparison.wer_between < 0.08
    assert comparison.wer_vs_reference["before"] < 0.12 and comparison.wer_vs_reference["after"] < 0.12
    for run in (before, after):
        assert run.metrics["peak_rss_mb"] > 100 and 0 < run.metrics["rss_growth_mb"] < run.metrics["peak_rss_mb"]
        assert 0 < run.metrics["mean_process_cpu_percent"] <= 100
        if machine.has_nvml_gpu():
            assert run.metrics["mean_gpu_util_percent"] >= 0 and run.metrics["peak_gpu_mem_mb"] > 0
            assert run.gpu_unavailable_reason is None
        else:
            assert run.metrics["mean_gpu_util_percent"] is None and run.metrics["peak_gpu_mem_mb"] is None
            assert run.gpu_unavailable_reason.startswith(machine.nvml_gpus()[1])
        assert list(run.marks["label"]) == ["load", "prepare", "decode"]
    # each side loaded its own model (the cache is cleared between sides)
    assert before.metrics["load_seconds"] > 0 and after.metrics["load_seconds"] > 0


def test_comparison_shows_every_setting_that_differs(comparison):
    differing = {d["setting"]: (d["before"], d["after"]) for d in comparison.differences}
    assert differing["mode"] == ("sequential", "batched")
    assert differing["num_workers"] == (24, 6)
    assert differing["vad_filter"] == (False, True)
    assert differing["without_timestamps"] == (False, True)
    assert differing["condition_on_previous_text"] == (True, False)
    assert "fallback" in differing["temperature"][0] and "no fallback" in differing["temperature"][1]
    assert differing["no_speech_threshold"] == (0.6, "ignored")
    assert "beam_size" not in differing and "model" not in differing
    seq_cut, batched_cut = differing["segmentation"]  # the two pipelines cut the audio differently
    assert seq_cut.startswith("30 s windows over the whole audio") and batched_cut.startswith("4 chunk(s)")


def test_matched_comparison_leaves_batching_as_the_difference():
    matched = wk.compare(sample_path(CLIP), matched=True, progress=False)
    differing = {d["setting"] for d in matched.differences}
    assert {"vad_filter", "without_timestamps", "condition_on_previous_text", "temperature"}.isdisjoint(differing)
    assert {"mode", "batch_size", "num_workers"} <= differing
    assert matched.wer_between == 0.0  # one chunk, same decoding: the same words
    assert matched.before.config.options["vad_filter"] is True
    assert matched.to_dict()["matched"] is True


def test_matched_comparison_decodes_the_same_chunks_on_both_sides():
    matched = wk.compare(sample_path(), matched=True, progress=False)
    before, after = matched.before.transcript, matched.after.transcript
    assert matched.before.config.segmentation == "batched"
    assert before.chunks == after.chunks == 4  # the sequential pipeline alone cuts 3 windows here
    for mine, theirs in zip(before.chunk_spans, after.chunk_spans, strict=True):  # theirs: the pipeline's output
        assert mine == pytest.approx(theirs, abs=0.02)
    differing = {d["setting"] for d in matched.differences}
    assert "segmentation" not in differing and differing <= {"mode", "batch_size", "num_workers"}
    assert matched.wer_between < 0.03  # same chunks, same decoding: features differ only at chunk edges
    assert "shall not perish from the earth" in before.text


def test_repeats_alternate_and_use_medians():
    result = wk.compare(sample_path(CLIP), repeats=3, progress=False)
    assert len(result.before_runs) == len(result.after_runs) == 3
    walls = sorted(r.transcript.wall_seconds for r in result.before_runs)
    assert result.before.transcript.wall_seconds == walls[1]
    assert result.to_dict()["before"]["repeat_wall_seconds"] == [r.transcript.wall_seconds for r in result.before_runs]


def test_run_records_environment(comparison):
    env = comparison.after.environment
    assert env["cpu_logical_cores"] >= 1 and env["memory_total_mb"] > 1000 and env["cpu_model"]
    gpus, reason = machine.nvml_gpus()
    assert [gpu["name"] for gpu in env["gpus"]] == [gpu["name"] for gpu in gpus]
    assert env["gpu_unavailable_reason"] == reason
    assert (env["cuda_unusable_reason"] is None) == machine.cuda_usable()
    assert env["versions"]["whisperkit"] == wk.__version__
    assert env["versions"]["ctranslate2"] and env["versions"]["faster-whisper"]


def test_reference_from_text_file_or_string(tmp_path):
    reference = tmp_path / "ref.txt"
    reference.write_text("Slow and steady wins the race.")
    by_file = wk.run(sample_path("aesop_02"), Config(), reference=reference, progress=False)
    by_text = wk.run(sample_path("aesop_02"), Config(), reference="completely different words", progress=False)
    assert by_file.metrics["wer_vs_reference"] == 0.0
    assert by_text.metrics["wer_vs_reference"] >= 0.9
    with pytest.raises(wk.WhisperkitError, match="cannot read reference"):
        wk.run(sample_path("aesop_02"), Config(), reference=tmp_path / "missing.txt", progress=False)


def test_sweep_points(small_sweep):
    points = small_sweep.points
    assert [p.batch_size for p in points] == [1, 4]
    assert all(p.rtfx > 1 and not p.oom for p in points)
    assert small_sweep.best == max(points, key=lambda p: p.rtfx).batch_size
    assert [r.transcript.config["batch_size"] for r in small_sweep.runs] == [1, 4]
    assert all(p.rtfx == pytest.approx(r.metrics["rtfx"]) for p, r in zip(points, small_sweep.runs))
    data = small_sweep.to_dict()
    assert data["best"] == small_sweep.best and len(data["points"]) == 2 and set(data["points"][0]) == {
        "batch_size", "rtfx", "wall_seconds", "peak_rss_mb", "peak_gpu_mem_mb", "mean_cpu_percent",
        "mean_gpu_util_percent", "oom"}


def test_sweep_rejects_bad_batch_sizes():
    with pytest.raises(wk.WhisperkitError, match="batch sizes"):
        wk.sweep(sample_path(CLIP), batch_sizes=[4, 0])


def test_autotune_stops_when_the_batch_holds_every_chunk():
    result = wk.autotune(sample_path(), progress=False)
    chunks = result.runs[0].transcript.chunks
    assert chunks == 4  # VAD cuts the 79 s sample into four chunks of up to 30 s
    sizes = [p.batch_size for p in result.points]
    assert sizes == [1, 2, 4][: len(sizes)] and sizes[-1] <= chunks
    assert "speech chunk" in result.stopped_because or "less than 5 %" in result.stopped_because
    assert result.best in sizes


def test_autotune_stops_when_throughput_stops_rising(monkeypatch):
    """Throughput that stops rising ends the search (timings injected: real ones are noisy)."""
    measured = {1: 10.0, 2: 18.0, 4: 18.5}

    def step(result, audio, config, interval, progress, on_start, on_run):
        point = results.SweepPoint(config.batch_size, measured[config.batch_size], 1.0, 300.0, None, 50.0, None)
        result.points.append(point)
        result.runs.append(results.Run(config, wk.Transcript([], "en", 60.0, 1.0, chunks=16), {}, Utilization.empty(), {}))
        return point

    monkeypatch.setattr(runners, "_sweep_step", step)
    result = wk.autotune(sample_path(CLIP))
    assert [p.batch_size for p in result.points] == [1, 2, 4]
    assert result.stopped_because.startswith("throughput rose 2.8 % from batch size 2 to 4, less than 5 %")
    assert result.best == 4


def test_sweep_records_out_of_memory(fail_above):
    """CTranslate2's out-of-memory error injected at the encoder call of every WhisperModel."""
    from faster_whisper import WhisperModel

    fail_above(WhisperModel, "encode", 2, "CUDA failed with error out of memory")
    result = wk.sweep(sample_path(), batch_sizes=[2, 4], config=Config(), progress=False)
    assert [p.oom for p in result.points] == [False, True]
    assert result.runs[1].transcript.batch_retries[0]["batch_size"] == 4
    assert result.best == 2  # a batch size that ran out of memory is never the best


def test_run_round_trips_through_disk(comparison, tmp_path):
    folder = wk.save(comparison.after, tmp_path / "after")
    loaded = wk.load_run(folder)
    assert loaded.transcript.text == comparison.after.transcript.text
    assert loaded.transcript.segments == comparison.after.transcript.segments
    assert loaded.config == comparison.after.config
    assert loaded.metrics == comparison.after.metrics
    assert list(loaded.marks["label"]) == ["load", "prepare", "decode"]
    assert loaded.timeline.equals(comparison.after.timeline)
    assert not list(tmp_path.rglob("*.tmp*"))
    assert [r.label for r in wk.load_runs(tmp_path)] == [comparison.after.label]


def test_damaged_and_foreign_run_folders(comparison, tmp_path):
    folder = tmp_path / "run"
    wk.save(comparison.before, folder)
    (folder / "run.json").write_text("{ not json")
    with pytest.raises(wk.RunError, match="damaged, not valid JSON"):
        wk.load_run(folder)
    (folder / "run.json").write_text(json.dumps({"kind": "something else"}))
    with pytest.raises(wk.RunError, match="not a whisperkit run"):
        wk.load_run(folder)
    wk.save(comparison.before, folder)
    (folder / "timeline.parquet").write_bytes(b"garbage")
    with pytest.raises(wk.RunError, match="timeline.parquet: damaged"):
        wk.load_run(folder)
    with pytest.raises(wk.RunError, match="no run.json"):
        wk.load_run(tmp_path)
    with pytest.raises(wk.RunError, match="no such folder"):
        wk.load_runs(tmp_path / "nowhere")


def test_recommend_batch_size_memory_model():
    sizes = ["tiny", "base", "small", "medium", "large-v3"]
    memories = [2, 4, 6, 8, 12, 16, 24, 40, 80]
    for model in sizes:
        picks = [wk.recommend_batch_size(model, "float16", memory_gb=m) for m in memories]
        assert picks == sorted(picks), (model, picks)  # more memory never a smaller batch
        assert all(1 <= p <= batching.MAX_RECOMMENDED_BATCH_SIZE and p & (p - 1) == 0 for p in picks)
    for memory in memories:
        picks = [wk.recommend_batch_size(model, "float16", memory_gb=memory) for model in sizes]
        assert picks == sorted(picks, reverse=True), (memory, picks)  # larger model never a larger batch
    assert wk.recommend_batch_size("large-v3", "float16", memory_gb=8.0) == 8
    assert wk.recommend_batch_size("large-v3", "int8_float16", memory_gb=8.0) >= 8
    assert wk.recommend_batch_size("large-v3", "float16", memory_gb=4.0) == 1
    assert wk.recommend_batch_size("tiny", "float16", device="cpu") == batching.CPU_BATCH_SIZE
    # the published figures the model is checked against: tests/core/test_memory_model.py
    # the encoder's attention scores: 20 heads x 1500 x 1500 x 2 bytes, whatever the decoder
    for model in ("large-v3", "turbo", "distil-large-v3"):
        assert batching.attention_scores_mb(model, "float16") == pytest.approx(85.8, abs=0.1)
        assert batching.per_item_mb(model, "float16") > 100
    assert wk.recommend_batch_size("turbo", "float16", memory_gb=8.0) == 32  # not 64 on 8 GB
    assert wk.recommend_batch_size("distil-large-v3", "float16", memory_gb=8.0) == 32
    with pytest.raises(wk.ConfigError):
        wk.recommend_batch_size("small", "float16", memory_gb=0)


def test_recommend_asks_nvml_for_free_memory(monkeypatch):
    import sys

    from fake_pynvml import a100, make_fake

    monkeypatch.setitem(sys.modules, "pynvml", make_fake([a100()]))
    free_gb = batching.free_gpu_memory_gb()
    assert free_gb == pytest.approx(40 - 4.5)  # the fake A100 has 4.5 of 40 GiB in use
    assert wk.recommend_batch_size("large-v3", "float16") == wk.recommend_batch_size(
        "large-v3", "float16", memory_gb=free_gb)


def test_auto_batch_size_for_a_loaded_model_does_not_count_its_weights_twice(monkeypatch):
    import sys

    from fake_pynvml import a100, make_fake

    monkeypatch.setitem(sys.modules, "pynvml", make_fake([a100(memory_used_bytes=38 * 2**30)]))  # 2 GiB free
    loaded = wk.Model(whisper=None, name="large-v3", path="", device="cuda", compute_type="float16")
    free_gb = batching.free_gpu_memory_gb()
    assert free_gb == pytest.approx(2.0)
    # counting the 3 GB of weights again would leave nothing: batch size 1
    assert wk.recommend_batch_size("large-v3", "float16", memory_gb=free_gb) == 1
    assert batching.recommend_for_model(loaded) == wk.recommend_batch_size(
        "large-v3", "float16", memory_gb=free_gb, weights_loaded=True) == 2


def test_recommend_without_nvml_falls_back_to_the_cpu_choice(monkeypatch):
    import sys

    import pynvml
    from fake_pynvml import make_fake

    monkeypatch.setitem(sys.modules, "pynvml", make_fake(init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND))
    assert batching.free_gpu_memory_gb() is None
    assert wk.recommend_batch_size("large-v3", "float16") == batching.CPU_BATCH_SIZE


def test_architecture_from_names_and_folders():
    assert batching.architecture("large-v3-turbo").decoder_layers == 4
    assert batching.architecture("/models/faster-whisper-small.en").d_model == 768
    assert batching.architecture("distil-large-v3").decoder_layers == 2
    assert batching.architecture("/some/unknown/folder") == batching.ARCHITECTURES["large"]
    assert not math.isnan(batching.weights_mb("tiny.en", "int8"))


def test_gpu_metrics_come_from_the_models_gpu_else_the_busiest_during_transcription(comparison):
    import dataclasses

    run = comparison.after
    timeline = run.timeline.copy()
    decoding = timeline["time_s"] >= float(run.marks.loc[run.marks["label"] == "prepare", "time_s"].iloc[0])
    timeline["gpu0_util_percent"] = 5.0
    timeline["gpu1_util_percent"] = 0.0
    timeline.loc[decoding, "gpu1_util_percent"] = 90.0  # busy only while transcribing
    timeline["gpu0_mem_used_mb"] = 800.0
    timeline["gpu1_mem_used_mb"] = float("nan")  # memory not supported on this one
    timeline["gpu0_energy_j"] = 1000.0 + 100.0 * timeline["time_s"]  # a steady 100 W
    timeline["gpu1_energy_j"] = float("nan")  # no energy counter (before Volta)
    environment = {**run.environment, "model_gpu": None}
    sampled = dataclasses.replace(run.utilization, timeline=timeline)
    unknown = dataclasses.replace(run.transcript, config={**run.transcript.config, "nvml_index": None})
    computed = metrics.compute_metrics(dataclasses.replace(run, utilization=sampled, transcript=unknown, environment=environment))
    assert computed["mean_gpu_util_percent"] == pytest.approx(90.0)  # the busiest; model load excluded
    assert computed["peak_gpu_mem_mb"] == 800.0
    assert math.isnan(computed["gpu_energy_j_per_audio_hour"])  # all GPUs, one without a counter
    # the model ran on NVML GPU 0: another tenant's busy GPU 1 does not count
    on_gpu0 = dataclasses.replace(run.transcript, config={**run.transcript.config, "nvml_index": 0})
    computed = metrics.compute_metrics(dataclasses.replace(run, utilization=sampled, transcript=on_gpu0, environment=environment))
    assert computed["mean_gpu_util_percent"] == pytest.approx(5.0) and computed["peak_gpu_mem_mb"] == 800.0
    seconds = timeline.loc[decoding, "time_s"]
    expected = 100.0 * (seconds.iloc[-1] - seconds.iloc[0]) / run.transcript.audio_seconds * 3600
    assert computed["gpu_energy_j_per_audio_hour"] == pytest.approx(expected)
    from_environment = {**environment, "model_gpu": {"nvml_index": 1}}
    computed = metrics.compute_metrics(dataclasses.replace(run, utilization=sampled, transcript=unknown, environment=from_environment))
    assert computed["mean_gpu_util_percent"] == pytest.approx(90.0) and computed["peak_gpu_mem_mb"] is None


def test_every_computed_metric_is_in_the_registry(clip_comparison):
    registered = {m.key for m in metrics.METRICS}
    for run in (clip_comparison.before, clip_comparison.after):
        assert set(run.metrics) == registered
    shown = {m.label for m in metrics.METRICS if not m.corpus_only}  # not a corpus run
    assert set(run.table()["value"].index) == {"configuration", *shown}
