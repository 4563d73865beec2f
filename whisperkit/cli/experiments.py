"""``whisperkit compare``, ``sweep``, ``report`` and ``demo``: experiments from a terminal.

Each finished run is saved as soon as it ends, so a failure or Ctrl-C later on keeps it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from whisperkit.cli.args import model_settings
from whisperkit.measure.sampler import DEFAULT_INTERVAL_S


def register(commands: argparse._SubParsersAction) -> None:
    """Add the experiment commands to the ``whisperkit`` argument parser."""
    from whisperkit.cli.args import add_model_arguments
    from whisperkit.experiments.runners import DEFAULT_SWEEP

    compare = commands.add_parser("compare", help="the seed's before/after comparison on one file")
    compare.add_argument("file", metavar="FILE")
    add_model_arguments(compare)
    given = compare.add_mutually_exclusive_group()
    given.add_argument("--reference", default=None, metavar="TEXT_FILE",
                       help="file with the expected transcript, any extension (default: FILE's .txt)")
    given.add_argument("--reference-text", default=None, metavar="TEXT", help="the expected transcript itself")
    compare.add_argument("--repeats", type=int, default=1, help="alternating repeats per side (default: 1)")
    compare.add_argument("--matched", action="store_true", help="the sequential side decodes the batched side's chunks with its decoding "
                         "settings; batching (and num_workers) remain")
    _add_sampling_and_output(compare)
    compare.set_defaults(func=run_compare)

    sweep = commands.add_parser("sweep", help="throughput and memory against batch size")
    sweep.add_argument("file", metavar="FILE", help="an audio file; with --corpus a folder (or @list.txt) of them")
    sweep.add_argument("--corpus", action="store_true",
                       help="corpus mode: a batch holds windows across the files of FILE (a folder)")
    sweep.add_argument("--no-pack", dest="pack", action="store_false",
                       help="with --corpus: one clip per window instead of packing short clips together")
    add_model_arguments(sweep)
    sweep.add_argument("--batch-sizes", type=batch_sizes_argument, default=DEFAULT_SWEEP,
                       help=f"comma-separated (default: {','.join(map(str, DEFAULT_SWEEP))})")
    sweep.add_argument("--autotune", action="store_true", help="double from 1 until throughput rises < 5 %%")
    _add_sampling_and_output(sweep)
    sweep.set_defaults(func=run_sweep)

    report = commands.add_parser("report", help="an offline HTML report of saved runs")
    report.add_argument("folders", nargs="+", metavar="RUN_DIR")
    report.add_argument("--output", required=True, metavar="FILE.html")
    report.set_defaults(func=run_report)

    demo = commands.add_parser("demo", help="compare before/after on the bundled sample, offline")
    demo.add_argument("--output-dir", default="demo-output")
    demo.add_argument("--overwrite", action="store_true", help="replace an earlier demo in --output-dir")
    demo.add_argument("--quiet", action="store_true")
    demo.set_defaults(func=run_demo)


def batch_sizes_argument(text: str) -> tuple[int, ...]:
    import argparse

    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers separated by commas, got {text!r}") from None
    if not sizes:
        raise argparse.ArgumentTypeError("expected at least one batch size")
    twice = sorted({size for size in sizes if sizes.count(size) > 1})
    if twice:  # each point is a run folder named by its batch size: the second would replace the first
        raise argparse.ArgumentTypeError(f"batch size {', '.join(map(str, twice))} given twice in {text!r}; "
                                         "give each once")
    return sizes


def _add_sampling_and_output(parser) -> None:
    """The sampling interval and the experiment's output folder, for compare and sweep."""
    from whisperkit.cli.args import interval_argument

    parser.add_argument("--interval", type=interval_argument, default=DEFAULT_INTERVAL_S,
                        help="seconds between utilization samples")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--overwrite", action="store_true", help="replace the experiment already in --output-dir")


def run_compare(args: argparse.Namespace) -> int:
    from whisperkit.core.accuracy import read_reference
    from whisperkit.experiments.runners import SEED_AFTER, SEED_BEFORE
    from whisperkit.experiments.store import claim_folder

    before, after = (side.replace(**model_settings(args)) for side in (SEED_BEFORE, SEED_AFTER))
    reference = None
    if args.reference is not None:
        reference = read_reference(Path(args.reference))  # a file, whatever its name; checked before any work
    elif args.reference_text is not None:
        reference = args.reference_text
    with claim_folder(args.output_dir, overwrite=args.overwrite):
        return _compare_and_save(args.file, before, after, args.output_dir, reference=reference,
                                 repeats=args.repeats, matched=args.matched, interval=args.interval,
                                 quiet=args.quiet)


