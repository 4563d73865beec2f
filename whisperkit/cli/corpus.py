"""``whisperkit transcribe PATH... --mode corpus --output-dir DIR``: a folder of recordings at once.

Outputs mirror the folders given (``DIR/<relative path>.<format>``), written as each file
completes, with ``DIR/manifest.json``; a rerun skips the files done (``--overwrite`` redoes
them). A file that fails is reported on one line and the rest go on; the exit status is then 2.
``--monitor RUN_DIR`` also records the run (utilization timeline, stages) as an experiment.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from whisperkit.errors import ConfigError

if TYPE_CHECKING:
    from whisperkit.core.config import Config
    from whisperkit.core.corpus.result import CorpusResult


def run_corpus(args: argparse.Namespace) -> int:
    """Run the corpus pipeline for the ``transcribe`` command's arguments; returns the exit status."""
    from whisperkit.cli.args import config_from_args
    from whisperkit.core.corpus.transcribe import transcribe_corpus, transcribe_corpus_config

    if args.output_dir is None:
        raise ConfigError("--mode corpus writes files: give --output-dir DIR")
    outputs = {"output_dir": args.output_dir, "output_format": args.output_format, "workers": args.workers,
               "resume": not args.overwrite}
    if args.engine == "ray":  # each model actor loads the model on its own node
        if args.monitor is not None:
            raise ConfigError("--monitor samples this machine: it goes with --engine local (engine ray: see "
                              "wk.plots.worker_timelines in a notebook)")
        result = transcribe_corpus(args.files, args.model, batch_size=args.batch_size, pack=args.pack,
                                   language=args.language, beam_size=args.beam_size, progress=not args.quiet,
                                   engine="ray", ray_address=args.ray_address, model_workers=args.model_workers,
                                   device=args.device, compute_type=args.compute_type, cpu_threads=args.cpu_threads,
                                   channels=args.channels, channel_names=args.channel_names, **outputs)
        return _report(result, args)
    if args.ray_address is not None or args.model_workers is not None:
        raise ConfigError("--ray-address and --model-workers need --engine ray")
    config = config_from_args(args, mode="corpus", batch_size=args.batch_size, pack=args.pack)
    if args.monitor is not None:
        return _report(_monitored(args, config, outputs), args)
    return _report(transcribe_corpus_config(args.files, config, progress=not args.quiet, **outputs), args)


def _monitored(args: argparse.Namespace, config: Config, outputs: dict) -> CorpusResult:
    """The corpus run as a monitored experiment (``--monitor RUN_DIR``): saved with its report."""
    from pathlib import Path

    from whisperkit.experiments.runners import run
    from whisperkit.experiments.store import claim_folder, save_run
    from whisperkit.views.report import report

    with claim_folder(args.monitor, overwrite=args.overwrite) as folder:
        measured = run(args.files, config, interval=args.interval, progress=not args.quiet, corpus_options=outputs)
        save_run(measured, folder)
        report(measured, Path(folder) / "report.html")
    if not args.quiet:
        print(f"whisperkit: run saved in {folder} (report.html; `whisperkit diagnose {folder}`)", file=sys.stderr)
    return measured.corpus


def _report(result: CorpusResult, args: argparse.Namespace) -> int:
    """Print each file's warnings and failures and the summary; the exit status (2 if a file failed)."""
    for transcript in result.transcripts.values():
        for warning in transcript.warnings:
            print(f"whisperkit: warning: {warning}", file=sys.stderr)
    for reason in result.failures.values():
        print(f"whisperkit: error: {reason}", file=sys.stderr)
    if not args.quiet:
        print(result.summary(), file=sys.stderr)
    if result.failures:
        done = len(result.transcripts) + len(result.skipped)
        print(f"whisperkit: error: {len(result.failures)} file(s) failed, {done} done", file=sys.stderr)
        return 2
    return 0
