"""``whisperkit transcribe PATH... --mode corpus --output-dir DIR``: a folder of recordings at once.

Outputs mirror the folders given (``DIR/<relative path>.<format>``), written as each file
completes, with ``DIR/manifest.json``; a rerun skips the files done (``--overwrite`` redoes
them). A file that fails is reported on one line and the rest go on; the exit status is then 2.
Both engines take the same road: the arguments make one ``Config(mode="corpus")``, and
:func:`~whisperkit.core.corpus.transcribe.transcribe_corpus_config` runs it (a setting the engine
cannot honour is refused in one line). ``--save-run RUN_DIR`` also records the run (utilization
timeline, stages) as an experiment.

SIGTERM (``timeout``, systemd, ``docker stop``) stops the run as Ctrl-C does: the files finished
so far are written and in the manifest, then the command exits with 143 (128 + SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from whisperkit.errors import ConfigError, one_line

if TYPE_CHECKING:
    from whisperkit.core.config import Config
    from whisperkit.core.corpus.result import CorpusResult


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: the run stops as on Ctrl-C (so the pipeline keeps what is finished)."""


@contextlib.contextmanager
def sigterm_stops_the_run() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`Terminated` in the main thread."""
    def stop(signum, frame):
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread (a test calling main() from a thread): leave it
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_corpus(args: argparse.Namespace) -> int:
    """Run the corpus pipeline for the ``transcribe`` command's arguments; returns the exit status."""
    with sigterm_stops_the_run():
        return _run_corpus(args)


def _run_corpus(args: argparse.Namespace) -> int:
    from whisperkit.cli.args import config_from_args
    from whisperkit.core.corpus.transcribe import transcribe_corpus_config

    if args.output_dir is None:
        raise ConfigError("--mode corpus writes files: give --output-dir DIR")
    if args.engine == "ray" and args.monitor is not None:
        raise ConfigError("--save-run samples this machine: it goes with --engine local (engine ray: see "
                          "wk.plots.worker_timelines in a notebook)")
    config = config_from_args(args, mode="corpus", batch_size=args.batch_size, pack=args.pack)
    options = {"output_dir": args.output_dir, "output_format": args.output_format, "resume": not args.overwrite,
               "reader_threads": _reader_threads(args), "engine": args.engine, "ray_address": args.ray_address,
               "model_workers": args.model_workers}
    options = {key: value for key, value in options.items() if value is not None}
    if args.monitor is not None:
        return _report(_monitored(args, config, options), args)
    return _report(transcribe_corpus_config(args.files, config, progress=not args.quiet, **options), args)


def _reader_threads(args: argparse.Namespace) -> int | None:
    """``--reader-threads``, or its deprecated old name ``--workers`` (with a warning)."""
    old = getattr(args, "old_workers", None)
    if old is None:
        return args.reader_threads
    print("whisperkit: warning: --workers is now --reader-threads (the threads that read files); "
          "--workers goes in the next release", file=sys.stderr)
    if args.reader_threads is not None and args.reader_threads != old:
        raise ConfigError("--reader-threads and --workers (its old name) disagree: give --reader-threads only")
    return old


def _monitored(args: argparse.Namespace, config: Config, options: dict) -> CorpusResult:
    """The corpus run as a monitored experiment (``--save-run RUN_DIR``): saved with its report."""
    from pathlib import Path

    from whisperkit.experiments.runners import run
    from whisperkit.experiments.store import claim_folder, save_run
    from whisperkit.views.report import report

    with claim_folder(args.monitor, overwrite=args.overwrite) as folder:
        measured = run(args.files, config, interval=args.interval, progress=not args.quiet, corpus_options=options)
        save_run(measured, folder)
        report(measured, Path(folder) / "report.html")
    if not args.quiet:
        print(f"whisperkit: run saved in {folder} (report.html; `whisperkit diagnose {folder}`)", file=sys.stderr)
    return measured.corpus


def _report(result: CorpusResult, args: argparse.Namespace) -> int:
    """Print each file's warnings and failures and the summary; the exit status (2 if a file failed)."""
    for transcript in result.transcripts.values():
        for warning in transcript.warnings:
            print(f"whisperkit: warning: {one_line(warning)}", file=sys.stderr)
    for reason in result.failures.values():
        print(f"whisperkit: error: {one_line(reason)}", file=sys.stderr)
    if not args.quiet:
        print(result.summary(), file=sys.stderr)
    if result.failures:  # a file transcribed whose outputs could not be written is a failure, not done
        done = len(set(result.transcripts) - set(result.failures)) + len(result.skipped)
        print(f"whisperkit: error: {len(result.failures)} file(s) failed, {done} done", file=sys.stderr)
        return 2
    return 0
