"""The ``whisperkit`` command: transcribe files, and describe this machine.

Every error caused by input (a missing file, an unknown model, CUDA where there is none)
prints one line, ``whisperkit: error: ...``, and exits with status 2; no traceback. Any other
exception is an internal error: one line with a hint, exit status 1, and the traceback only
with ``whisperkit --debug ...``. A closed pipe (``... | head``) ends quietly with status 1.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

from whisperkit.cli.args import add_model_arguments, batch_size_argument, config_from_args, interval_argument
from whisperkit.core.output_formats import FORMATS, render
from whisperkit.errors import ConfigError, WhisperkitError, first_line, one_line
from whisperkit.files import stdout_to_devnull, write_text_atomic
from whisperkit.measure.sampler import DEFAULT_INTERVAL_S

OUTPUT_FORMATS = FORMATS  # the output format registry, core/output_formats.py


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help(sys.stderr)
        return 2
    try:
        status = args.func(args)
        sys.stdout.flush()
        return status
    except WhisperkitError as error:
        _error(str(error))
        return 2
    except KeyboardInterrupt as stop:
        from whisperkit.cli.corpus import Terminated

        if isinstance(stop, Terminated):  # SIGTERM during a corpus run
            _error("terminated (SIGTERM); the files finished so far are written and in the manifest")
            return 128 + signal.SIGTERM
        _error("interrupted")
        return 130
    except BrokenPipeError:  # the reader went away (| head): nothing more to say to it
        stdout_to_devnull()
        return 1
    except OSError as error:
        if args.debug:
            raise
        stdout_to_devnull()
        where = f" {error.filename}" if error.filename else ""
        _error(f"cannot read or write{where or ' standard output'}: {error.strerror or error}")
        return 2
    except Exception as error:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        if args.debug:
            raise
        _error(f"internal error ({type(error).__name__}: {first_line(error)}); "
               "rerun with whisperkit --debug ... for the traceback, and report it")
        return 1


def build_parser() -> argparse.ArgumentParser:
    from whisperkit._version import __version__

    parser = argparse.ArgumentParser(prog="whisperkit", description="See and measure how Whisper uses a GPU.")
    parser.add_argument("--version", action="version", version=f"whisperkit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an internal error")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_transcribe(commands)
    env = commands.add_parser("env", help="CPUs, GPUs and driver, CUDA devices ctranslate2 sees, versions")
    env.add_argument("--json", action="store_true", help="print JSON instead of text")
    env.add_argument("--device-index", type=int, default=0,
                     help="the CUDA device to find among NVML's GPUs (CUDA's numbering; default: 0)")
    env.set_defaults(func=run_env)
    from whisperkit.cli import diagnose as diagnose_cli
    from whisperkit.cli import experiments as experiment_cli
    from whisperkit.cli import monitor as monitor_cli

    monitor_cli.register(commands)
    experiment_cli.register(commands)
    diagnose_cli.register(commands)
    return parser


def _add_transcribe(commands) -> None:
    parser = commands.add_parser("transcribe", help="transcribe audio files")
    parser.add_argument("files", nargs="+", metavar="PATH",
                        help="audio or video files; with --mode corpus also folders (searched recursively) "
                             "and @list.txt files (one path per line)")
    add_model_arguments(parser)
    parser.add_argument("--mode", choices=("batched", "sequential", "corpus"), default="batched",
                        help="corpus: all files through one pipeline, batched across files (needs --output-dir)")
    parser.add_argument("--batch-size", type=batch_size_argument, default=8, help="chunks per batch, 1-256, or auto (default: 8)")
    parser.add_argument("--output-dir", default=None, help="write DIR/<stem>.<format>; default: text to standard output")
    parser.add_argument("--output-format", choices=(*OUTPUT_FORMATS, "all"), default="txt")
    parser.add_argument("--no-pack", dest="pack", action="store_false",
                        help="corpus mode: one clip per window instead of packing short clips together")
    parser.add_argument("--overwrite", action="store_true",
                        help="with --output-dir: replace the DIR/<stem>.<format> files that exist (without it, a file "
                             "there is refused before any work); corpus mode: redo the files the output folder's "
                             "manifest lists as done (a file whisperkit did not write is never replaced)")
    parser.add_argument("--reader-threads", type=int, default=None,
                        help="corpus mode, engine local: threads reading and voice-detecting files (default: half the cores, 1-4)")
    parser.add_argument("--workers", dest="old_workers", type=int, default=None, help=argparse.SUPPRESS)  # deprecated: --reader-threads
    parser.add_argument("--save-run", dest="monitor", default=None, metavar="RUN_DIR",
                        help="corpus mode: also sample CPU and GPU utilization and save the run (stages, timeline, "
                             "report.html) into RUN_DIR, as `whisperkit sweep` saves each of its runs")
    parser.add_argument("--monitor", dest="old_monitor", default=None, help=argparse.SUPPRESS)  # deprecated: --save-run
    parser.add_argument("--interval", type=interval_argument, default=DEFAULT_INTERVAL_S,
                        help=f"with --save-run: seconds between utilization samples (default: {DEFAULT_INTERVAL_S})")
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="corpus mode: run the pipeline here (local) or on a Ray cluster (ray; pip install whisperkit[ray])")
    parser.add_argument("--ray-address", default=None,
                        help="engine ray: the cluster to join (HOST:6379 or ray://HOST:10001); default: start a Ray of its own here")
    parser.add_argument("--model-workers", type=int, default=None,
                        help="engine ray: model workers, each a Ray actor with its own model (default: one per GPU, "
                             "or one per CPU on a CPU-only cluster, leaving room for the CPU stages)")
    parser.set_defaults(func=run_transcribe)


def run_transcribe(args: argparse.Namespace) -> int:
    if args.old_monitor is not None:
        print("whisperkit: warning: --monitor RUN_DIR is now --save-run RUN_DIR (it saves the run as an experiment); "
              "--monitor goes in the next release", file=sys.stderr)
        args.monitor = args.monitor or args.old_monitor
    if args.mode == "corpus":
        from whisperkit.cli.corpus import run_corpus

        return run_corpus(args)
    if args.engine != "local" or args.ray_address is not None or args.model_workers is not None:
        raise ConfigError("--engine, --ray-address and --model-workers go with --mode corpus")
    if args.monitor is not None:
        raise ConfigError("--save-run goes with --mode corpus; for one file use `whisperkit sweep FILE --batch-sizes N` "
                          "or wk.run in a notebook")
    from whisperkit.core.models import check_model_language, load_model
    from whisperkit.core.transcription import transcribe_config

    config = config_from_args(args, mode=args.mode, batch_size=args.batch_size)
    formats = OUTPUT_FORMATS if args.output_format == "all" else (args.output_format,)
    if args.output_dir is not None:
        check_output_paths(args.files, formats, args.output_dir, overwrite=args.overwrite)
    model = load_model(config.model, config.device, config.compute_type, config.num_workers, config.cpu_threads,
                       config.device_index)
    check_model_language(model, config.language)
    failed = 0
    written: set[str] = set()  # the outputs this run wrote (a file named twice writes its outputs twice)
    for path in args.files:
        try:
            transcript = transcribe_config(path, config, model=model, progress=not args.quiet)
        except WhisperkitError as error:
            _error(str(error))
            failed += 1
            continue
        for warning in transcript.warnings:
            print(f"whisperkit: warning: {warning}", file=sys.stderr)
        if not args.quiet:
            print(_summary_line(path, transcript), file=sys.stderr)
        try:
            _write_outputs(transcript, path, formats, args.output_dir, args.overwrite, written)
        except WhisperkitError as error:  # this file's output is lost; the others go on
            _error(str(error))
            failed += 1
    if failed:
        _error(f"{failed} of {len(args.files)} file(s) failed")
        return 2
    return 0


def output_paths(path: str, formats: Sequence[str], output_dir: str) -> list[str]:
    """Where ``transcribe --output-dir`` writes ``path``'s transcript: DIR/<stem>.<format>."""
    from whisperkit.core.corpus import sources

    return list(sources.output_paths(output_dir, _source(0, path), formats).values())


