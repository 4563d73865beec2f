"""``whisperkit diagnose RUN_DIR``: what saved runs show, most important finding first."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``diagnose`` to the ``whisperkit`` argument parser."""
    parser = commands.add_parser(
        "diagnose", help="why a GPU sat idle: findings from saved runs, with evidence and what to do"
    )
    parser.add_argument("folder", metavar="RUN_DIR", help="a run, comparison or sweep folder")
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    parser.set_defaults(func=run_diagnose)


def run_diagnose(args: argparse.Namespace) -> int:
    import json

    from whisperkit.experiments.diagnose import diagnose, format_findings
    from whisperkit.experiments.store import load_runs

    findings = diagnose(load_runs(args.folder))
    if args.json:
        print(json.dumps([finding.to_dict() for finding in findings], indent=2))
    else:
        print(format_findings(findings))
    return 0
