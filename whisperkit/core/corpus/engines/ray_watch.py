"""The Ray engine's bounded waits: room for the run before it starts, and a run that stops
making progress stopped in one line instead of hanging.

Ray itself waits without a limit. A task or an actor that no node has room for (a model worker
restarted after its node left, a CPU task rerun for a lost block) waits until a node has room;
another job on the same cluster can hold that room for as long as it runs (the CPUs its own model
workers hold), and Ray Data splits each node's CPUs between the executions running on the
cluster, in whole CPUs, so two runs on one-CPU nodes each get none. The engine therefore:

- before it starts, waits at most :data:`ROOM_SECONDS` for the CPUs (and GPUs) its model workers
  and one CPU task need to be free, then refuses in one line (:func:`wait_for_room`);
- while it runs, reads the batches on a thread of its own (:class:`Feed`) and, while none comes
  back, looks at the cluster every :data:`LOOK_SECONDS` (:class:`Watch`): when part of the run
  has waited :data:`STARVED_SECONDS` for room that no node has free (or other jobs hold the
  cluster's CPUs), or nothing at all came back for :data:`STALL_SECONDS`, the run is stopped
  (:func:`stop_execution`: its tasks and model workers end, and this process stays joined to
  the cluster) and a :class:`~whisperkit.errors.ClusterError` says what waited for what. The
  files completed before are written, and in the manifest.

What the engine reads of Ray here (free resources, the demand waiting for room, the other jobs)
comes from the cluster's control store; where a Ray version does not answer, that part is left
out and only :data:`STALL_SECONDS` applies.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from whisperkit.errors import ClusterError

ROOM_SECONDS = 30.0  # how long a run waits at the start for the CPUs and GPUs it needs (a previous run's actors ending)
LOOK_SECONDS = 5.0  # how often a run with nothing back looks at the cluster
STARVED_SECONDS = 60.0  # part of the run waiting this long for room no node has free (nothing back meanwhile): stopped
# nothing back for this long, whatever Ray says: stopped (raise it where one model call, or the
# workers' first download of a large model, takes longer)
STALL_SECONDS = 600.0
POLL_SECONDS = 0.5  # how often the driver's wait for the next batch wakes up to look at the clock
STOP_SECONDS = 10.0  # how long an interrupted run waits for its reading thread before ending the run's work in Ray


@dataclass
class Shape:
    """What one part of the run asks Ray for: ``name`` (said in errors), ``cpus``, ``gpus``, ``memory`` bytes."""

    name: str
    cpus: float
    gpus: float = 0.0
    memory: float = 0.0

    def matches(self, bundle: dict) -> bool:
        """Whether a demand ``bundle`` of Ray's (``{"CPU": 0.5, "memory": ...}``) is this shape."""
        return all(abs(float(bundle.get(key, 0.0)) - value) < 1e-6
                   for key, value in (("CPU", self.cpus), ("GPU", self.gpus), ("memory", self.memory)))

    def fits(self, view: ClusterView) -> bool:
        """Whether the cluster's free CPUs and GPUs (summed over nodes) hold one more of it."""
        return view.free_cpus + 1e-6 >= self.cpus and view.free_gpus + 1e-6 >= self.gpus


@dataclass
class ClusterView:
    """The cluster as Ray tells it now: CPUs and GPUs in all and free (summed over live
    nodes), live nodes, the resource bundles of tasks and actors waiting for room (None: Ray did
    not say), and the other jobs (drivers) connected to it, as ``pid 123 (python notebook.py)``."""

    cpus: float = 0.0
    free_cpus: float = 0.0
    gpus: float = 0.0
    free_gpus: float = 0.0
    nodes: int = 0
    waiting: list[dict] | None = None
    other_jobs: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """``1.5 of 3 CPUs free on 3 nodes; 2 other jobs on the cluster (pid 1 (python a.py), ...)``."""
        text = f"{self.free_cpus:g} of {self.cpus:g} CPUs free"
        if self.gpus:
            text += f", {self.free_gpus:g} of {self.gpus:g} GPUs"
        text += f" on {self.nodes} node(s)"
        if self.other_jobs:
            jobs = len(self.other_jobs)
            text += f"; {jobs} other job{'s' if jobs > 1 else ''} on the cluster ({', '.join(self.other_jobs[:3])})"
        return text