def check_output_paths(files: Sequence[str], formats: Sequence[str], output_dir: str, overwrite: bool = False) -> None:
    """Refuse, before any work (before the model loads), each output problem corpus mode refuses
    (:func:`whisperkit.core.corpus.outputs.check_paths`: an output folder that is a file or cannot
    be written, an output that would replace an input, one blocked by a folder, a name too long),
    two inputs that would share an output, and, unless ``overwrite``, an output that exists."""
    from whisperkit.core.corpus.outputs import check_folder, check_paths, shown

    check_folder(output_dir)  # a folder that cannot be written fails now, not after transcribing
    owner: dict[str, str] = {}
    for path in files:
        for output in output_paths(path, formats, output_dir):
            other = owner.setdefault(_path_key(output), path)
            if _path_key(other) != _path_key(path):
                raise ConfigError(
                    f"{other} and {path} would both be written to {output}; use a separate --output-dir "
                    "for each, or --mode corpus (it keeps each file's relative path)"
                )
    found = [_source(index, path) for index, path in enumerate(files)]
    existing = list(dict.fromkeys(check_paths(found, output_dir, formats, lambda source: overwrite, reserved=())))
    if existing:
        verb = "exists" if len(existing) == 1 else "exist"
        raise ConfigError(f"{shown(existing)} already {verb}; pass --overwrite to replace "
                          f"{'it' if len(existing) == 1 else 'them'}, or choose another --output-dir")


