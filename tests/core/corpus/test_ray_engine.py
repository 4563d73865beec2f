"""The Ray engine on a local Ray (this machine's CPUs): the local engine's words, outputs and
manifest, a timeline per model worker, a killed model worker, and the one-line error without Ray.

Ray takes seconds to start (a minute on a busy machine), so the tests share one local Ray
(module fixture) and few runs. Two CPU model actors, one CTranslate2 thread each.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import shutil
import sys
import threading
import time
from pathlib import Path

import pytest

import whisperkit as wk
from whisperkit.core.samples import reference_text

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="the Ray engine needs the ray extra: pip install whisperkit[ray]")


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray for the module (or the one this machine already runs), shut down after it if started here."""
    import ray

    from whisperkit.core.corpus.engines.ray_cluster import connect

    info = connect(None)
    yield info
    if info["started"]:
        ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, clips, long_sample, bad_audio):
    """Ten clips in two subfolders with the same file names, the long sample, and one damaged file."""
    folder = tmp_path_factory.mktemp("ray_corpus")
    references = {}
    for number, clip in enumerate(clips):
        subfolder = folder / ("first" if number < 5 else "second")
        subfolder.mkdir(exist_ok=True)
        path = subfolder / f"clip_{number % 5}.flac"
        shutil.copy(clip, path)
        references[str(path)] = reference_text(clip)
    shutil.copy(long_sample, folder / "speech.flac")
    references[str(folder / "speech.flac")] = reference_text(long_sample)
    shutil.copy(bad_audio["noise"], folder / "noise.flac")
    return folder, references, str(folder / "noise.flac")


@pytest.fixture(scope="module")
def both_engines(ray_cluster, model, corpus, tmp_path_factory):
    folder, *_ = corpus
    local_out, ray_out = tmp_path_factory.mktemp("local_out"), tmp_path_factory.mktemp("ray_out")
    local = wk.transcribe_corpus(folder, model, output_dir=local_out, output_format="all", progress=False)
    on_ray = wk.transcribe_corpus(folder, engine="ray", model_workers=2, batch_size=4, output_dir=ray_out,
                                  output_format="all", progress=False)
    return local, on_ray, local_out, ray_out


@needs_ray
def test_ray_writes_the_words_outputs_and_manifest_of_the_local_engine(both_engines, corpus, model):
    local, on_ray, local_out, ray_out = both_engines
    folder, references, bad = corpus
    assert set(on_ray.transcripts) == set(local.transcripts) == set(references)
    assert set(on_ray.failures) == set(local.failures) == {bad}
    assert on_ray.failures[bad].startswith(bad) and "\n" not in on_ray.failures[bad]
    paths = list(references)
    local_text = " ".join(local.transcripts[path].text for path in paths)
    ray_text = " ".join(on_ray.transcripts[path].text for path in paths)
    assert wk.word_error_rate(local_text, ray_text) <= 0.02
    ray_words = {path.split("ray_corpus")[-1]: t.text.lower() for path, t in on_ray.transcripts.items()}
    assert "steady wins the race" in next(text for key, text in ray_words.items() if key.endswith("first/clip_1.flac"))
    assert "shall not perish from the earth" in next(text for key, text in ray_words.items() if key.endswith("speech.flac"))
    written = sorted(p.relative_to(ray_out).as_posix() for p in ray_out.rglob("*") if p.is_file())
    assert written == sorted(p.relative_to(local_out).as_posix() for p in local_out.rglob("*") if p.is_file())
    ray_manifest = json.loads((ray_out / "manifest.json").read_text())
    local_manifest = json.loads((local_out / "manifest.json").read_text())
    assert ray_manifest["config"] == local_manifest["config"]
    assert {n: e["status"] for n, e in ray_manifest["files"].items()} == {n: e["status"] for n, e in local_manifest["files"].items()}
    # the same manifest, so either engine resumes the other's folder
    again = wk.transcribe_corpus(folder, model, output_dir=ray_out, output_format="all", progress=False)
    assert set(again.skipped) == set(references) and set(again.failures) == {bad}


