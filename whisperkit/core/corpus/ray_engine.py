"""The Ray engine of the corpus pipeline: the same stages, spread over a Ray cluster with Ray Data.

``transcribe_corpus(..., engine="ray")`` runs the stages of :mod:`whisperkit.core.corpus.pipeline`
as a Ray Data dataset instead of threads::

    sources (driver) -> prepare: read_pieces -> Packer -> add_features   CPU tasks, a group of files each
                     -> ModelWorker: WindowDecoder on batch_size windows  an actor pool: one GPU per actor
                     -> driver: assemble each complete file, write its outputs and manifest entry

The driver keeps what the local engine keeps: the list of files, the manifest (resume), the
outputs (written on the driver, so the output folder need not be shared) and the result. The
workers need to read the input files: on a cluster of several machines, give paths every node
can read (a shared file system). Each model actor loads the model itself (a model name is
resolved on its node; a folder must exist on every node).

Resources: a model actor takes one GPU (``num_gpus=1``) and one CPU where the cluster has GPUs;
on a CPU-only cluster it takes ``cpu_threads`` CPUs (CTranslate2's threads), but leaves at least
one CPU to the CPU stages, whose tasks take :data:`PREPARE_CPUS` each. These are Ray's logical
reservations, which place the work; they do not pin threads to cores.

Faults: Ray Data restarts a model actor that dies (``max_restarts=-1``) and runs the batch it
was decoding again (``max_task_retries=-1``); the driver counts each piece of each file once, so a
file is written once even if a retried batch reports it again. A bad file fails alone, as in
the local engine.

Packing happens inside each CPU task, over the files of its group (consecutive files, at most
:data:`GROUP_FILES` of them and :data:`GROUP_BYTES` bytes, so that a long recording is a group of
its own), so a window never holds clips of two groups: a few more windows than the local engine,
which packs the whole stream, and the same words up to decoding differences at those edges.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from whisperkit.core.corpus.ray_run import RayRun, WorkerTimeline
from whisperkit.core.corpus.ray_workers import ModelWorker, WorkerSettings, decode_rows, encode, prepare
from whisperkit.core.corpus.stages import Source
from whisperkit.errors import ConfigError, first_line

if TYPE_CHECKING:
    from collections.abc import Callable

    from whisperkit.core.corpus.ray_run import OnFile
    from whisperkit.core.models import Model

RAY_MISSING = "engine 'ray' needs Ray, which is not installed here: pip install 'whisperkit[ray]'"
# A group is one CPU task's work: larger groups pack like the local engine (which packs the whole
# stream) and cost fewer tasks; smaller ones spread a small corpus over more CPUs. 16 MB is about
# 10 minutes of 16 kHz FLAC or 128 kbit/s MP3.
GROUP_FILES = 64  # files read, packed and featurized by one CPU task (at most) ...
GROUP_BYTES = 16 * 2**20  # ... and bytes of them (at most, unless one file is larger)
# Ray's raylet gives up when its helper processes take over 15 s to start (a busy machine): try again
START_ATTEMPTS = 3
PREPARE_CPUS = 0.5  # Ray CPUs one CPU-stage task reserves (one decoding / VAD thread, often waiting on I/O)
PREPARE_MEMORY_BYTES = 256 * 2**20  # memory it reserves: two 300 s blocks of audio, an open window, a block of windows


def require_ray() -> ModuleType:
    """The ``ray`` module, or a :class:`ConfigError` saying what to install."""
    try:
        import ray
        import ray.data  # noqa: F401  (the extra installs ray[data])
    except ImportError:
        raise ConfigError(RAY_MISSING) from None
    return ray


def connect(address: str | None = None) -> dict:
    """Join the Ray cluster at ``address``, or start a local one (None); reuse one already joined.

    Returns ``{"address", "started", "seconds", "cpus", "gpus", "nodes"}``: ``started`` is True
    when this call started Ray, ``seconds`` how long joining or starting took.

    This process's whisperkit is sent to the workers with the job (Ray's ``py_modules``), so
    every node runs the driver's version of it; its dependencies (faster-whisper, ...) must be
    installed on every node. Where Ray was started before (``ray.init`` by the caller), the
    workers import the whisperkit their nodes have.
    """
    import logging

    ray = require_ray()
    started_at = time.perf_counter()
    started = False
    if not ray.is_initialized():
        # the driver's whisperkit goes to every worker with the job, so all run the same code
        package = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                                      runtime_env={"py_modules": [package]})
        if address is not None:
            kwargs["address"] = address
        else:
            kwargs["num_cpus"] = os.cpu_count() or 1
        for attempt in range(START_ATTEMPTS):
            try:
                ray.init(**kwargs)
                break
            except ValueError as error:
                if "num_cpus" in kwargs and "existing cluster" in str(error):  # 'ray start' runs here: join it
                    kwargs.pop("num_cpus")
                    ray.init(**kwargs)
                    break
                raise ConfigError(f"cannot start or join Ray ({first_line(error)})") from None
            except Exception as error:  # Ray raises a bare Exception when its processes start too slowly
                ray.shutdown()
                if address is None and attempt + 1 < START_ATTEMPTS and "timed out" in str(error):
                    continue
                where = f"the Ray cluster at {address}" if address else "a local Ray"
                raise ConfigError(f"cannot start or join {where} ({first_line(error)}); " + (
                    "check the address (ray://HOST:10001 or HOST:6379) and that the cluster runs" if address
                    else "a busy machine starts Ray slowly: try again, or start one with 'ray start --head'")) from None
        started = "num_cpus" in kwargs  # False where it joined a cluster already running here
    resources = ray.cluster_resources()
    return {"address": address or "local", "started": started, "seconds": time.perf_counter() - started_at,
            "cpus": float(resources.get("CPU", 0.0)), "gpus": float(resources.get("GPU", 0.0)),
            "nodes": len([node for node in ray.nodes() if node.get("Alive")])}


@dataclass
class ModelSpec:
    """The model as the driver knows it without loading it (each actor loads its own copy).

    ``load_name`` is what the actors pass to :func:`~whisperkit.core.models.load_model`; ``path``
    the folder on the driver, where ``multilingual`` (vocabulary size) and ``feature_kwargs``
    (``preprocessor_config.json``, as faster-whisper reads it) come from.
    """

    name: str
    load_name: str | None
    path: str
    device: str
    compute_type: str
    cpu_threads: int
    multilingual: bool
    feature_kwargs: dict

    def describe(self) -> dict:
        """The settings that identify the model, as :meth:`whisperkit.core.models.Model.describe`."""
        return {"model": self.name, "device": self.device, "compute_type": self.compute_type,
                "num_workers": 1, "cpu_threads": self.cpu_threads}


def model_spec(model: Model | str | os.PathLike | None, device: str, compute_type: str, cpu_threads: int, cluster_gpus: float) -> ModelSpec:
    """Resolve ``model`` (a name, a folder, a loaded Model or None) on the driver, without loading it.

    ``device`` "auto" is cuda where the cluster has GPUs, else cpu; ``compute_type`` "auto" is
    the first of float16 (cuda) or int8 (cpu): each actor checks it when it loads the model.
    """
    from whisperkit.core.models import AUTO_COMPUTE_TYPES, BUNDLED_MODEL, DEVICES, Model, resolve_model

    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; expected one of: {', '.join(DEVICES)}")
    if device == "cuda" and cluster_gpus < 1:
        raise ConfigError("device cuda was asked for, but the Ray cluster has no GPU; use device cpu or auto")
    if isinstance(model, Model):
        model = model.path if model.name != BUNDLED_MODEL else None
    elif model is not None and not isinstance(model, (str, os.PathLike)):
        raise ConfigError("engine 'ray' needs a model name or folder (each worker loads its own), not a loaded model object")
    name, path = resolve_model(None if model is None else os.fspath(model))
    device = ("cuda" if cluster_gpus >= 1 else "cpu") if device == "auto" else device
    compute_type = AUTO_COMPUTE_TYPES[device][0] if compute_type == "auto" else compute_type
    load_name = None if name == BUNDLED_MODEL else name
    return ModelSpec(name, load_name, path, device, compute_type, cpu_threads, _is_multilingual(path),
                     _feature_kwargs(path))


def _is_multilingual(path: str) -> bool:
    """CTranslate2's rule: a multilingual Whisper has at least 51865 tokens (unknown: True)."""
    import json

    try:
        if os.path.isfile(os.path.join(path, "vocabulary.json")):
            with open(os.path.join(path, "vocabulary.json"), encoding="utf-8") as handle:
                return len(json.load(handle)) >= 51865
        with open(os.path.join(path, "vocabulary.txt"), encoding="utf-8") as handle:
            return sum(1 for _ in handle) >= 51865
    except (OSError, ValueError):
        return True