def look(ray: Any) -> ClusterView:
    """What :class:`ClusterView` holds, read from the Ray this process joined; what Ray cannot
    answer is left empty (never raises)."""
    view = ClusterView()
    try:
        total, free = ray.cluster_resources(), ray.available_resources()
        view.cpus, view.free_cpus = float(total.get("CPU", 0.0)), float(free.get("CPU", 0.0))
        view.gpus, view.free_gpus = float(total.get("GPU", 0.0)), float(free.get("GPU", 0.0))
        view.nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    except Exception:  # Ray gone or not answering: an empty view
        return view
    try:
        from ray.autoscaler.v2.sdk import get_cluster_status

        status = get_cluster_status(ray.get_runtime_context().gcs_address, timeout=10)
        view.waiting = [dict(request.bundle) for demand in status.resource_demands.ray_task_actor_demand
                        for request in demand.bundles_by_count for _ in range(int(request.count))]
    except Exception:  # an older or newer Ray: the demand is not known
        view.waiting = None
    view.other_jobs = _other_jobs(ray)
    return view


def _other_jobs(ray: Any) -> list[str]:
    """The live drivers on the cluster other than this one, ``pid N (entrypoint)``."""
    try:
        from ray._private.state import jobs

        mine = ray.get_runtime_context().get_job_id()
        found = []
        for job in jobs():
            if job.get("IsDead") or str(job.get("JobID")) == mine:
                continue
            entry = " ".join(str(job.get("Entrypoint") or "").split()[:2])[:60]
            found.append(f"pid {job.get('DriverPid')}" + (f" ({entry})" if entry else ""))
        return found
    except Exception:
        return []


