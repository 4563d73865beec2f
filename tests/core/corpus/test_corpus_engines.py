"""The corpus engines behind one interface, and every setting through Config: what each engine
honours or refuses (in one line, before any work), without starting Ray.

The Ray engine's planning is tested on plain cluster descriptions (the dict ``connect`` returns);
its runs on a real local Ray are in ``test_ray_engine.py`` and on a multi-node local cluster in
``test_ray_cluster.py``.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import json
import sys
import time
from pathlib import Path

import pytest

import whisperkit as wk
from whisperkit.core.corpus.engines import base
from whisperkit.core.corpus.engines.ray_plan import CPU_UNIT, PREPARE_CPUS, place

ENGINES = Path(wk.__file__).parent / "core" / "corpus" / "engines"
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="the Ray engine needs the ray extra: pip install whisperkit[ray]")


def cluster(*node_cpus: float, gpus: float = 0.0) -> dict:
    return {"cpus": float(sum(node_cpus)), "gpus": gpus, "nodes": len(node_cpus), "node_cpus": list(node_cpus)}


def test_both_engines_implement_the_engine_interface():
    from whisperkit.core.corpus.engines.ray_engine import RayEngine
    from whisperkit.core.corpus.engines.threads import ThreadEngine

    wanted = inspect.signature(base.Engine.run)
    for engine in (ThreadEngine, RayEngine):
        assert list(inspect.signature(engine.run).parameters) == list(wanted.parameters), engine
        assert engine.name in ("local", "ray")
        source = inspect.getsource(engine.__init__)
        for attribute in ("model_settings", "pack", "batch_size", "load_seconds", "info"):
            assert f"self.{attribute} =" in source, (engine, attribute)


def test_the_ray_engine_imports_nothing_of_the_thread_engine():
    for path in ENGINES.glob("ray_*.py"):
        tree = ast.parse(path.read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
        assert "whisperkit.core.corpus.engines.threads" not in imported, path.name
        assert not [name for name in names if name.startswith("_")], (path.name, names)


def test_model_workers_are_placed_to_leave_room_for_the_cpu_stages():
    """Three nodes of one CPU (the cluster of the fault the issue found): three model workers fit
    at half a CPU each, which leaves half a CPU on some node for a CPU task; six do not."""
    three = place("cpu", 0, cluster(1, 1, 1), 3)
    assert three.model_workers == 3 and three.worker_cpus == CPU_UNIT
    assert cluster(1, 1, 1)["cpus"] - 3 * three.worker_cpus >= PREPARE_CPUS
    default = place("cpu", 0, cluster(1, 1, 1))
    assert default.model_workers == 3 and default.worker_cpus == CPU_UNIT
    with pytest.raises(wk.ConfigError) as refused:
        place("cpu", 0, cluster(1, 1, 1), 6)
    assert str(refused.value) == ("model_workers=6 would leave no CPU for the CPU stages on the Ray cluster "
                                  "(3 CPUs on 3 node(s)): at most 5 fit (each reserves at least 0.5 CPU, the CPU stages 0.5)")
    with pytest.raises(wk.ConfigError, match="model_workers=1000 would leave no CPU .* at most 3 fit"):
        place("cpu", 0, cluster(2), 1000)
    big = place("cpu", 4, cluster(16), 2)  # four CTranslate2 threads each, as asked
    assert big.worker_cpus == 4.0 and big.resources() == {"num_cpus": 4.0}
    assert place("cpu", 0, cluster(16), 2).worker_cpus == 7.5  # unless told, the CPUs shared (half a CPU kept)


def test_gpu_model_workers_take_a_gpu_each_and_no_more_than_there_are():
    assert place("cuda", 0, cluster(8, gpus=2)).resources() == {"num_cpus": 1.0, "num_gpus": 1}
    assert place("cuda", 0, cluster(8, gpus=2)).model_workers == 2
    with pytest.raises(wk.ConfigError, match="model_workers=3: each model worker takes a GPU and the Ray cluster has 2"):
        place("cuda", 0, cluster(8, gpus=2), 3)
    assert place("cuda", 0, cluster(1, gpus=1)).worker_cpus == CPU_UNIT  # a one-CPU GPU node keeps room for a CPU task


@needs_ray
def test_the_ray_engine_reads_its_settings_from_config(monkeypatch):
    """``num_workers`` (CTranslate2's) reaches each model worker; ``device_index`` cannot (Ray gives
    each worker its GPU): refused in one line, before Ray starts."""
    from whisperkit.core.corpus.engines import open_engine, ray_engine

    monkeypatch.setattr(ray_engine, "connect", lambda address: {**cluster(2, 2), "address": "test", "started": False,
                                                               "seconds": 0.0})
    engine = open_engine("ray", wk.Config(mode="corpus", num_workers=2, batch_size=4, language="en"), model_workers=2)
    assert engine.settings.num_workers == 2 and engine.model_settings["num_workers"] == 2
    assert engine.placement.model_workers == 2 and engine.batch_size == 4 and engine.pack
    with pytest.raises(wk.ConfigError, match="^device_index 1 is not available with engine 'ray'"):
        open_engine("ray", wk.Config(mode="corpus", device_index=1))
    with pytest.raises(wk.ConfigError, match="batch size 'auto' is not available with engine 'ray'"):
        open_engine("ray", wk.Config(mode="corpus", batch_size="auto"))
    with pytest.raises(wk.ConfigError, match=r"reader_threads \(--reader-threads\) are the local engine's"):
        open_engine("ray", wk.Config(mode="corpus"), reader_threads=2)


def test_settings_of_the_other_engine_are_refused():
    from whisperkit.core.corpus.engines import open_engine

    with pytest.raises(wk.ConfigError, match=r"ray_address and model_workers \(--ray-address, --model-workers\) need engine 'ray'"):
        open_engine("local", wk.Config(mode="corpus"), model_workers=2)
    with pytest.raises(wk.ConfigError, match="unknown engine 'dask'; expected one of: local, ray"):
        open_engine("dask", wk.Config(mode="corpus"))


@needs_ray
def test_cli_ray_refuses_device_index_and_impossible_workers_in_one_line_at_once(cli, clips, tmp_path):
    """Each refused before Ray starts: ``--device-index 1`` and ``--model-workers 1000``, one line, exit 2."""
    base_args = ("transcribe", clips[0], "--mode", "corpus", "--engine", "ray", "--output-dir", str(tmp_path / "out"))
    started = time.monotonic()
    done = cli(*base_args, "--num-workers", "2", "--device-index", "1")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("whisperkit: error: device_index 1 is not available with engine 'ray'")
    done = cli(*base_args, "--model-workers", "1000")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "model_workers=1000 would leave no CPU for the CPU stages" in done.stderr
    assert time.monotonic() - started < 60
    assert not (tmp_path / "out").exists()


@needs_ray
@pytest.mark.parametrize("address", ["127.0.0.1:1", "notahost.invalid:6379"])
def test_an_unreachable_ray_address_is_one_line_within_seconds(cli, clips, tmp_path, address):
    started = time.monotonic()
    done = cli("transcribe", clips[0], "--mode", "corpus", "--engine", "ray", "--ray-address", address,
               "--output-dir", str(tmp_path / "out"))
    assert time.monotonic() - started < 60
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()], done.stderr  # one line, no Ray logs
    assert done.stderr.startswith(f"whisperkit: error: cannot reach the Ray cluster at {address} (")
    assert "check the address" in done.stderr


@needs_ray
def test_no_address_starts_a_ray_of_its_own_never_a_recorded_one(monkeypatch, tmp_path):
    """``ray.init()`` alone joins the cluster recorded in Ray's temporary folder (a stranger's, or
    one shut down since): the engine asks for ``address="local"``, a Ray of its own."""
    import ray

    from whisperkit.core.corpus.engines import ray_cluster

    asked = {}

    class Stop(Exception):
        pass

    def init(**kwargs):
        asked.update(kwargs)
        raise Stop

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    with pytest.raises(wk.ConfigError, match="cannot start or join a local Ray"):
        ray_cluster.connect(None)
    assert asked["address"] == "local" and asked["num_cpus"] >= 1 and asked["log_to_driver"] is False
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text("127.0.0.1:1\n")  # a cluster recorded, since shut down
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    started = time.monotonic()
    with pytest.raises(wk.ConfigError, match=r"^cannot reach the Ray cluster at auto \("):
        ray_cluster.connect("auto")  # asked for by name, the recorded cluster is tried, and refused at once
    assert time.monotonic() - started < 10


def test_device_index_reaches_a_corpus_run(monkeypatch, clips):
    """``transcribe_corpus(device_index=1)`` loads the model on CUDA device 1 (two fake GPUs at the
    ctranslate2 and NVML boundaries; the weights are the CPU model's, so the words are real)."""
    import faster_whisper

    from whisperkit.core import models
    from whisperkit.measure import cuda

    try:
        from tests import fake_pynvml
    except ImportError:
        import fake_pynvml

    real = faster_whisper.WhisperModel
    loads = []

    def whisper_model(path, device="auto", device_index=0, compute_type="default", **kwargs):
        loads.append((device, device_index, kwargs.get("num_workers")))
        return real(path, device="cpu", compute_type="int8", **kwargs)

    monkeypatch.setattr(models, "cuda_device_count", lambda: 2)
    monkeypatch.setattr(models, "cuda_libraries", lambda: cuda.CudaLibraries(("libcublas.so.12",), {"libcublas.so.12": "x"}))
    monkeypatch.setattr(models, "supported_compute_types", lambda device: {"float16", "int8_float16", "int8", "float32"})
    monkeypatch.setattr(faster_whisper, "WhisperModel", whisper_model)
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml.make_fake([fake_pynvml.a100(), fake_pynvml.rtx3090()]))
    from whisperkit.measure import sampler as sampler_module

    sampled = []  # the CUDA device each sampler was told the model is on (its MIG instance is sampled)
    sampler_init = sampler_module.Sampler.__init__

    def recording_init(self, *args, **kwargs):
        sampler_init(self, *args, **kwargs)
        sampled.append(self.cuda_index)

    monkeypatch.setattr(sampler_module.Sampler, "__init__", recording_init)
    models.clear_model_cache()
    try:
        result = wk.transcribe_corpus(clips[:2], device="cuda", device_index=1, compute_type="int8", num_workers=2,
                                      progress=False, monitor=True)
        single = wk.transcribe(clips[0], device="cuda", device_index=1, compute_type="int8", num_workers=2,
                               progress=False, monitor=True)
    finally:
        models.clear_model_cache()
    assert loads == [("cuda", 1, 2)]
    assert sampled == [1, 1] and result.timeline is not None and single.timeline is not None
    assert result.config["device"] == "cuda" and result.config["device_index"] == 1 and result.config["num_workers"] == 2
    assert result.config["nvml_index"] == 1
    assert "steady wins the race" in result.transcripts[clips[1]].text.lower()
    assert "slow pace of the tortoise" in result.transcripts[clips[0]].text.lower()


