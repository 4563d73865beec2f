"""What the Ray engine will run before it runs: the model as the driver knows it, and where the
model workers go.

Resources (Ray's logical reservations, which place the work; they do not pin threads to cores):
a model worker takes one GPU where the cluster has GPUs; on a CPU-only cluster it takes up to
``cpu_threads`` CPUs (CTranslate2's threads). Every reservation is a multiple of
:data:`CPU_UNIT`, and the model workers together leave at least :data:`PREPARE_CPUS` of the
cluster's CPUs free: node CPUs being whole numbers, some node then always has room for a CPU
stage task (which reserves :data:`PREPARE_CPUS`), wherever Ray puts the workers. A request that
cannot leave that room (more model workers than the CPUs or GPUs hold) is refused in one line
before anything starts, instead of model workers waiting for CPUs the CPU tasks never get.
On a cluster of several nodes the workers are sized, where they can be, to leave that room
even after the largest node leaves (Ray restarts its workers on the nodes that remain, and
reruns the CPU tasks whose output was lost with it).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from whisperkit.errors import ConfigError

if TYPE_CHECKING:
    from whisperkit.core.config import Config
    from whisperkit.core.models import Model

PREPARE_CPUS = 0.5  # Ray CPUs one CPU-stage task reserves (one decoding / VAD thread, often waiting on I/O)
PREPARE_MEMORY_BYTES = 256 * 2**20  # memory it reserves: two 300 s blocks of audio, an open window, a block of windows
CPU_UNIT = 0.5  # every CPU reservation is a multiple of this (PREPARE_CPUS is one unit)


def check_config(config: Config) -> None:
    """What engine "ray" cannot honour of ``config``, refused in one line."""
    if config.batch_size == "auto":
        raise ConfigError("batch size 'auto' is not available with engine 'ray' (it depends on each worker's GPU); "
                          "give a number, such as what wk.recommend_batch_size says on one of the cluster's GPUs")
    if config.device_index != 0:
        raise ConfigError(f"device_index {config.device_index} is not available with engine 'ray': Ray gives each model "
                          "worker its own GPU; choose the GPUs with CUDA_VISIBLE_DEVICES where Ray starts")


@dataclass
class Placement:
    """Model workers and what each reserves: ``worker_cpus`` Ray CPUs and ``worker_gpus`` GPUs."""

    model_workers: int
    worker_cpus: float
    worker_gpus: int

    def resources(self) -> dict:
        """Ray's ``num_cpus`` / ``num_gpus`` of one model worker."""
        return {"num_cpus": self.worker_cpus, **({"num_gpus": self.worker_gpus} if self.worker_gpus else {})}


def place(device: str, cpu_threads: int, cluster: dict, model_workers: int | None = None) -> Placement:
    """Where the model workers go on ``cluster`` (from :func:`~whisperkit.core.corpus.engines.ray_cluster.connect`).

    Default: one per GPU; on CPUs one per ``cpu_threads`` CPUs (one per CPU unless told), as
    many as leave room for the CPU stages. A CPU worker reserves ``cpu_threads`` CPUs, or with
    ``cpu_threads`` 0 its share of the CPUs left. A count asked for that cannot fit is a :class:`ConfigError`.
    """
    if model_workers is not None and (isinstance(model_workers, bool) or not isinstance(model_workers, int) or model_workers < 1):
        raise ConfigError(f"model_workers must be a whole number of at least 1, got {model_workers!r}")
    cpus, node_cpus = cluster["cpus"], cluster.get("node_cpus") or [cluster["cpus"]]
    most = _most_workers(cpus, node_cpus, CPU_UNIT)
    where = f"{cpus:g} CPUs on {len(node_cpus)} node(s)"
    if most < 1:
        raise ConfigError(f"the Ray cluster ({where}) has no room for a model worker beside the CPU stages "
                          f"(each reserves at least {CPU_UNIT:g} CPU, the CPU stages {PREPARE_CPUS:g}); add CPUs")
    if device == "cuda":
        gpus = int(cluster["gpus"])
        workers = model_workers or max(1, gpus)
        if workers > gpus:
            raise ConfigError(f"model_workers={workers}: each model worker takes a GPU and the Ray cluster has {gpus}; "
                              f"ask for at most {gpus}")
        wanted = 1.0
    else:
        workers = model_workers or min(most, max(1, int(cpus // (cpu_threads or 1))))
        wanted = float(cpu_threads) if cpu_threads else math.inf  # 0: the CPUs shared among the workers
    if workers > most:
        raise ConfigError(f"model_workers={workers} would leave no CPU for the CPU stages on the Ray cluster ({where}): "
                          f"at most {most} fit (each reserves at least {CPU_UNIT:g} CPU, the CPU stages {PREPARE_CPUS:g})")
    room = cpus - PREPARE_CPUS
    if len(node_cpus) > 1 and (cpus - max(node_cpus) - PREPARE_CPUS) / workers >= CPU_UNIT:
        room = cpus - max(node_cpus) - PREPARE_CPUS  # room kept even when the largest node leaves
    share = math.floor(min(wanted, room / workers) / CPU_UNIT) * CPU_UNIT
    share = max(CPU_UNIT, share)
    while share > CPU_UNIT and _most_workers(cpus, node_cpus, share) < workers:
        share -= CPU_UNIT
    return Placement(workers, share, 1 if device == "cuda" else 0)


def _most_workers(cpus: float, node_cpus: list[float], share: float) -> int:
    """Model workers of ``share`` CPUs each that fit on the nodes and leave PREPARE_CPUS free."""
    return max(0, min(int((cpus - PREPARE_CPUS) // share), sum(int(c // share) for c in node_cpus)))


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
    num_workers: int = 1

    def describe(self) -> dict:
        """The settings that identify the model, as :meth:`whisperkit.core.models.Model.describe`."""
        return {"model": self.name, "device": self.device, "compute_type": self.compute_type,
                "num_workers": self.num_workers, "cpu_threads": self.cpu_threads}


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


