"""The Ray engine's bounded waits, without Ray: the room a run waits for before it starts, the
watch that stops a run whose work waits for room no node has, and the feed that bounds the
driver's wait for each batch. A fake clock and fake views of the cluster stand in for Ray
(the real thing: tests/core/corpus/test_ray_cluster.py)."""

from __future__ import annotations

import threading

import pytest

import whisperkit as wk
from whisperkit.core.corpus.engines.ray_watch import ClusterView, Feed, Shape, Watch, wait_for_room

WORKER = Shape("model worker", 0.5)
TASK = Shape("CPU task", 0.5, memory=256 * 2**20)
TASK_DEMAND = {"CPU": 0.5, "memory": 256.0 * 2**20}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def watch_with(views: list[ClusterView], clock: Clock) -> Watch:
    """A watch (look every 5 s, starved after 60 s, stalled after 600 s) over ``views``, the last one repeated."""
    def looker() -> ClusterView:
        return views.pop(0) if len(views) > 1 else views[0]
    return Watch([WORKER, TASK], looker, clock=clock, look_seconds=5, starved_seconds=60, stall_seconds=600)


def run_watch(watch: Watch, clock: Clock, seconds: float, step: float = 1.0) -> tuple[float, str | None]:
    """Advance ``clock`` by ``step`` until ``watch.check()`` gives a reason or ``seconds`` pass."""
    started = clock.now
    while clock.now - started < seconds:
        clock.now += step
        reason = watch.check()
        if reason is not None:
            return clock.now - started, reason
    return clock.now - started, None


def test_a_restarted_model_worker_with_no_room_stops_the_run_after_the_starved_time():
    clock = Clock()
    view = ClusterView(cpus=2, free_cpus=0, nodes=2, waiting=[{"CPU": 0.5}])
    waited, reason = run_watch(watch_with([view], clock), clock, 200)
    assert reason is not None and 60 <= waited <= 70, waited  # first look after 5 s, then 60 s starved
    assert reason.startswith("the Ray run stopped: nothing came back for ")
    assert "a model worker (0.5 CPU) waited for room that no node has (0 of 2 CPUs free on 2 node(s))" in reason
    assert reason.endswith("add nodes or CPUs, or run with fewer model_workers") and "\n" not in reason


def test_other_jobs_holding_the_cpus_stop_the_run_and_are_named():
    clock = Clock()
    view = ClusterView(cpus=3, free_cpus=0, nodes=3, waiting=[TASK_DEMAND],
                       other_jobs=["pid 10425 (python notebook.py)", "pid 11130 (python bench.py)"])
    _, reason = run_watch(watch_with([view], clock), clock, 200)
    assert reason is not None and "a CPU task (0.5 CPU) waited" in reason
    assert "2 other jobs on the cluster (pid 10425 (python notebook.py), pid 11130 (python bench.py))" in reason
    assert reason.endswith("run it when they finish, or on a cluster of its own")
    quiet = ClusterView(cpus=3, free_cpus=0, nodes=3, waiting=[], other_jobs=["pid 1 (python x.py)"])
    _, reason = run_watch(watch_with([quiet], clock), clock, 200)  # Ray Data holding back: no demand to see
    assert reason is not None and "while the run's work waited" in reason


def test_a_busy_run_is_never_stopped_for_waiting_work_while_batches_come_back():
    """Every CPU held by the run itself, a CPU task waiting: batches every 30 s keep it going."""
    clock = Clock()
    watch = watch_with([ClusterView(cpus=3, free_cpus=0, nodes=3, waiting=[TASK_DEMAND])], clock)
    for _ in range(20):
        _, reason = run_watch(watch, clock, 30)
        assert reason is None
        watch.progressed()