def _feature_kwargs(path: str) -> dict:
    """The FeatureExtractor settings faster-whisper reads from ``preprocessor_config.json`` (none: defaults)."""
    import inspect
    import json

    from faster_whisper.feature_extractor import FeatureExtractor

    try:
        with open(os.path.join(path, "preprocessor_config.json"), encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError):
        return {}
    valid = inspect.signature(FeatureExtractor.__init__).parameters
    return {key: value for key, value in config.items() if key in valid}


#: Test hook, ``(batches, marker_file)``: the first model actor to finish that many batches creates
#: the marker file and exits before returning the last one, as a crashed worker would; the file
#: makes it happen once. None: off. The marker must be on a file system every node shares.
CRASH_HOOK: tuple[int, str] | None = None


def check_batch_size(batch_size: int | str) -> int:
    """A whole number of windows per model call ("auto" needs the workers' device: not here)."""
    if batch_size == "auto":
        raise ConfigError("batch size 'auto' is not available with engine 'ray' (it depends on each worker's GPU); "
                          "give a number, such as what wk.recommend_batch_size says on one of the cluster's GPUs")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch size must be a whole number of at least 1, got {batch_size!r}")
    return batch_size


def plan(model: Model | str | os.PathLike | None, cluster: dict, *, batch_size: int, language: str | None, beam_size: int, options: dict,
         model_workers: int | None = None, device: str = "auto", compute_type: str = "auto",
         cpu_threads: int | None = None) -> tuple[ModelSpec, WorkerSettings, int]:
    """``(model spec, what each actor gets, number of model actors)`` for ``cluster`` (from :func:`connect`).

    On CPUs each actor gets ``cpu_threads`` CTranslate2 threads (default: the cluster's CPUs
    shared among the actors, at least 1).
    """
    if model_workers is not None and (isinstance(model_workers, bool) or not isinstance(model_workers, int) or model_workers < 1):
        raise ConfigError(f"model_workers must be a whole number of at least 1, got {model_workers!r}")
    spec = model_spec(model, device, compute_type, cpu_threads or 0, cluster["gpus"])
    actors = model_workers or default_workers(spec, cluster)
    if spec.device == "cpu" and not cpu_threads:
        spec.cpu_threads = max(1, int(cluster["cpus"] // actors))
    settings = WorkerSettings(spec.load_name if spec.load_name else None, spec.device, spec.compute_type,
                              spec.cpu_threads, language, beam_size, batch_size, dict(options))
    if CRASH_HOOK is not None:
        settings.crash_after_batches, settings.crash_marker = CRASH_HOOK
    return spec, settings, actors


def model_resources(spec: ModelSpec, workers: int, cluster: dict) -> dict:
    """Ray resources of one model actor (see the module docstring)."""
    if spec.device == "cuda":
        return {"num_gpus": 1, "num_cpus": 1}
    threads = spec.cpu_threads or 1
    spare = (cluster["cpus"] - 2 * PREPARE_CPUS) / workers  # leave room for two CPU-stage tasks
    return {"num_cpus": max(0.25, min(float(threads), spare))}


def default_workers(spec: ModelSpec, cluster: dict) -> int:
    """One model actor per GPU; on CPUs, one per ``cpu_threads`` CPUs (one per CPU by default)."""
    if spec.device == "cuda":
        return max(1, int(cluster["gpus"]))
    return max(1, int(cluster["cpus"] // (spec.cpu_threads or 1)))


@contextlib.contextmanager
def _quiet(name: str):
    """Log only errors from the logger ``name`` (and below it) meanwhile, and drop one warning."""
    import logging
    import warnings

    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            # fewer batches than model actors leaves some idle; its advice (override_num_blocks) is not for here
            warnings.filterwarnings("ignore", message="The minimum number of concurrent actors")
            yield
    finally:
        logger.setLevel(level)


def group_sources(sources: list[Source], max_files: int = GROUP_FILES, max_bytes: int = GROUP_BYTES) -> list[list[Source]]:
    """Consecutive sources in groups of at most ``max_files`` files and ``max_bytes`` bytes (a larger file alone)."""
    groups: list[list[Source]] = []
    size = 0
    for source in sources:
        try:
            length = os.path.getsize(source.path)
        except OSError:
            length = 0  # it fails when read, in its group
        if not groups or len(groups[-1]) >= max_files or (groups[-1] and size + length > max_bytes):
            groups.append([])
            size = 0
        groups[-1].append(source)
        size += length
    return groups


def run_ray_pipeline(sources: list[Source], spec: ModelSpec, settings: WorkerSettings, *, batch_size: int,
                     pack: bool, model_workers: int, cluster: dict, on_file: OnFile,
                     on_batch: Callable[[], None] | None = None) -> RayRun:
    """Run the stages over ``sources`` as a Ray Data dataset; ``on_file(source, transcript_or_failure,
    texts)`` is called on the driver as each file completes (the local engine's contract)."""
    ray = require_ray()
    from ray.data import ActorPoolStrategy, DataContext

    context = DataContext.get_current()
    saved = context.enable_progress_bars, context.print_on_execution_start
    context.enable_progress_bars = context.print_on_execution_start = False  # whisperkit shows its own progress
    run = RayRun(sources, on_file, time.time())
    run.batch_size = batch_size
    groups = group_sources(sources)
    dataset = ray.data.from_items([encode("group", group) for group in groups], override_num_blocks=len(groups))
    # a memory reservation of its own also keeps Ray Data from fusing this stage into the model actors,
    # which would put the CPU work back in front of the model, in the same process
    dataset = dataset.map_batches(prepare, batch_size=1, num_cpus=PREPARE_CPUS, memory=PREPARE_MEMORY_BYTES,
                                  batch_format="numpy",
                                  fn_kwargs={"pack": pack, "feature_kwargs": spec.feature_kwargs,
                                             "batch_size": batch_size})
    # a task's windows leave it as one block; cut into blocks of a batch each, so that each batch is a
    # model task of its own and the batches of one group spread over the actors
    dataset = dataset.repartition(target_num_rows_per_block=batch_size)
    # one batch in flight per actor: a batch goes to whichever actor is free (not queued behind a busy
    # one), and an actor that dies takes one batch with it
    pool = ActorPoolStrategy(size=model_workers, max_tasks_in_flight_per_actor=1)
    dataset = dataset.map_batches(ModelWorker, fn_constructor_kwargs={"settings": settings}, batch_size=batch_size,
                                  batch_format="numpy", compute=pool, **model_resources(spec, model_workers, cluster))
    try:
        with _quiet("ray.data"):
            for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                if on_batch is not None:
                    on_batch()
                    on_batch = None
                for kind, item in decode_rows(batch):
                    run.take(kind, item)
    finally:
        context.enable_progress_bars, context.print_on_execution_start = saved
    run.finish_missing()
    run.build_workers()
    return run


__all__ = ["ModelSpec", "RayRun", "WorkerSettings", "WorkerTimeline", "connect", "model_spec", "require_ray",
           "run_ray_pipeline"]