@needs_ray
def test_each_model_worker_has_its_own_timeline_and_accounts(both_engines):
    _, on_ray, _, _ = both_engines
    assert on_ray.engine == "ray" and on_ray.engine_info["model_workers"] == 2
    assert 1 <= len(on_ray.worker_timelines) <= 2 + on_ray.engine_info["actor_restarts"]
    assert len({(w.actor_id, w.pid) for w in on_ray.worker_timelines}) == len(on_ray.worker_timelines)
    for worker in on_ray.worker_timelines:
        assert len(worker.timeline) > 0 and {"time_s", "process_cpu_percent", "process_rss_mb"} <= set(worker.timeline)
        assert worker.batches == len(worker.spans) > 0 and worker.busy_seconds > 0 and worker.load_seconds > 0
        assert worker.timeline["process_rss_mb"].max() > 50  # the model lives in this process
    assert sum(w.windows for w in on_ray.worker_timelines) == on_ray.stages["model"].items == on_ray.windows
    assert on_ray.stages["model"].threads == len(on_ray.worker_timelines)
    assert list(on_ray.stages) == ["read", "pack", "model", "write"]  # the local engine's stages
    assert on_ray.stages["read"].items == 12  # every file read once
    assert {span.stage for span in on_ray.spans} == {"read", "pack", "model", "write"}
    lanes = {trace.name: set(trace.y) for trace in wk.plots.stage_timeline(on_ray).data}
    assert lanes["model"] == {f"model {w}" for w in range(len(on_ray.worker_timelines))} or len(on_ray.worker_timelines) == 1
    table = on_ray.worker_table()
    assert len(table) == len(on_ray.worker_timelines) and table["windows"].sum() == on_ray.windows
    figure = wk.plots.worker_timelines(on_ray)
    assert len({trace.yaxis for trace in figure.data}) == len(on_ray.worker_timelines)


def kill_a_model_worker_once_written(folder: Path, killed: list[int]) -> threading.Thread:
    """A thread that kills one model worker's process (SIGKILL, as the kernel's out-of-memory killer
    would) as soon as the first transcript is written to ``folder``: a process of this machine's
    Ray started by this process whose title names the ModelWorker."""
    import psutil

    def watch() -> None:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not any(folder.rglob("*.txt")):
            time.sleep(0.05)
        for process in psutil.Process().children(recursive=True):
            try:
                if "ModelWorker" in " ".join(process.cmdline()):
                    process.kill()
                    killed.append(process.pid)
                    return
            except psutil.Error:
                continue

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@needs_ray
def test_a_model_worker_killed_mid_run_loses_no_file_and_writes_none_twice(ray_cluster, clips, tmp_path, capfd):
    output = tmp_path / "out"
    killed: list[int] = []
    killer = kill_a_model_worker_once_written(output, killed)
    result = wk.transcribe_corpus(clips, engine="ray", model_workers=2, batch_size=2, pack=False,
                                  output_dir=output, progress=False)
    killer.join(timeout=5)
    assert len(killed) == 1  # a worker did die, mid-run
    assert result.failures == {} and set(result.transcripts) == set(clips)
    rates = [wk.word_error_rate(reference_text(clip), result.transcripts[clip].text) for clip in clips]
    assert sum(rates) / len(rates) < 0.15, rates
    assert "steady wins the race" in result.transcripts[clips[1]].text.lower()
    manifest = json.loads((output / "manifest.json").read_text())
    assert sorted(manifest["files"]) == sorted(p.rsplit("/", 1)[-1].rsplit(".", 1)[0] for p in clips)
    assert all(entry["status"] == "done" for entry in manifest["files"].values())
    assert sorted(p.name for p in output.glob("*.txt")) == sorted(f"{n}.txt" for n in manifest["files"])
    assert result.stages["model"].items == len(clips)  # each window decoded once in the batches that returned
    noise = capfd.readouterr().err
    assert "died" not in noise and "core_worker" not in noise, noise  # Ray's C++ lines about the death stay in its logs


@needs_ray
def test_a_run_stopped_as_stuck_ends_its_work_and_keeps_this_process_on_ray(ray_cluster, clips, monkeypatch):
    """A run whose first batch does not come back within STALL_SECONDS (here 1 s: the model
    workers take longer to start) stops with one line; its model workers and Ray Data's
    execution end, and this process stays joined to Ray: the next run on it finishes."""
    import ray

    from whisperkit.core.corpus.engines import ray_watch

    monkeypatch.setattr(ray_watch, "STALL_SECONDS", 1.0)
    with pytest.raises(wk.ClusterError, match="^the Ray run stopped: nothing came back for"):
        wk.transcribe_corpus(clips[:4], engine="ray", model_workers=1, batch_size=1, pack=False, progress=False)
    assert ray.is_initialized()  # before, the stop left Ray (ray.shutdown), also a Ray the caller had joined
    job = ray.get_runtime_context().get_job_id()

    def left() -> list[str]:
        workers = [actor["ActorClassName"] for actor in ray._private.state.actors().values()
                   if "ModelWorker" in actor["ActorClassName"] and actor["State"] != "DEAD" and actor["JobID"] == job]
        return workers + [thread.name for thread in threading.enumerate() if thread.name.startswith("StreamingExecutor-")]

    deadline = time.monotonic() + 60
    while left() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left() == []
    monkeypatch.undo()
    again = wk.transcribe_corpus(clips[1:2], engine="ray", model_workers=1, progress=False)
    assert "steady wins the race" in again.transcripts[clips[1]].text.lower()


