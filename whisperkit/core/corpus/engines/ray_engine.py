"""The Ray engine (``engine="ray"``): the corpus pipeline's stages spread over a Ray cluster with Ray Data.

::

    sources (driver) -> prepare: read_pieces -> Packer -> add_features   CPU tasks, a group of files each
                     -> ModelWorker: WindowDecoder on batch_size windows  an actor pool: the model workers
                     -> driver: assemble each complete file (RayRun), hand it to the driver's on_file

The driver (:mod:`whisperkit.core.corpus.transcribe`) keeps what it keeps for every engine: the
list of files, the manifest (resume), the outputs (written on the driver, so the output folder
need not be shared) and the result. The workers need to read the input files: on a cluster of
several machines, give paths every node can read (a shared file system). Each model worker
loads the model itself (a model name is resolved on its node; a folder must exist on every node).
Joining or starting Ray: :mod:`~whisperkit.core.corpus.engines.ray_cluster`; resources and what
is refused: :mod:`~whisperkit.core.corpus.engines.ray_plan`.

Faults: Ray Data restarts a model worker that dies (``max_restarts=-1``) and runs the batch it
was decoding again (``max_task_retries=-1``), replaces one that dies while it loads its model
(its node left), and reruns the CPU tasks of a node that left; the driver counts each piece of
each file once, so a file is written once even if a retried batch reports it again. A bad file
fails alone, as in the thread engine. Ray waits without limit for room it does not have (a
worker restarted where every CPU is held, another job on a small cluster): the run waits a
bounded time for room before it starts, and stops with a one-line
:class:`~whisperkit.errors.ClusterError` when it stops making progress
(:mod:`~whisperkit.core.corpus.engines.ray_watch`); an error of Ray's is one line too.
SIGTERM during a run stops it as Ctrl-C would (the files complete are written, the manifest
saved), shuts down the Ray this process started, and exits with status 143.

Packing happens inside each CPU task, over the files of its group (consecutive files, at most
:data:`GROUP_FILES` of them and :data:`GROUP_BYTES` bytes, so that a long recording is a group of
its own), so a window never holds clips of two groups: a few more windows than the thread
engine, which packs the whole stream, and the same words up to decoding differences at those edges.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from whisperkit.core.corpus.engines.base import EngineRun, OnFile
from whisperkit.core.corpus.engines.ray_cluster import connect, quiet_ray, require_ray
from whisperkit.core.corpus.engines.ray_plan import PREPARE_CPUS, PREPARE_MEMORY_BYTES, check_config, model_spec, place
from whisperkit.core.corpus.engines.ray_run import RayRun
from whisperkit.core.corpus.engines.ray_watch import Feed, Shape, Watch, look, stop_execution, wait_for_room
from whisperkit.core.corpus.engines.ray_workers import ModelWorker, WorkerSettings, decode_rows, encode, prepare
from whisperkit.core.corpus.stages import Source
from whisperkit.errors import ClusterError, WhisperkitError, first_line, one_line

if TYPE_CHECKING:
    from whisperkit.core.config import Config
    from whisperkit.core.models import Model

# A group is one CPU task's work: larger groups pack like the thread engine (which packs the whole
# stream) and cost fewer tasks; smaller ones spread a small corpus over more CPUs. 16 MB is about
# 10 minutes of 16 kHz FLAC or 128 kbit/s MP3.
GROUP_FILES = 64  # files read, packed and featurized by one CPU task (at most) ...
GROUP_BYTES = 16 * 2**20  # ... and bytes of them (at most, unless one file is larger)
WINDOW_BYTES = 1_000_000  # a window with its features, pickled (80 mel bands x 3000 frames, float32)
TERMINATED_STATUS = 128 + signal.SIGTERM  # the exit status after SIGTERM, as the shell reports it
INIT_DEATHS_PER_WORKER = 2  # model workers that may die in a row while loading, per worker, before the run ends


class RayEngine:
    """The :class:`~whisperkit.core.corpus.engines.base.Engine` on a Ray cluster: joins or starts
    Ray, checks what ``config`` asks for against the cluster (one line for what cannot be
    honoured), and plans the model workers, all before any file is read."""

    name = "ray"

    def __init__(self, config: Config, model: Model | str | os.PathLike | None = None, *,
                 ray_address: str | None = None, model_workers: int | None = None) -> None:
        ray = require_ray()
        check_config(config)
        if model_workers is not None and ray_address is None and not os.environ.get("RAY_ADDRESS") and not ray.is_initialized():
            cpus = float(os.cpu_count() or 1)  # the Ray to start here: refuse what cannot fit before starting it
            place("cpu", 0, {"cpus": cpus, "gpus": 0.0, "node_cpus": [cpus]}, model_workers)
        self.cluster = connect(ray_address)
        self.spec = model_spec(config.model if model is None else model, config.device, config.compute_type,
                               config.cpu_threads, self.cluster["gpus"])
        self.spec.num_workers = config.num_workers
        self.placement = place(self.spec.device, config.cpu_threads, self.cluster, model_workers)
        if self.spec.device == "cpu" and not config.cpu_threads:
            self.spec.cpu_threads = max(1, int(self.placement.worker_cpus))
        self.batch_size = int(config.batch_size)
        self.pack = config.pack and (config.language is not None or not self.spec.multilingual)
        self.settings = WorkerSettings(self.spec.load_name, self.spec.device, self.spec.compute_type,
                                       self.spec.cpu_threads, config.language, config.beam_size, self.batch_size,
                                       dict(config.options), num_workers=config.num_workers)
        self.model_settings = self.spec.describe()
        self.load_seconds = 0.0  # each model worker loads its own model
        self.info = {**self.cluster, "model_workers": self.placement.model_workers,
                     "worker_cpus": self.placement.worker_cpus}
        self.shapes = [Shape("model worker", self.placement.worker_cpus, float(self.placement.worker_gpus)),
                       Shape("CPU task", PREPARE_CPUS, memory=float(PREPARE_MEMORY_BYTES))]
        wait_for_room(ray, self.shapes, [self.placement.model_workers, 1])

    def run(self, sources: list[Source], on_file: OnFile, on_batch: Callable[[], None] | None = None) -> EngineRun:
        """Run the stages over ``sources`` as a Ray Data dataset; ``on_file`` is called on the driver."""
        try:
            with _stopped_by_sigterm() as sigterm:
                return self._run(sources, on_file, on_batch, sigterm)
        except SystemExit:  # SIGTERM: the process ends; Ctrl-C keeps Ray for the next run (a notebook)
            if self.cluster["started"]:  # before the interpreter exits, while Ray Data's threads can still stop
                require_ray().shutdown()
            raise

    def _run(self, sources: list[Source], on_file: OnFile, on_batch: Callable[[], None] | None, sigterm: _Sigterm) -> EngineRun:
        ray = require_ray()
        from ray.data import ActorPoolStrategy, DataContext

        context = DataContext.get_current()
        settings = {"enable_progress_bars": False, "print_on_execution_start": False,  # whisperkit shows its own progress
                    # the CPU tasks' windows leave in blocks of about a batch, so that the batches of one group
                    # spread over the model workers (a repartition would be a task of its own wanting a whole
                    # CPU, which model workers of half a CPU on one-CPU nodes never leave)
                    "target_max_block_size": self.batch_size * WINDOW_BYTES,
                    # a model worker that dies while it loads (its node left) is replaced, not the run failed
                    # (Ray Data's default); one that keeps dying (a node without the model) ends the run
                    "max_consecutive_actor_init_deaths": INIT_DEATHS_PER_WORKER * self.placement.model_workers}
        settings = {key: value for key, value in settings.items() if hasattr(context, key)}  # Ray versions differ
        saved = {key: getattr(context, key) for key in settings}
        with quiet_ray():  # Ray Data says "progress bars disabled"
            for key, value in settings.items():
                setattr(context, key, value)
        run = RayRun(sources, on_file, time.time(), self.batch_size)
        groups = group_sources(sources)
        dataset = ray.data.from_items([encode("group", group) for group in groups], override_num_blocks=len(groups))
        # a memory reservation of its own also keeps Ray Data from fusing this stage into the model workers,
        # which would put the CPU work back in front of the model, in the same process
        dataset = dataset.map_batches(prepare, batch_size=1, num_cpus=PREPARE_CPUS, memory=PREPARE_MEMORY_BYTES,
                                      batch_format="numpy",
                                      fn_kwargs={"pack": self.pack, "feature_kwargs": self.spec.feature_kwargs,
                                                 "batch_size": self.batch_size})
        # one batch in flight per worker: a batch goes to whichever worker is free (not queued behind a busy
        # one), and a worker that dies takes one batch with it
        pool = ActorPoolStrategy(size=self.placement.model_workers, max_tasks_in_flight_per_actor=1)
        dataset = dataset.map_batches(ModelWorker, fn_constructor_kwargs={"settings": self.settings},
                                      batch_size=self.batch_size, batch_format="numpy", compute=pool,
                                      **self.placement.resources())
        watch = Watch(self.shapes, lambda: look(ray))
        try:
            with quiet_ray(), Feed(dataset.iter_batches(batch_size=None, batch_format="numpy"), watch,
                                   lambda: stop_execution(ray, dataset)) as batches:
                for batch in batches:
                    if on_batch is not None:
                        on_batch()
                        on_batch = None
                    with sigterm.deferred():  # a file's outputs and manifest entry are written whole
                        for kind, item in decode_rows(batch):
                            run.take(kind, item)
        except WhisperkitError:
            raise
        except Exception as error:  # Ray's own (an actor that kept dying, a lost object): one line
            if type(error).__module__.split(".")[0] != "ray":
                raise
            raise ClusterError(one_line(f"the Ray run failed: {_ray_reason(error)}")) from error
        finally:
            with quiet_ray():
                for key, value in saved.items():
                    setattr(context, key, value)
        run.finish_missing()
        return run.result()


class _Sigterm:
    """SIGTERM as ``SystemExit(143)`` in the main thread, held back while :meth:`deferred` runs."""

    def __init__(self) -> None:
        self.deferring = False
        self.pending = False

    def handle(self, signum: int, frame: Any) -> None:
        if self.deferring:
            self.pending = True
            return
        raise SystemExit(TERMINATED_STATUS)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self.deferring = True
        try:
            yield
        finally:
            self.deferring = False
        if self.pending:
            raise SystemExit(TERMINATED_STATUS)


@contextlib.contextmanager
def _stopped_by_sigterm() -> Iterator[_Sigterm]:
    """Meanwhile, SIGTERM raises ``SystemExit(143)`` in this thread (the main thread only), except
    while the driver hands a batch's files on (then right after): Ray's own handler exits from
    inside Ray Data's loop, which ends in SIGABRT and a native stack dump as the interpreter
    stops around Ray's threads."""
    sigterm = _Sigterm()
    if threading.current_thread() is not threading.main_thread():
        yield sigterm
        return
    previous = signal.signal(signal.SIGTERM, sigterm.handle)
    try:
        yield sigterm
    finally:
        signal.signal(signal.SIGTERM, previous)


def _ray_reason(error: BaseException) -> str:
    """The first line of a Ray error, with the first line of what caused it underneath (a task's own error)."""
    reason = first_line(error)
    cause = error
    while cause.__cause__ is not None and cause.__cause__ is not cause:
        cause = cause.__cause__
    if cause is not error and first_line(cause) not in reason:
        reason += f" ({type(cause).__name__}: {first_line(cause)})"
    return reason


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


__all__ = ["GROUP_BYTES", "GROUP_FILES", "RayEngine", "group_sources"]
