"""Peak memory of a corpus run against the number of files: is it flat, as the README promises?

One folder of ``max(--sizes)`` one-second WAV clips (one-second stretches of the bundled speech,
each at its own gain); for each size N, a fresh process runs ``wk.transcribe_corpus`` on the
first N (an ``@list``) into its own output folder, the bundled tiny.en on the CPU, and reports
its peak resident size (``ru_maxrss``), its resident size at the end, and after glibc's
``malloc_trim(0)`` (what the process holds, against what the allocator kept). Sizes run in the
order given, ``--repeats`` times, alternating; medians.

``--fake-model`` replaces the model's forward pass with one that returns a word per clip at
once: what remains is the pipeline's own memory (decoding, packing, features, the writer, the
outputs and manifest, the per-file results kept), apart from the model's working memory.

    .venv/bin/python benchmarks/corpus_memory.py [--sizes 500,6000] [--repeats 1] [--no-pack] [--fake-model]

With the model, the child also reports which batches raised the peak (``raised_peak``: batch
number, peak after it in MB, its longest text in characters) and the resident size after each
batch (median), to tell a model batch that needs more memory from memory that creeps up.

Measured on the 2-core machine (bundled tiny.en, int8, beam 5, batch size 8; 1-second clips are
never packed, so each is a window of its own). Quiet machine (load about 2, this run alone):
500 files peak at 507 MB and 6000 at 538 MB, 1.06x (end of run 329 and 341 MB, after
``malloc_trim`` 252 and 259; median resident size after a batch 314 and 329 MB; 271 s and
2294 s). The peak is the model's first batch (491 and 495 MB) plus two or three steps of
15-27 MB in the first 300 batches, none after (batch 299 of 750 set the 6000-file peak); the
longest text of a clip was 30 characters, so no runaway decode raised it. With
``--fake-model``, 500 files peak at 254 MB and 6000 at 255 MB (load about 15; end of run 209 and
225 MB: the 6000 results and manifest entries kept add about 16 MB). At load 15 (other work
on both cores) an earlier 500-file run with the model peaked at 1081 MB (end 331, after
``malloc_trim`` 264).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import wave

import numpy as np

CHILD = r"""
import ctypes, json, resource, statistics, sys, time
import psutil
import whisperkit as wk
listing, output, pack, fake = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4] == "1"
if fake:
    from whisperkit.core.corpus import decoding

    def forward(self, windows):
        return [[{"text": " word" * len(window.places), "start": 0.0, "end": window.seconds,
                  "words": [{"word": " word", "start": place.start + 0.1, "end": place.start + 0.6,
                             "probability": 0.9} for place in window.places]}] for window in windows]

    decoding.WindowDecoder._forward = forward
else:  # which batches raised the peak, and the longest text each decoded
    from whisperkit.core.corpus import decoding

    real, batches = decoding.WindowDecoder._forward, []

    def forward(self, windows):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        outputs = real(self, windows)
        batches.append({"peak_before_mb": before, "peak_after_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                        "rss_after_mb": psutil.Process().memory_info().rss / 2**20,
                        "longest_text": max((sum(len(s["text"]) for s in output) for output in outputs), default=0)})
        if len(batches) % 100 == 0:  # to the terminal as it runs: a run stopped early still tells its peak so far
            print(f"  {len(batches)} batches, peak so far {batches[-1]['peak_after_mb']:.0f} MB", file=sys.stderr, flush=True)
        return outputs

    decoding.WindowDecoder._forward = forward
model = wk.load_model(device="cpu")
before = psutil.Process().memory_info().rss
started = time.monotonic()
result = wk.transcribe_corpus("@" + listing, model, output_dir=output, pack=pack, progress=False)
wall = time.monotonic() - started
end = psutil.Process().memory_info().rss
ctypes.CDLL("libc.so.6").malloc_trim(0)
trimmed = psutil.Process().memory_info().rss
report = {"files": len(result.transcripts), "failed": len(result.failures), "wall_s": wall,
          "loaded_mb": before / 2**20, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
          "end_mb": end / 2**20, "trimmed_mb": trimmed / 2**20}
if not fake and batches:
    raised = [(number, round(b["peak_after_mb"]), b["longest_text"]) for number, b in enumerate(batches)
              if b["peak_after_mb"] > b["peak_before_mb"] + 5]
    report.update(batches=len(batches), first_batch_peak_mb=batches[0]["peak_after_mb"],
                  rss_after_batch_median_mb=statistics.median(b["rss_after_mb"] for b in batches),
                  longest_text=max(b["longest_text"] for b in batches), raised_peak=raised[:20])
print(json.dumps(report))
"""


def make_clips(folder: str, count: int) -> list[str]:
    """``count`` one-second 16 kHz WAV clips of speech in ``folder``."""
    import whisperkit as wk
    from whisperkit.core.samples import sample_path

    speech = wk.load_audio(sample_path("gettysburg")).samples
    loud = [start for start in range(0, len(speech) - 16000, 8000)
            if np.abs(speech[start:start + 16000]).max() > 0.05]
    paths = []
    for number in range(count):
        start = loud[number % len(loud)]
        gain = 0.5 + (number * 0.37) % 0.9
        path = os.path.join(folder, f"clip_{number:05d}.wav")
        with wave.open(path, "wb") as handle:
            handle.setnchannels(1)
            handle.setsampwidth(2)
            handle.setframerate(16000)
            handle.writeframes((np.clip(speech[start:start + 16000] * gain, -1, 1) * 32767).astype("<i2").tobytes())
        paths.append(path)
    return paths


def measure(paths: list[str], size: int, work: str, pack: bool, run: int, fake: bool) -> dict:
    listing = os.path.join(work, f"list_{size}.txt")
    with open(listing, "w") as handle:
        handle.write("\n".join(paths[:size]) + "\n")
    output = os.path.join(work, f"out_{size}_{run}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", CHILD, listing, output, "1" if pack else "0", "1" if fake else "0"], env=env,
                          stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="500,6000")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-pack", dest="pack", action="store_false")
    parser.add_argument("--fake-model", action="store_true", help="the pipeline's own memory, without the model's")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as work:
        paths = make_clips(work, max(sizes))
        results: dict[int, list[dict]] = {size: [] for size in sizes}
        for run in range(args.repeats):
            for size in sizes:
                results[size].append(measure(paths, size, work, args.pack, run, args.fake_model))
                print(size, results[size][-1], flush=True)
    print(f"\n{'files':>6} {'peak MB':>8} {'end MB':>7} {'trimmed MB':>10} {'wall s':>7}  (medians of {args.repeats})")
    for size in sizes:
        def median(key: str, size: int = size) -> float:
            return statistics.median(result[key] for result in results[size])
        print(f"{size:>6} {median('peak_mb'):>8.0f} {median('end_mb'):>7.0f} {median('trimmed_mb'):>10.0f} "
              f"{median('wall_s'):>7.1f}")
    first, last = sizes[0], sizes[-1]
    ratio = statistics.median(r["peak_mb"] for r in results[last]) / statistics.median(
        r["peak_mb"] for r in results[first])
    print(f"peak for {last} files / peak for {first}: {ratio:.2f}")


if __name__ == "__main__":
    main()
