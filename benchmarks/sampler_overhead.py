"""What a running Sampler at 10 Hz costs, and whether a busy machine can starve it.

    .venv/bin/python benchmarks/sampler_overhead.py [--repeats 7] [--work-seconds 1.0] [--starvation-repeats 3]

1. Cost. A pure-Python loop is timed alternately without and with ``Sampler(interval=0.1)``
   running (started before and stopped after the timed region, so only the steady state counts).
   The sampling process reports its own CPU time while sampling (``Sampler.thread_cpu_s``,
   start-up excluded). Target: at most 1 % of one core.
2. Starvation. Over 4.5 s at 10 Hz, this process spins a pure-Python loop (holding the GIL) while
   one busy process per core keeps every core busy; the slots sampled on time are counted, for
   the Sampler (its own process) and, alternately, for a sampler thread in this interpreter doing
   the same reads (what whisperkit used before). Target: at least 43 of 45.

On a machine shared with other work both numbers are noisy: read the medians, and say so.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from whisperkit.measure.probes import Probes  # noqa: E402
from whisperkit.measure.sampler import Sampler  # noqa: E402

INTERVAL_S = 0.1
WINDOW_S = 4.5
SPIN = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass"


def work(n: int) -> int:
    """CPU-bound pure Python: n iterations of integer arithmetic."""
    total = 0
    for i in range(n):
        total = (total + i * i) % 1_000_003
    return total


def calibrate(seconds: float) -> int:
    """Iterations of :func:`work` that take about ``seconds``."""
    n = 100_000
    while True:
        started = time.perf_counter()
        work(n)
        elapsed = time.perf_counter() - started
        if elapsed > 0.2:
            return int(n * seconds / elapsed)
        n *= 2


def timed(n: int) -> float:
    started = time.perf_counter()
    work(n)
    return time.perf_counter() - started


class ThreadSampler:
    """The baseline: the same reads on a thread of this interpreter, on the same schedule."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._stop = threading.Event()

    def __enter__(self) -> ThreadSampler:
        self._probes = Probes(os.getpid(), gpus=False)
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        slot = 0
        while not self._stop.wait(max(0.0, self._t0 + slot * INTERVAL_S - time.monotonic())):
            now = time.monotonic()
            self._probes.read(now, now - self._t0)
            self.times.append(now - self._t0)
            slot = max(slot + 1, int((time.monotonic() - self._t0) / INTERVAL_S) + 1)

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
        self._probes.close()


def on_time_slots(times) -> int:
    """Slots k (k x 0.1 s, 0 < k x 0.1 <= 4.5) with a sample within half an interval of them."""
    return len({round(t / INTERVAL_S) for t in times
                if 0.05 < t <= WINDOW_S and abs(t / INTERVAL_S - round(t / INTERVAL_S)) < 0.5})


def starved(kind: str) -> int:
    hogs = [subprocess.Popen([sys.executable, "-c", SPIN.format(seconds=WINDOW_S + 3)]) for _ in range(os.cpu_count() or 2)]
    try:
        time.sleep(0.3)
        sampler = Sampler(interval=INTERVAL_S, gpus=False) if kind == "process" else ThreadSampler()
        with sampler:
            started = time.monotonic()
            while time.monotonic() - started < WINDOW_S + 0.1:
                sum(range(200))
        times = sampler.timeline["time_s"] if kind == "process" else sampler.times
        return on_time_slots(times)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--work-seconds", type=float, default=1.0)
    parser.add_argument("--starvation-repeats", type=int, default=3)
    args = parser.parse_args()

    n = calibrate(args.work_seconds)
    timed(n)  # warm up
    without, with_sampler, cpu_per_s, cpu_per_sample_ms, rates, gpu_reason = [], [], [], [], [], None
    for _ in range(args.repeats):
        without.append(timed(n))
        sampler = Sampler(interval=INTERVAL_S)
        sampler.start()
        started = time.monotonic()
        with_sampler.append(timed(n))
        sampler.stop()
        lifetime = time.monotonic() - started
        samples = len(sampler.samples())
        cpu_per_s.append(sampler.thread_cpu_s / lifetime)
        cpu_per_sample_ms.append(1000 * sampler.thread_cpu_s / max(samples, 1))
        rates.append((samples - 1) / lifetime)
        gpu_reason = sampler.gpu_unavailable_reason
    slots: dict[str, list[int]] = {"thread": [], "process": []}
    for _ in range(args.starvation_repeats):
        for kind in ("thread", "process"):
            slots[kind].append(starved(kind))

    base, loaded = statistics.median(without), statistics.median(with_sampler)
    print(f"machine: {os.cpu_count()} logical cores, load average {os.getloadavg()[0]:.1f}, Python {sys.version.split()[0]}")
    print(f"GPU: {'sampled' if gpu_reason is None else gpu_reason}")
    print(f"loop of {n} iterations, {args.repeats} alternating repeats, sampler at {1 / INTERVAL_S:.0f} Hz")
    print(f"  without sampler: median {base:.4f} s   (min {min(without):.4f}, max {max(without):.4f})")
    print(f"  with sampler:    median {loaded:.4f} s   (min {min(with_sampler):.4f}, max {max(with_sampler):.4f})")
    print(f"  slowdown of the loop: {100 * (loaded / base - 1):+.2f} % of the median "
          f"({100 * (min(with_sampler) / min(without) - 1):+.2f} % of the fastest)")
    print(f"  samples per second while the loop ran: {statistics.median(rates):.1f} (target {1 / INTERVAL_S:.0f})")
    print(f"  sampling process CPU: {100 * statistics.median(cpu_per_s):.2f} % of one core "
          f"({statistics.median(cpu_per_sample_ms):.2f} ms CPU per sample; target at most 1 %)")
    if not args.starvation_repeats:
        return 0
    print(f"starvation: {WINDOW_S} s at 10 Hz, this process spinning, {os.cpu_count()} busy processes, "
          f"{args.starvation_repeats} alternating repeats")
    for kind, label in (("thread", "thread in this interpreter (before)"), ("process", "Sampler, own process (now)")):
        print(f"  {label:38s} slots on time: median {statistics.median(slots[kind])} of 45 {sorted(slots[kind])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
