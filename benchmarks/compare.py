"""The seed's before/after comparison, measured: speedup, accuracy, and raw faster-whisper beside it.

For each side (SEED_BEFORE: sequential, num_workers=24; SEED_AFTER: batched, batch size from
memory, num_workers=6) this times ``whisperkit.compare`` (monitored runs) and the same
configuration called on raw faster-whisper in the same process, alternating, several repeats,
and prints medians, the speedup, the word error rates and each side's segmentation.
``--matched`` makes the sequential side decode exactly the batched side's chunks with the
batched side's decoding settings (``compare(matched=True)``); ``--workers N`` gives both sides
``num_workers=N`` (default: the seed's 24 and 6), so that with both, batching is the only
difference left.

    .venv/bin/python benchmarks/compare.py [--repeats 5] [--audio FILE] [--matched] [--workers N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import whisperkit as wk
from whisperkit.core.batching import recommend_for_model


def raw_side(config, path: str) -> float:
    """Wall seconds of raw faster-whisper for ``config``, its decoding options included."""
    from faster_whisper import BatchedInferencePipeline

    model = wk.load_model(config.model, config.device, config.compute_type, config.num_workers, config.cpu_threads)
    started = time.perf_counter()
    if config.mode == "batched":
        batch_size = recommend_for_model(model) if config.batch_size == "auto" else config.batch_size
        segments, _ = BatchedInferencePipeline(model.whisper).transcribe(
            path, batch_size=batch_size, beam_size=config.beam_size, **config.options)
    elif config.segmentation == "batched":  # the batched pipeline's chunks, one window each
        from faster_whisper import decode_audio

        from whisperkit.core.chunking import transcribe_batched_chunks

        segments, _, _ = transcribe_batched_chunks(model.whisper, decode_audio(path),
                                                   {"beam_size": config.beam_size, **config.options})
    else:
        segments, _ = model.whisper.transcribe(path, beam_size=config.beam_size, **config.options)
    list(segments)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--audio", default=wk.sample_path())
    parser.add_argument("--matched", action="store_true")
    parser.add_argument("--workers", type=int, default=None, help="num_workers for both sides")
    args = parser.parse_args()

    before, after = wk.SEED_BEFORE, wk.SEED_AFTER
    if args.workers is not None:
        before, after = before.replace(num_workers=args.workers), after.replace(num_workers=args.workers)
    result = wk.compare(args.audio, before, after, repeats=args.repeats, matched=args.matched, progress=False)
    raw = {"before": [], "after": []}
    for _ in range(args.repeats):
        for side, config in (("before", result.before.config), ("after", result.after.config)):
            raw[side].append(raw_side(config, args.audio))
    print(f"{args.audio}: {result.before.transcript.audio_seconds:.1f} s, {args.repeats} alternating repeats, "
          f"matched: {args.matched}, num_workers: {result.before.config.num_workers} and {result.after.config.num_workers}")
    from whisperkit.experiments.runners import segmentation

    for side, chosen in (("before", result.before), ("after", result.after)):
        print(f"{side} segmentation: {segmentation(chosen)}")
    print("differences: " + ", ".join(d["setting"] for d in result.differences))
    print(f"{'side':<8}{'whisperkit s':>14}{'raw s':>9}{'ratio':>8}{'RTFx':>7}{'CPU % proc':>12}{'WER ref':>9}")
    for side in ("before", "after"):
        runs = result.before_runs if side == "before" else result.after_runs
        kit = statistics.median(r.transcript.wall_seconds for r in runs)
        raw_median = statistics.median(raw[side])
        chosen = result.before if side == "before" else result.after
        wer = chosen.metrics["wer_vs_reference"]
        print(f"{side:<8}{kit:>14.3f}{raw_median:>9.3f}{kit / raw_median:>8.3f}{chosen.metrics['rtfx']:>7.1f}"
              f"{chosen.metrics['mean_process_cpu_percent']:>12.1f}{'' if wer is None else f'{wer:.3f}':>9}")
    raw_speedup = statistics.median(raw["before"]) / statistics.median(raw["after"])
    print(f"speedup: whisperkit {result.speedup:.2f}x, raw faster-whisper {raw_speedup:.2f}x; "
          f"WER between sides {result.wer_between:.3f}")


if __name__ == "__main__":
    main()