def test_old_names_still_work_with_a_deprecation_warning(model, clips, cli, tmp_path):
    with pytest.warns(DeprecationWarning, match=r"transcribe_corpus\(workers=\.\.\.\) is now reader_threads"):
        result = wk.transcribe_corpus(clips[:1], model, workers=1, progress=False)
    assert result.config["reader_threads"] == 1 and result.engine_info["reader_threads"] == 1
    with pytest.warns(DeprecationWarning, match="CorpusResult.workers is now CorpusResult.worker_timelines"):
        assert result.workers == [] == result.worker_timelines
    done = cli("transcribe", clips[0], "--mode", "corpus", "--output-dir", str(tmp_path), "--workers", "1", "--quiet")
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "whisperkit: warning: --workers is now --reader-threads (the threads that read files); --workers goes in the next release"


def test_sigterm_during_a_ray_run_is_exit_143_once_the_files_in_hand_are_written():
    """Ray's own SIGTERM handler exits inside Ray Data's loop (SIGABRT, a native stack dump); the
    engine's raises SystemExit(143) instead, after the files it is writing, and is removed after."""
    import os
    import signal

    from whisperkit.core.corpus.engines import ray_engine

    before = signal.getsignal(signal.SIGTERM)
    written = []
    with pytest.raises(SystemExit) as stopped:
        with ray_engine._stopped_by_sigterm() as sigterm:
            with sigterm.deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.1)
                written.append("a file's outputs and manifest entry")
            written.append("the next batch")
    assert stopped.value.code == 143 and written == ["a file's outputs and manifest entry"]
    assert signal.getsignal(signal.SIGTERM) is before