def wait_for_room(ray: Any, shapes: list[Shape], counts: list[int], *, limit: float | None = None,
                  sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> None:
    """Return once the cluster's free CPUs and GPUs hold ``counts[i]`` of each ``shapes[i]``;
    after ``limit`` seconds (:data:`ROOM_SECONDS`), a :class:`~whisperkit.errors.ClusterError`
    saying what is free and who else runs there. Free resources are summed over nodes (a shape
    split over two nodes still waits in Ray: the watch of the run catches that)."""
    limit = ROOM_SECONDS if limit is None else limit
    cpus = sum(shape.cpus * count for shape, count in zip(shapes, counts))
    gpus = sum(shape.gpus * count for shape, count in zip(shapes, counts))
    deadline = clock() + limit
    while True:
        view = look(ray)
        if not view.nodes or (view.free_cpus + 1e-6 >= cpus and view.free_gpus + 1e-6 >= gpus):
            return  # (no answer from Ray: nothing to check, the watch still bounds the run)
        if clock() >= deadline:
            break
        sleep(min(1.0, max(0.0, deadline - clock())))
    parts = " and ".join(f"{count} {shape.name}{'s' if count > 1 else ''} of {shape.cpus:g} CPU"
                         + (f" and {shape.gpus:g} GPU" if shape.gpus else "") for shape, count in zip(shapes, counts))
    need = f"{cpus:g} CPUs" + (f" and {gpus:g} GPUs" if gpus else "")
    holders = "other jobs hold the rest" if view.other_jobs else "other work on it holds the rest"
    raise ClusterError(f"the Ray cluster has not had room for this run for {limit:.0f} s ({view.describe()}; {holders}): "
                       f"{parts} need {need}; run it when they finish, or with fewer model_workers")


class Watch:
    """Decides, while no batch comes back, whether the run is stuck (see the module's text).

    ``shapes``: what the run's parts ask Ray for (a model worker, a CPU task); ``looker()`` a
    :class:`ClusterView` of now. :meth:`progressed` when a batch comes back; :meth:`check` while
    none does: None to keep waiting, else the one-line reason to stop.
    """

    def __init__(self, shapes: list[Shape], looker: Callable[[], ClusterView], *, clock: Callable[[], float] = time.monotonic,
                 look_seconds: float | None = None, starved_seconds: float | None = None,
                 stall_seconds: float | None = None) -> None:
        self.shapes = shapes
        self.looker = looker
        self.clock = clock
        self.look_seconds = LOOK_SECONDS if look_seconds is None else look_seconds
        self.starved_seconds = STARVED_SECONDS if starved_seconds is None else starved_seconds
        self.stall_seconds = STALL_SECONDS if stall_seconds is None else stall_seconds
        self.last = self.looked = clock()
        self.starved_since: float | None = None

    def progressed(self) -> None:
        """A batch came back: the clocks start again."""
        self.last = self.looked = self.clock()
        self.starved_since = None

    def check(self) -> str | None:
        """None while the run may still be making progress; else why it is stopped."""
        now = self.clock()
        idle = now - self.last
        if now - self.looked < self.look_seconds and idle < self.stall_seconds:
            return None
        self.looked = now
        view = self.looker()
        waiting = self.starving(view)
        if waiting is None:
            self.starved_since = None
        elif self.starved_since is None:
            self.starved_since = now
        if waiting is not None and self.starved_since is not None and now - self.starved_since >= self.starved_seconds:
            advice = ("run it when they finish, or on a cluster of its own" if view.other_jobs
                      else "add nodes or CPUs, or run with fewer model_workers")
            return (f"the Ray run stopped: nothing came back for {idle:.0f} s while {waiting} waited for room "
                    f"that no node has ({view.describe()}); {advice}")
        if idle >= self.stall_seconds:
            return (f"the Ray run stopped: nothing came back for {idle:.0f} s ({view.describe()}); if one model call "
                    f"takes longer, raise whisperkit.core.corpus.engines.ray_watch.STALL_SECONDS")
        return None

    def starving(self, view: ClusterView) -> str | None:
        """What of the run waits for room no node has (``a model worker (0.5 CPU)``), or None."""
        for shape in self.shapes:
            if view.waiting and any(shape.matches(bundle) for bundle in view.waiting) and not shape.fits(view):
                return f"a {shape.name} ({shape.cpus:g} CPU" + (f", {shape.gpus:g} GPU)" if shape.gpus else ")")
        if view.other_jobs and view.nodes and not any(shape.fits(view) for shape in self.shapes):
            return "the run's work"  # Ray Data holds work back while other executions share the cluster
        return None


class Feed:
    """The items of ``items`` (Ray Data's batches), read on a thread of its own so that the
    driver's wait for each is bounded by ``watch``; ``stop_run()`` ends the run's work in Ray
    when the watch gives up or the driver is interrupted before the reading thread ends.

    Use as a context manager; iterate it for the items. An error raised while reading is
    raised here; a stuck run is a :class:`~whisperkit.errors.ClusterError`.
    """

    def __init__(self, items: Iterable, watch: Watch, stop_run: Callable[[], None], *, poll: float = POLL_SECONDS) -> None:
        self.items = items
        self.watch = watch
        self.stop_run = stop_run
        self.poll = poll
        self.queue: queue.Queue = queue.Queue(maxsize=1)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._read, name="whisperkit-ray-feed", daemon=True)

    def __enter__(self) -> Feed:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(STOP_SECONDS if exc[0] is not None else None)
        if self.thread.is_alive():  # stuck inside Ray: end the run's work there
            self.stop_run()

    def __iter__(self) -> Iterator:
        while True:
            try:
                kind, item = self.queue.get(timeout=self.poll)
            except queue.Empty:
                reason = self.watch.check()
                if reason is not None:
                    self.stopping.set()
                    self.stop_run()
                    raise ClusterError(reason) from None
                continue
            if kind == "end":
                return
            if kind == "error":
                raise item
            self.watch.progressed()
            yield item

    def _put(self, kind: str, item: object) -> bool:
        while not self.stopping.is_set():
            try:
                self.queue.put((kind, item), timeout=self.poll)
                return True
            except queue.Full:
                continue
        return False

    def _read(self) -> None:
        iterator = iter(self.items)
        try:
            for item in iterator:
                if not self._put("item", item):
                    break
            else:
                self._put("end", None)
        except BaseException as error:  # handed to the driver's thread
            self._put("error", error)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                try:
                    close()  # a generator left early: Ray Data ends its execution
                except Exception:
                    pass


def stop_execution(ray: Any, dataset: Any) -> None:
    """End the execution of Ray Data's ``dataset`` in this process: its tasks cancelled, its
    model workers killed, and the thread reading its batches ended, while this process stays
    joined to the cluster (a Ray the caller joined is theirs to keep).

    Ray Data runs each execution on a thread of its own, a ``StreamingExecutor`` named after
    the dataset's id, whose ``shutdown(force=True)`` does this. Where this Ray Data has none to
    find, or it fails, this process leaves the cluster (``ray.shutdown()``), which ends them too.
    """
    try:
        name = f"StreamingExecutor-{dataset.get_dataset_id()}"
        found = [getattr(thread, "shutdown", None) for thread in threading.enumerate() if thread.name == name]
        stops = [stop for stop in found if callable(stop)]
        for stop in stops:
            stop(force=True)
    except Exception:  # another Ray Data: no id to find its execution by, or an executor that stops otherwise
        stops = []
    if not stops:
        ray.shutdown()


__all__ = ["LOOK_SECONDS", "ROOM_SECONDS", "STALL_SECONDS", "STARVED_SECONDS", "ClusterView", "Feed", "Shape",
           "Watch", "look", "stop_execution", "wait_for_room"]