def _source(index: int, path: str):
    """``path`` as corpus mode's Source of a file named directly (its output name: the stem)."""
    from whisperkit.core.corpus.stages import Source

    return Source(index, path, os.path.splitext(os.path.basename(path))[0])


def run_env(args: argparse.Namespace) -> int:
    import json

    from whisperkit.measure.cuda import cuda_device_count
    from whisperkit.measure.environment import collect_environment, format_environment

    env = collect_environment(cuda_index=args.device_index if cuda_device_count() > 0 else None)
    print(json.dumps(env, indent=2) if args.json else format_environment(env))
    return 0


def _path_key(path: str) -> str:
    """A file's identity for collision checks; case-folded, as on macOS and Windows file systems."""
    return os.path.realpath(path).casefold()


def _write_outputs(transcript, path: str, formats, output_dir: str | None, overwrite: bool = False,
                   written: set[str] | None = None) -> None:
    """``transcript`` to standard output, or to its files in ``output_dir``; unless ``overwrite``,
    an output that appeared since the check before the run (not one of ``written``) is refused."""
    if output_dir is None:
        for name in formats:
            _write_stdout(render(transcript, name))
            if name == "json":
                sys.stdout.write("\n")
        sys.stdout.flush()
        return
    written = set() if written is None else written
    outputs = output_paths(path, formats, output_dir)
    for output in outputs:
        if not overwrite and output not in written and os.path.lexists(output):
            raise WhisperkitError(f"{output} appeared during the run and is kept (pass --overwrite to replace "
                                  "a file there)")
    for name, output in zip(formats, outputs):
        write_text_atomic(output, render(transcript, name))
        written.add(output)


def _write_stdout(text: str) -> None:
    """``text`` to standard output; a file name that is not UTF-8 in it (a surrogate escape) as
    ``\\udcXX`` where the terminal's encoding is strict, as the files written do."""
    try:
        sys.stdout.write(text)
    except UnicodeEncodeError:
        encoding = sys.stdout.encoding or "utf-8"
        sys.stdout.write(text.encode(encoding, errors="backslashreplace").decode(encoding))


def _summary_line(path: str, transcript) -> str:
    config = transcript.config
    how = f"batched, batch size {config['batch_size']}" if config["mode"] == "batched" else "sequential"
    retries = f", {len(transcript.batch_retries)} out-of-memory retries" if transcript.batch_retries else ""
    split = f", channels {' and '.join(transcript.channels)} transcribed apart" if transcript.channels else ""
    return (
        f"{os.path.basename(path)}: {transcript.audio_seconds:.1f} s of audio in {transcript.wall_seconds:.2f} s "
        f"({transcript.rtfx:.1f}x real time), {how}, {config['model']} on {config['device']} "
        f"({config['compute_type']}){retries}{split}"
    )


def _error(message: str) -> None:
    print(f"whisperkit: error: {one_line(message)}", file=sys.stderr)