class HalvingEngine:
    """An engine with no model: it decodes 8 one-window files through :func:`base.decode_fitting`
    in batches of 4, the second batch running out of memory (halved to 2), and hands each file on
    as the engines do (:func:`assemble` of its piece texts)."""

    name, pack, batch_size, load_seconds, info = "local", False, 4, 0.0, {}

    def run(self, sources, on_file, on_batch=None):
        from whisperkit.core.corpus.decoding import PieceText, assemble

        calls = []

        def decoder(windows):
            calls.append(len(windows))
            if len(calls) > 1 and len(windows) > 2:
                raise RuntimeError("CUDA failed with error out of memory")
            return [PieceText(source=w.index, number=0, segments=[wk.Segment(0.0, 1.0, w.path)], last=True,
                              audio_seconds=1.0) for w in windows]

        decoder.device = "cuda"  # type: ignore[attr-defined]
        state = base.DecodeState(self.batch_size)
        for text in base.decode_fitting(state, decoder, sources):
            on_file(sources[text.source], assemble(sources[text.source].path, [text], {}), [text])
        return base.EngineRun(batch_size=state.batch_size, batch_retries=state.batch_retries)


def test_a_halving_does_not_change_the_batch_size_files_decoded_before_it_recorded():
    from whisperkit.core.config import Settings
    from whisperkit.core.corpus.result import CorpusResult
    from whisperkit.core.corpus.stages import Source
    from whisperkit.core.corpus.transcribe import run_stages

    sources = [Source(index, f"clip{index}.flac", f"clip{index}") for index in range(8)]
    result = CorpusResult({}, {}, [], 0.0, 0.0, 4, False, Settings({"mode": "corpus", "batch_size": 4}))
    run_stages(result, sources, HalvingEngine(), None, ("txt",), False, None)
    recorded = [t.config["batch_size"] for t in result.transcripts.values()]
    assert recorded == [4, 4, 4, 4, 2, 2, 2, 2]  # the first batch's files keep the size that decoded them
    assert result.config["batch_size"] == result.batch_size == 2 and result.batch_retries[0]["batch_size"] == 4
    first = result.transcripts["clip0.flac"]
    with pytest.raises(TypeError, match="cannot be changed; use config.replace"):
        first.config["batch_size"] = 1
    assert first.config.replace(batch_size=1)["batch_size"] == 1 and first.config["batch_size"] == 4
    assert first.config.to_dict() == {"mode": "corpus", "batch_size": 4} and json.loads(json.dumps(first.config))["batch_size"] == 4
