"""glibc's allocator settings against the corpus model stage: per-batch peak memory, memory held
between batches, and CPU time per batch, for each setting.

Issue 22 asked whether glibc's dynamic mmap threshold (after a large mmapped block is freed the
threshold rises, up to 32 MiB, so later large buffers come from the heap and fragment it) or its
per-thread arenas make the peak of a corpus run grow with the number of files. This decodes the
same batches (``--windows`` one-second clips of the bundled speech, one window each, as
``corpus_memory.py`` makes them; batch size 8, beam 5, the bundled tiny.en on the CPU) through the
corpus pipeline's :class:`~whisperkit.core.corpus.decoding.WindowDecoder`, in one fresh process
per setting (``mallopt`` before the model loads), alternating the settings over the repeats.
Per batch: the peak resident size during it (Linux's ``VmHWM``, reset before each batch through
``/proc/self/clear_refs``), the resident size after it, and the process's CPU time (all threads;
less disturbed by other work on a shared machine than wall time). Medians over the batches after
the first, then over the repeats; each setting's CPU time against the default's in the same round.

    .venv/bin/python benchmarks/corpus_allocator.py [--windows 48] [--repeats 4]
        [--settings default,mmap=1048576+trim=33554432,mmap=4194304+trim=33554432,arena=2]

Linux with glibc only. Measured on the 2-core machine, quiet (this run alone; 48 windows, 4
repeats): peak during a batch 429 MB by default, 420 with ``M_MMAP_THRESHOLD`` fixed at 1 MiB,
424 at 4 MiB, 428 with ``M_ARENA_MAX`` 2 (the model's working memory for a batch is real,
whatever the allocator); held between batches 253 MB by default, 199 at 1 MiB, 201 at 4 MiB,
252 with 2 arenas; CPU time per batch against the default 1.33x at 1 MiB (rounds 1.13-1.41: the
freed buffers are unmapped and faulted in again), 1.09x at 4 MiB (0.97-1.15) and 0.99x with 2
arenas (0.97-1.13). None lowers the peak, and a corpus run's peak is flat in the number of files
without them (``corpus_memory.py``: 507 MB for 500 one-second files, 538 MB for 6,000), so
whisperkit sets none of them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

MALLOPT = {"mmap": -3, "trim": -1, "arena": -8}  # glibc's M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, M_ARENA_MAX

CHILD = r"""
import ctypes, json, statistics, sys, time
settings, paths = json.loads(sys.argv[1]), sys.argv[2:]
libc = ctypes.CDLL("libc.so.6")
for number, value in settings:
    if libc.mallopt(number, value) != 1:
        sys.exit(f"mallopt({number}, {value}) failed")
import whisperkit as wk
from whisperkit.core.corpus.decoding import WindowDecoder
from whisperkit.core.corpus.stages import Source, add_features, build_window, read_pieces


def status_mb(field):
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) / 1024 for line in handle if line.startswith(field))


decoder = WindowDecoder(wk.load_model(device="cpu"), beam_size=5)
batches = []
for start in range(0, len(paths), 8):
    windows = [add_features(build_window([next(read_pieces(Source(start + i, path, str(i))))]), decoder.feature_extractor)
               for i, path in enumerate(paths[start:start + 8])]
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # VmHWM from here
    cpu = time.process_time()
    decoder(windows)
    batches.append({"cpu_s": time.process_time() - cpu, "peak_mb": status_mb("VmHWM:"), "after_mb": status_mb("VmRSS:")})
later = batches[1:] or batches
print(json.dumps({key: statistics.median(batch[key] for batch in later) for key in ("cpu_s", "peak_mb", "after_mb")}))
"""


def parse_setting(text: str) -> list[tuple[int, int]]:
    """``mmap=1048576+trim=33554432`` -> ``[(M_MMAP_THRESHOLD, 1048576), (M_TRIM_THRESHOLD, 33554432)]``."""
    if text == "default":
        return []
    pairs = []
    for part in text.split("+"):
        name, _, value = part.partition("=")
        pairs.append((MALLOPT[name], int(value)))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--settings", default="default,mmap=1048576+trim=33554432,mmap=4194304+trim=33554432,arena=2")
    args = parser.parse_args()
    if not sys.platform.startswith("linux"):
        sys.exit("corpus_allocator.py: Linux with glibc only (mallopt, /proc/self/clear_refs)")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from corpus_memory import make_clips

    settings = ["default", *[s for s in args.settings.split(",") if s != "default"]]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}
    results: dict[str, list[dict]] = {setting: [] for setting in settings}
    with tempfile.TemporaryDirectory() as work:
        paths = make_clips(work, args.windows)
        for _ in range(args.repeats):
            for setting in settings:
                done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(parse_setting(setting)), *paths], env=env,
                                      capture_output=True, text=True, check=True)
                results[setting].append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(setting, results[setting][-1], flush=True)
    print(f"\n{'setting':<30} {'peak MB':>8} {'after MB':>9} {'CPU s':>6} {'CPU x default':>14}  (medians of {args.repeats})")
    for setting in settings:
        runs = results[setting]
        ratio = statistics.median(run["cpu_s"] / base["cpu_s"] for run, base in zip(runs, results["default"]))
        print(f"{setting:<30} {statistics.median(r['peak_mb'] for r in runs):>8.0f} "
              f"{statistics.median(r['after_mb'] for r in runs):>9.0f} {statistics.median(r['cpu_s'] for r in runs):>6.2f} "
              f"{ratio:>14.2f}")


if __name__ == "__main__":
    main()
