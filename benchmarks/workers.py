"""What ``num_workers`` costs one caller: wall time, memory and which workers ran, per setting.

The seed ran sequential ``WhisperModel.transcribe`` with ``num_workers=24`` (CTranslate2's
``inter_threads``). This starts one fresh process per setting (so that each process's memory is
its own), alternating the settings over the repeats, and in each loads the bundled model with
that many workers, transcribes the bundled sample sequentially once to warm up and once timed,
and reports:

- wall seconds of the timed transcription (median over the repeats);
- resident memory after loading and its peak (``ru_maxrss``), in MB (medians);
- the process's OS threads, and how many of them used CPU time during the two transcriptions
  (a CTranslate2 worker is a thread; one that never got a job stays at 0 s, and its OpenMP
  team is only created when it first runs one).

    .venv/bin/python benchmarks/workers.py [--workers 1,24] [--repeats 3] [--audio FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

BUSY_THREAD_SECONDS = 0.05  # a thread that used more CPU time than this ran work


def _thread_times() -> dict[int, float]:
    import psutil

    return {t.id: t.user_time + t.system_time for t in psutil.Process().threads()}


def measure_one(workers: int, audio: str | None) -> dict[str, float]:
    """In this process: load with ``workers`` workers, transcribe twice, and report the figures."""
    import psutil

    import whisperkit as wk

    path = audio or wk.sample_path()
    model = wk.load_model(num_workers=workers)
    loaded_mb = psutil.Process().memory_info().rss / 2**20
    before = _thread_times()
    wk.transcribe(path, model=model, mode="sequential")  # warm-up
    started = time.perf_counter()
    wk.transcribe(path, model=model, mode="sequential")
    wall = time.perf_counter() - started
    after = _thread_times()
    busy = sum(1 for tid, seconds in after.items() if seconds - before.get(tid, 0.0) > BUSY_THREAD_SECONDS)
    return {"wall_s": wall, "loaded_mb": loaded_mb, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "threads": len(after), "busy_threads": busy}


def run_child(workers: int, audio: str | None) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", str(workers)] + (["--audio", audio] if audio else [])
    output = subprocess.run(command, check=True, capture_output=True, text=True, env=os.environ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,24", help="comma-separated num_workers values")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--audio", default=None, help="default: the bundled sample")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(measure_one(args.child, args.audio)))
        return
    settings = [int(value) for value in args.workers.split(",")]
    results: dict[int, list[dict[str, float]]] = {n: [] for n in settings}
    for repeat in range(args.repeats):
        for n in settings if repeat % 2 == 0 else reversed(settings):
            results[n].append(run_child(n, args.audio))
    print(f"sequential transcribe of {args.audio or 'the bundled sample'}, one caller, cpu_threads=0 "
          f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, {os.cpu_count()} logical CPUs), "
          f"medians of {args.repeats} fresh processes, alternating")
    print(f"{'num_workers':>11}{'wall s':>9}{'ratio':>7}{'RSS loaded MB':>15}{'peak MB':>9}"
          f"{'threads':>9}{'busy threads':>14}")
    base = statistics.median(r["wall_s"] for r in results[settings[0]])
    for n in settings:
        median = {key: statistics.median(r[key] for r in results[n]) for key in results[n][0]}
        walls = sorted(r["wall_s"] for r in results[n])
        print(f"{n:>11}{median['wall_s']:>9.2f}{median['wall_s'] / base:>7.2f}{median['loaded_mb']:>15.0f}"
              f"{median['peak_mb']:>9.0f}{median['threads']:>9.0f}{median['busy_threads']:>14.0f}"
              f"   (wall {walls[0]:.2f}-{walls[-1]:.2f})")


if __name__ == "__main__":
    main()
