"""How much a running Sampler at 10 Hz costs: slowdown of a CPU-bound loop, and the thread's own CPU.

    .venv/bin/python benchmarks/sampler_overhead.py [--repeats 7] [--work-seconds 1.0]

A pure-Python loop (it holds the GIL, the worst case for a Python sampler thread) is timed
alternately without and with ``Sampler(interval=0.1)`` running. The sampler is started before and
stopped after the timed region, so only the steady state is measured. The thread's own CPU time
comes from ``time.thread_time()`` inside the thread (``Sampler.thread_cpu_s``).
Target: at most 1 % of one core.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from whisperkit.measure.sampler import Sampler  # noqa: E402

INTERVAL_S = 0.1


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--work-seconds", type=float, default=1.0)
    args = parser.parse_args()

    n = calibrate(args.work_seconds)
    timed(n)  # warm up
    without, with_sampler, thread_cpu_per_s, cpu_per_sample_ms, rates, gpu_reason = [], [], [], [], [], None
    for _ in range(args.repeats):
        without.append(timed(n))
        sampler = Sampler(interval=INTERVAL_S)
        sampler.start()
        started = time.monotonic()
        with_sampler.append(timed(n))
        sampler.stop()
        lifetime = time.monotonic() - started
        samples = len(sampler.samples()) - 2  # the first and last are taken in this thread
        thread_cpu_per_s.append(sampler.thread_cpu_s / lifetime)
        cpu_per_sample_ms.append(1000 * sampler.thread_cpu_s / max(samples, 1))
        rates.append(samples / lifetime)
        gpu_reason = sampler.gpu_unavailable_reason

    base, loaded = statistics.median(without), statistics.median(with_sampler)
    print(f"machine: {os.cpu_count()} logical cores, Python {sys.version.split()[0]}")
    print(f"GPU: {'sampled' if gpu_reason is None else gpu_reason}")
    print(f"loop of {n} iterations, {args.repeats} alternating repeats, sampler at {1 / INTERVAL_S:.0f} Hz")
    print(f"  without sampler: median {base:.4f} s   (min {min(without):.4f}, max {max(without):.4f})")
    print(f"  with sampler:    median {loaded:.4f} s   (min {min(with_sampler):.4f}, max {max(with_sampler):.4f})")
    print(f"  slowdown of the loop: {100 * (loaded / base - 1):+.2f} % of the median "
          f"({100 * (min(with_sampler) / min(without) - 1):+.2f} % of the fastest)")
    print(f"  samples per second while the loop ran: {statistics.median(rates):.1f} (target {1 / INTERVAL_S:.0f})")
    print(f"  sampler thread CPU: {100 * statistics.median(thread_cpu_per_s):.2f} % of one core "
          f"({statistics.median(cpu_per_sample_ms):.2f} ms CPU per sample)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
