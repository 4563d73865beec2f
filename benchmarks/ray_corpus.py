"""The corpus pipeline on this machine: the local engine (threads) against the Ray engine (a local Ray).

On one machine Ray can only add cost: actors to start (a process each, the model loaded in each),
objects to move through the object store, a driver to feed. This measures that cost, what the
per-worker timelines show, and that both engines write the same words: a corpus of 60 short
clips (the ten bundled clips, six copies each, in subfolders), alternating repeats, medians.
Ray is started (or joined) once, before the first repeat, and that time is reported apart.

    .venv/bin/python benchmarks/ray_corpus.py [--repeats 3] [--copies 6] [--model-workers 2] [--figure out.html]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import whisperkit as wk
from whisperkit.core.samples import short_clips


def make_corpus(folder: Path, copies: int) -> list[str]:
    """``copies`` subfolders of the ten bundled clips; the paths in order."""
    paths = []
    for copy in range(copies):
        sub = folder / f"copy_{copy}"
        sub.mkdir(parents=True)
        for clip in short_clips():
            target = sub / Path(clip).name
            shutil.copy(clip, target)
            paths.append(str(target))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--copies", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--model-workers", type=int, default=2)
    parser.add_argument("--ray-address", default=None)
    parser.add_argument("--figure", default=None, help="write the last Ray run's per-worker timelines to this HTML file")
    args = parser.parse_args()

    from whisperkit.core.corpus.engines.ray_cluster import connect

    with tempfile.TemporaryDirectory() as tmp:
        paths = make_corpus(Path(tmp) / "corpus", args.copies)
        model = wk.load_model()
        started = time.perf_counter()
        cluster = connect(args.ray_address)
        ray_start = time.perf_counter() - started
        runs = {"local": [], "ray": []}
        for _ in range(args.repeats):
            for engine in runs:
                kwargs = {"engine": "ray", "model_workers": args.model_workers} if engine == "ray" else {"model": model}
                started = time.perf_counter()
                result = wk.transcribe_corpus(Path(tmp) / "corpus", batch_size=args.batch_size, progress=False, **kwargs)
                runs[engine].append((time.perf_counter() - started, result))
    report(paths, runs, cluster, ray_start, args)


def report(paths: list[str], runs: dict, cluster: dict, ray_start: float, args) -> None:
    local, on_ray = runs["local"][-1][1], runs["ray"][-1][1]
    audio = local.audio_seconds
    walls = {engine: statistics.median(wall for wall, _ in values) for engine, values in runs.items()}
    print(f"{len(paths)} clips, {audio:.0f} s of speech, tiny.en int8 on {cluster['cpus']:.0f} CPUs, "
          f"{args.repeats} alternating repeats, batch size {args.batch_size}, "
          f"load average {os.getloadavg()[0]:.1f} at the end")
    print(f"Ray {'started' if cluster['started'] else 'joined'} in {ray_start:.1f} s (once, not in the walls below)")
    for engine, wall in walls.items():
        extra = f", {args.model_workers} model actors" if engine == "ray" else ""
        print(f"  {engine:<6} median wall {wall:6.1f} s  RTFx {audio / wall:5.1f}  ratio to local {wall / walls['local']:.2f}{extra}")
    local_text = " ".join(local.transcripts[p].text for p in paths)
    ray_text = " ".join(on_ray.transcripts[p].text for p in paths)
    print(f"WER between the engines over the corpus: {wk.word_error_rate(local_text, ray_text):.4f} "
          f"(windows: local {local.windows}, ray {on_ray.windows})")
    print("Last Ray run, stage accounting (seconds; the model summed over its workers):")
    print(on_ray.stage_table().to_string())
    print("Per model worker:")
    print(on_ray.worker_table().drop(columns=["pid"]).to_string())
    for worker in on_ray.worker_timelines:
        first = min(span.start_s for span in worker.spans)
        last = max(span.end_s for span in worker.spans)
        print(f"  {worker.label}: model loaded at {worker.loaded_at_s:.1f} s (load {worker.load_seconds:.1f} s), "
              f"decoding from {first:.1f} s to {last:.1f} s of a {on_ray.wall_seconds:.1f} s run")
    if args.figure:
        wk.plots.worker_timelines(on_ray).write_html(args.figure)
        print(f"per-worker timelines: {args.figure}")


if __name__ == "__main__":
    main()
