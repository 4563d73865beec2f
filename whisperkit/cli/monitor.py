"""``whisperkit monitor``: live utilization lines, optionally around a command, saved as a timeline.

    whisperkit monitor [--interval 0.5] [--output FILE.csv|FILE.parquet] [-- COMMAND ARGS...]

One line per sample on stdout, like ``nvidia-smi dmon``: seconds, machine CPU %, per GPU its
utilization % and memory used (MiB), and with a command, that process tree's CPU % (of all cores)
and RSS (MiB). It runs until the command ends, or until Ctrl-C or SIGTERM (as sent by
``timeout``), then writes the timeline it has (CSV or Parquet, by the file's suffix) and exits
with the command's exit status (0 without a command; 128 + N when the command was killed by
signal N). The interval is at least ``MIN_INTERVAL_S`` (0.01 s). When the timeline cannot be
written (a read-only or full disk), one line says so, no partial file is left, and the exit
status is still the command's (2 if the command itself succeeded).
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
import time

from whisperkit.checks import is_missing
from whisperkit.cli.args import interval_argument

OUTPUT_SUFFIXES = (".csv", ".parquet")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``monitor`` subcommand to an argparse subparsers object."""
    parser = subparsers.add_parser(
        "monitor",
        help="print CPU/GPU utilization live, optionally while running a command",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--interval", type=interval_argument, default=0.5, metavar="SECONDS",
                        help="seconds between samples, at least 0.01 (default 0.5)")
    parser.add_argument("--output", "-o", metavar="FILE",
                        help="write the timeline to FILE.csv or FILE.parquet at the end")
    parser.add_argument("command", nargs=argparse.REMAINDER,
                        help="command to run and watch, after '--'")
    parser.set_defaults(func=run)


class _Terminated(Exception):
    """SIGTERM arrived: stop watching, keep what was sampled."""


def _on_sigterm(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once is enough; the cleanup must not be cut short
    raise _Terminated()


def run(args: argparse.Namespace) -> int:
    """Run the monitor for parsed ``args``; return the exit status."""
    from whisperkit.errors import ConfigError, WhisperkitError
    from whisperkit.measure.sampler import Sampler

    command = list(args.command or [])
    if command and command[0] == "--":
        command = command[1:]
    output = getattr(args, "output", None)
    if output is not None and not str(output).lower().endswith(OUTPUT_SUFFIXES):
        raise ConfigError(f"--output must end in .csv or .parquet, got {output!r}")
    if output is not None and not os.path.isdir(os.path.dirname(os.path.abspath(output))):
        raise ConfigError(f"--output {output!r}: the folder {os.path.dirname(os.path.abspath(output))!r} does not exist")
    process = None
    if command:
        try:
            process = subprocess.Popen(command)
        except OSError as error:  # not found, not executable, ...
            raise WhisperkitError(f"cannot start {command[0]!r}: {error.strerror or error}") from None
    try:
        sampler = Sampler(interval=args.interval, pid=process.pid if process else None)
    except BaseException:
        if process is not None:
            process.kill()
            process.wait()
        raise
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        status = _watch(sampler, process)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # writing what was sampled must not be cut short
        if output is not None:
            try:
                _write(sampler.timeline, str(output))
            except WhisperkitError as error:
                print(f"whisperkit: error: {error}", file=sys.stderr)
                return status or 2
            print(f"wrote {len(sampler.samples())} samples to {output}", file=sys.stderr)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return status


def _watch(sampler, process) -> int:
    """Print samples until the command ends or Ctrl-C; return the command's status."""
    printed = 0
    sampler.start()
    line = _Line(sampler.columns, with_process=process is not None)
    try:
        if not sampler.gpu_available:
            _print(f"GPU: {sampler.gpu_unavailable_reason}")
        _print(line.header())
        while process is None or process.poll() is None:
            time.sleep(sampler.interval / 2)
            printed = _print_new(sampler, line, printed)
    except (KeyboardInterrupt, _Terminated) as stop:
        if isinstance(stop, _Terminated) and process is not None and process.poll() is None:
            process.terminate()  # pass the SIGTERM on to the command
    finally:
        sampler.stop()
    _print_new(sampler, line, printed)
    return _exit_status(process)


def _exit_status(process) -> int:
    if process is None:
        return 0
    try:
        code = process.wait(timeout=5)  # on Ctrl-C the command got SIGINT too
    except (subprocess.TimeoutExpired, KeyboardInterrupt, _Terminated):
        process.terminate()
        code = process.wait()
    return 128 - code if code < 0 else code


def _print_new(sampler, line, printed: int) -> int:
    for sample in sampler.samples(printed):
        _print(line.format(sample))
        printed += 1
    return printed


def _print(text: str) -> None:
    """Print a live line; when the reader has gone (``| head``), go on watching without printing."""
    from whisperkit.files import stdout_to_devnull

    try:
        print(text, flush=True)
    except BrokenPipeError:
        stdout_to_devnull()


class _Line:
    """Formats one live line per sample (fixed-width, like ``nvidia-smi dmon``)."""

    def __init__(self, columns: list[str], with_process: bool) -> None:
        from whisperkit.measure.columns import gpu_column, gpu_indices

        self.fields = [("time_s", "time_s", "{:8.1f}"), ("cpu_percent", "cpu%", "{:6.0f}")]
        for index in gpu_indices(columns):
            self.fields += [(gpu_column(index, "util_percent"), f"gpu{index}%", "{:6.0f}"),
                            (gpu_column(index, "mem_used_mb"), f"gpu{index}_MiB", "{:9.0f}")]
        if with_process:
            self.fields += [("process_cpu_percent", "proc_cpu%", "{:10.1f}"),
                            ("process_rss_mb", "proc_MiB", "{:9.0f}")]

    def header(self) -> str:
        widths = [len(fmt.format(0)) for _, _, fmt in self.fields]
        return "#" + " ".join(f"{title:>{w}}" for (_, title, _), w in zip(self.fields, widths))[1:]

    def format(self, sample: dict) -> str:
        cells = []
        for key, _, fmt in self.fields:
            value = sample.get(key, math.nan)
            width = len(fmt.format(0))
            cells.append(f"{'-':>{width}}" if is_missing(value) else fmt.format(value))
        return " ".join(cells)


def _write(timeline, path: str) -> None:
    """Write the timeline through a temporary file: a failure leaves no empty or partial file."""
    import io

    from whisperkit.files import write_bytes_atomic

    if path.lower().endswith(".parquet"):
        buffer = io.BytesIO()
        timeline.to_parquet(buffer, index=False)
        data = buffer.getvalue()
    else:
        data = timeline.to_csv(index=False).encode("utf-8")
    write_bytes_atomic(path, data)