def run_sweep(args: argparse.Namespace) -> int:
    from whisperkit.experiments.store import claim_folder

    with claim_folder(args.output_dir, overwrite=args.overwrite):
        return _sweep_and_save(args)


def _sweep_and_save(args: argparse.Namespace) -> int:
    from whisperkit.core.config import Config
    from whisperkit.experiments import runners
    from whisperkit.experiments.store import save_run, save_sweep, sweep_run_name
    from whisperkit.views.report import report

    base = Config(mode="corpus" if args.corpus else "batched", pack=args.pack, **model_settings(args))
    folder = Path(args.output_dir)

    def keep(batch_size, run):
        save_run(run, folder / "runs" / sweep_run_name(batch_size))

    common = dict(interval=args.interval, progress=not args.quiet, on_run=keep)
    if args.autotune:
        result = runners.autotune(args.file, config=base, **common)
    else:
        result = runners.sweep(args.file, args.batch_sizes, config=base, **common)
    save_sweep(result, folder)
    report(result, folder / "report.html")
    print(result.table().to_string())
    print(result.verdict)
    print(f"best batch size: {result.best} (the smallest as fast as the fastest within noise; {result.stopped_because})")
    print(f"report: {folder / 'report.html'}")
    return 0


def run_report(args: argparse.Namespace) -> int:
    from whisperkit.errors import ConfigError
    from whisperkit.experiments.store import load_runs
    from whisperkit.views.report import report

    if not str(args.output).lower().endswith((".html", ".htm")):
        raise ConfigError(f"--output {args.output}: a report is an .html file; name one (a run's own files "
                          "are never overwritten)")
    if Path(args.output).is_dir():
        raise ConfigError(f"--output {args.output} is a folder; name an .html file")
    runs = [run for folder in args.folders for run in load_runs(folder)]
    print(f"report of {len(runs)} run(s): {report(runs, args.output)}")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from whisperkit.core.samples import sample_path
    from whisperkit.experiments.runners import SEED_AFTER, SEED_BEFORE

    print("whisperkit demo: the seed's before/after comparison on the bundled 79 s sample, offline.")
    print("before: sequential WhisperModel.transcribe, num_workers=24; after: BatchedInferencePipeline, "
          "batch size from device memory, num_workers=6\n")
    from whisperkit.experiments.store import claim_folder

    with claim_folder(args.output_dir, overwrite=args.overwrite):
        return _compare_and_save(sample_path(), SEED_BEFORE, SEED_AFTER, args.output_dir, quiet=args.quiet)


def _compare_and_save(audio, before, after, output_dir, *, quiet=False, **options) -> int:
    from whisperkit.experiments.runners import compare
    from whisperkit.experiments.store import comparison_run_name, save_comparison, save_run
    from whisperkit.views import format as fmt
    from whisperkit.views.report import report
    from whisperkit.views.tables import channel_wer_rows

    folder = Path(output_dir)
    counts = {"before": 0, "after": 0}
    repeats = options.get("repeats", 1)

    def keep(side, run):
        counts[side] += 1
        save_run(run, folder / "runs" / comparison_run_name(side, counts[side], repeats))

    result = compare(audio, before, after, progress=not quiet, on_run=keep, **options)
    save_comparison(result, folder)
    report(result, folder / "report.html")
    print(result.table().drop(index="text").to_string())
    print()
    if result.differences:
        print("settings that differ: " + "; ".join(
            f"{d['setting']} {d['before']} -> {d['after']}" for d in result.differences))
    reference = result.wer_vs_reference
    accuracy = f", WER vs reference {fmt.percent(reference['before'])} -> {fmt.percent(reference['after'])}" if reference else ""
    print(f"speedup {fmt.times(result.speedup)}, WER between the two {fmt.percent(result.wer_between)}{accuracy}")
    for channel, before_wer, after_wer in channel_wer_rows([result.before, result.after]):
        print(f"WER of channel {channel} vs its reference: {before_wer} -> {after_wer}")
    if result.after.gpu_unavailable_reason:
        print(f"no GPU here ({result.after.gpu_unavailable_reason}): both ran on the CPU; on a GPU the "
              "report's timelines show how busy the accelerator was on each side, and "
              f"`whisperkit diagnose {folder}` says why it idled")
    print(f"report: {folder / 'report.html'}  (runs and comparison.json beside it)")
    return 0