@needs_ray
def test_a_model_the_workers_cannot_load_is_one_error(ray_cluster, clips):
    with pytest.raises(wk.DeviceError, match="compute type 'float16' is not supported on cpu"):
        wk.transcribe_corpus(clips[:1], engine="ray", device="cpu", compute_type="float16", model_workers=1, progress=False)


def test_without_ray_engine_ray_says_what_to_install(clips, tmp_path):
    """Ray missing (simulated: ``sys.modules['ray'] = None`` makes ``import ray`` fail): one line, exit 2."""
    import subprocess

    code = ("import sys; sys.modules['ray'] = None; from whisperkit.cli.commands import main; "
            f"sys.exit(main(['transcribe', {clips[0]!r}, '--mode', 'corpus', '--engine', 'ray', "
            f"'--output-dir', {str(tmp_path)!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "whisperkit: error: engine 'ray' needs Ray, which is not installed here: pip install 'whisperkit[ray]'"]
    assert not list(tmp_path.iterdir())
    with pytest.raises(wk.ConfigError, match="unknown engine"):
        wk.transcribe_corpus(clips, engine="dask")


def test_engine_options_go_with_corpus_mode(cli, clips):
    done = cli("transcribe", clips[0], "--engine", "ray")
    assert done.returncode == 2
    assert done.stderr.strip() == "whisperkit: error: --engine, --ray-address and --model-workers go with --mode corpus"


def test_a_worker_finds_its_gpus_nvml_index_from_rays_ids(monkeypatch):
    """Ray gives an actor GPU ids (indices, or UUIDs where the node's devices were named by UUID);
    its timeline column is the NVML index of that GPU (a fake NVML with two GPUs)."""
    from whisperkit.core.corpus.engines.ray_workers import nvml_indices

    try:
        from tests import fake_pynvml
    except ImportError:
        import fake_pynvml

    gpus = [fake_pynvml.a100(), fake_pynvml.rtx3090()]
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml.make_fake(gpus))
    assert nvml_indices(["1"]) == [1]
    assert nvml_indices([gpus[1].uuid]) == [1] and nvml_indices([gpus[0].uuid, "1"]) == [0, 1]
    monkeypatch.setitem(sys.modules, "pynvml", None)  # no NVML: the index Ray gave, as it is
    assert nvml_indices(["0"]) == [0]


def test_the_cpu_task_hands_packed_and_single_piece_windows_on_in_runs_of_a_batch(model, clips, long_sample):
    """Runs of one kind, so that a model batch holds packed windows (word timestamps) or
    single-piece ones, as the local engine forms them; a plain function, no Ray needed. A batch
    that mixes the two kinds all the same is decoded in one call per kind."""
    from whisperkit.core.corpus.decoding import WindowDecoder
    from whisperkit.core.corpus.engines.ray_workers import decode_rows, encode, prepare, to_columns
    from whisperkit.core.corpus.sources import find_sources

    sources = find_sources([long_sample, *clips])  # the long file's chunks fill windows alone, the clips pack
    blocks = prepare(to_columns([encode("group", sources)]), pack=True, feature_kwargs={}, batch_size=2)
    rows = [row for block in blocks for row in decode_rows(block)]
    windows = [item for kind, item in rows if kind == "window"]
    kinds = [window.packed for window in windows]
    assert True in kinds and False in kinds and rows[-1][0] == "stage"
    runs = [len(list(group)) for _, group in itertools.groupby(kinds)]
    assert all(length % 2 == 0 for length in runs[:-2]), kinds  # whole batches until the last of each kind

    mixed = [next(w for w in windows if w.packed), next(w for w in windows if not w.packed)]
    texts = WindowDecoder(model)(mixed)
    assert len(texts) == len(mixed[0].places) + 1
    clip_texts = {text.source: " ".join(s.text for s in text.segments) for text in texts if text.source > 0}
    clip_paths = {source.index: source.path for source in sources}
    wer = [wk.word_error_rate(reference_text(clip_paths[index]), text) for index, text in clip_texts.items()]
    assert sum(wer) / len(wer) < 0.25, clip_texts