def test_room_coming_back_restarts_the_starved_clock():
    clock = Clock()
    starved = ClusterView(cpus=2, free_cpus=0, nodes=2, waiting=[{"CPU": 0.5}])
    roomy = ClusterView(cpus=3, free_cpus=1, nodes=3, waiting=[])
    views = [starved] * 8 + [roomy] + [starved]  # starved for 40 s, room at one look, starved again
    waited, reason = run_watch(watch_with(views, clock), clock, 300)
    assert reason is not None and waited > 100, waited


def test_nothing_back_for_the_stall_time_stops_the_run_whatever_ray_says():
    clock = Clock()
    waited, reason = run_watch(watch_with([ClusterView()], clock), clock, 700, step=10)  # Ray says nothing
    assert reason is not None and waited == 600
    assert reason.startswith("the Ray run stopped: nothing came back for 600 s (0 of 0 CPUs free on 0 node(s))")
    assert "raise whisperkit.core.corpus.engines.ray_watch.STALL_SECONDS" in reason


class FakeRay:
    """What :func:`look` reads of Ray: total and free resources, live nodes (the demand and jobs: absent)."""

    def __init__(self, free: list[float], cpus: float = 3.0) -> None:
        self.free, self.cpus = free, cpus

    def cluster_resources(self) -> dict:
        return {"CPU": self.cpus}

    def available_resources(self) -> dict:
        return {"CPU": self.free.pop(0) if len(self.free) > 1 else self.free[0]}

    def nodes(self) -> list[dict]:
        return [{"Alive": True}] * 3

    def get_runtime_context(self):
        raise RuntimeError("no Ray here")


def test_a_run_waits_for_room_then_starts_or_is_refused_in_one_line():
    clock = Clock()

    def sleep(seconds: float) -> None:
        clock.now += seconds

    wait_for_room(FakeRay([0.5, 1.0, 3.0]), [WORKER, TASK], [2, 1], limit=30, sleep=sleep, clock=clock)
    assert clock.now == 1002.0  # room (1.5 CPUs) came at the third look
    with pytest.raises(wk.ClusterError) as refused:
        wait_for_room(FakeRay([1.0]), [WORKER, TASK], [2, 1], limit=30, sleep=sleep, clock=clock)
    assert str(refused.value) == (
        "the Ray cluster has not had room for this run for 30 s (1 of 3 CPUs free on 3 node(s); other work on it "
        "holds the rest): 2 model workers of 0.5 CPU and 1 CPU task of 0.5 CPU need 1.5 CPUs; run it when they "
        "finish, or with fewer model_workers")


def test_the_feed_hands_on_every_item_then_ends_and_raises_what_reading_raised():
    watch = Watch([WORKER], ClusterView)
    with Feed(iter(range(5)), watch, stop_run=lambda: None, poll=0.01) as feed:
        assert list(feed) == [0, 1, 2, 3, 4]

    def broken():
        yield 1
        raise ValueError("block lost")

    with pytest.raises(ValueError, match="block lost"), Feed(broken(), watch, stop_run=lambda: None, poll=0.01) as feed:
        list(feed)


def test_a_feed_whose_reading_is_stuck_stops_the_run_when_the_watch_gives_up():
    """The reading thread blocked for good (as Ray Data waits for a block no node has room to
    make): the driver's wait ends, the run is stopped, and the thread is let go."""
    stuck, stopped = threading.Event(), []

    def never():
        yield "first"
        stuck.wait()
        yield "never"

    class Ticking(Clock):  # each look at the clock: 10 s later (each empty poll of the feed)
        def __call__(self) -> float:
            self.now += 10
            return self.now

    clock = Ticking()
    watch = watch_with([ClusterView(cpus=2, free_cpus=0, nodes=2, waiting=[{"CPU": 0.5}])], clock)
    got = []
    with pytest.raises(wk.ClusterError, match="a model worker"), \
            Feed(never(), watch, stop_run=lambda: (stopped.append(True), stuck.set()), poll=0.01) as feed:
        got.extend(feed)
    assert got == ["first"] and stopped == [True]
