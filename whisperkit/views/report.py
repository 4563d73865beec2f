"""One self-contained HTML report of a comparison, a sweep, a run or a list of runs.

The page is the Jinja2 template ``views/templates/report.html.j2`` (its macros in
``parts.html.j2``), rendered with autoescaping on: this module gathers the values (tables as rows
of text from :mod:`whisperkit.views.tables`, figures as plotly HTML, the only markup marked safe).
The file opens offline and can be mailed as it is: plotly.js is inlined once (about 4.8 MB),
the styles are inline, and nothing is fetched from a network.

>>> from whisperkit.views.report import report
>>> report(comparison, "report.html")        # doctest: +SKIP
'report.html'
"""

from __future__ import annotations

import functools
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from whisperkit.files import write_text_atomic
from whisperkit.views import format as fmt
from whisperkit.views.tables import STAGE_HEADER, channel_wer_rows, metric_rows, stage_rows, sweep_header, sweep_rows

if TYPE_CHECKING:
    import jinja2
    from plotly.graph_objects import Figure

    from whisperkit.experiments.results import Comparison, Run, Sweep
    from whisperkit.views.plots.common import Runs

PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}  # no logo: it links to plotly.com
NOTHING_FOUND = "No findings: nothing points to an idle GPU, a wasted setting or a misread meter."
NOTHING_FOUND_WITHOUT_GPU = ("No findings: nothing points to a wasted setting or a misread meter. No GPU was visible to "
                             "these runs, so they cannot show whether a GPU would sit idle; run them on a GPU machine for that.")
STAGES_CAPTION = ("One bar per piece of work of each stage thread; gaps in the model row are the model waiting "
                  "for the CPU stages (reading, voice detection, features).")
SUMMARY_CAPTION = "Means over the transcription (prepare and decode), model load excluded."


@dataclass(frozen=True)
class Table:
    """A table for the template: text cells, the first cell of a row is its heading; rows whose
    number is in ``marked`` get the CSS class ``mark_class``."""

    header: Sequence[object]
    rows: Sequence[Sequence[object]]
    marked: Collection[int] = field(default_factory=frozenset)
    mark_class: str = "differs"
    css_class: str = ""


@dataclass(frozen=True)
class FigureHtml:
    """A figure's heading, caption and plotly HTML (``html`` is markup, inserted unescaped)."""

    heading: str
    caption: str
    html: object


def report(obj: Runs, path: str | os.PathLike) -> str:
    """Write an HTML report of ``obj`` (Comparison, Sweep, Run or list of Runs) to ``path``.

    The file is written atomically and holds: title and date, a short guide to reading it,
    metrics (speedup, RTFx, wall s, CPU %, GPU %, RSS MiB, word error rates), the settings that
    differ, the figures, the machine, and the transcripts. Returns ``path`` as a string.
    """
    write_text_atomic(path, report_html(obj))
    return str(path)


def report_html(obj: Runs) -> str:
    """The HTML page :func:`report` writes, as text."""
    from whisperkit.experiments.results import Comparison, Sweep
    from whisperkit.views.plots import runs_of

    runs = runs_of(obj)
    if isinstance(obj, Comparison):
        title, values = "Before and after", _comparison_values(obj, runs)
    elif isinstance(obj, Sweep):
        title, values = "Batch-size sweep", _sweep_values(obj, runs)
    else:
        title = runs[0].label if len(runs) == 1 else f"{len(runs)} runs"
        values = _runs_values(runs)
    return _templates().get_template("report.html.j2").render(title=title, **_header_values(runs), **values)


def diagnosis_html(result: Run | Comparison | Sweep | list[Run]) -> str:
    """The findings of :func:`whisperkit.experiments.diagnose.diagnose` for ``result`` (a Run,
    Comparison, Sweep or list of runs) as an HTML list, most important first."""
    from whisperkit.experiments.diagnose import diagnose

    return str(_templates().get_template("parts.html.j2").module.diagnosis(  # type: ignore[attr-defined]
        diagnose(result), nothing_found(result)))


def nothing_found(result: Runs) -> str:
    """What an empty diagnosis says: worded for runs that had no GPU where none of them had one."""
    from whisperkit.measure.columns import gpu_indices
    from whisperkit.views.plots import runs_of

    runs = runs_of(result)
    return NOTHING_FOUND if any(gpu_indices(run.timeline) for run in runs) else NOTHING_FOUND_WITHOUT_GPU


@functools.lru_cache(maxsize=1)
def _templates() -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("whisperkit.views", "templates"), autoescape=True,
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


# ---- the values of the three kinds of report ---------------------------------------------


def _comparison_values(comparison: Comparison, runs: list[Run]) -> dict[str, Any]:
    from whisperkit.experiments.diagnose import diagnose
    from whisperkit.views import plots

    differences = [[d["setting"], fmt.setting(d["before"]), fmt.setting(d["after"])] for d in comparison.differences]
    return {
        "kind": "comparison",
        "headline": _sentence(comparison.verdict),
        "before_wall": fmt.metric_text("wall_seconds", comparison.before.metrics.get("wall_seconds")),
        "after_wall": fmt.metric_text("wall_seconds", comparison.after.metrics.get("wall_seconds")),
        "repeats": len(comparison.before_runs),
        "comparison_table": _comparison_table(comparison),
        "metrics": _metrics_table(runs),
        "matched": comparison.matched,
        "differences": Table(["setting", "before", "after"], differences, css_class="differences"),
        "findings": diagnose(comparison), "nothing_found": nothing_found(comparison),
        "figure_list": _figures([
            ("Utilization over time", "Before above after, on the same time axis.", plots.timeline(comparison)),
            ("Summary", SUMMARY_CAPTION, plots.summary(comparison)),
        ]),
        **_run_details(runs, open_count=2),
    }


def _sweep_values(sw: Sweep, runs: list[Run]) -> dict[str, Any]:
    from whisperkit.views import plots

    figures = [("Throughput and memory against batch size", "", plots.sweep(sw))]
    if runs:
        figures.append(("Utilization over time", "One block per batch size.", plots.timeline(sw)))
    rows = sweep_rows(sw)
    best = {number for number, row in enumerate(rows) if row[0] == str(sw.best) and row[-1] == "no"}
    return {
        "kind": "sweep", "best": sw.best, "verdict": _sentence(sw.verdict), "stopped_because": sw.stopped_because,
        "sweep_table": Table(sweep_header(sw), rows, marked=best, mark_class="best"),
        "figure_list": _figures(figures),
        **_run_details(runs, open_count=0),
    }


def _runs_values(runs: list[Run]) -> dict[str, Any]:
    from whisperkit.experiments.diagnose import diagnose
    from whisperkit.views import plots

    corpus_runs = [run for run in runs if run.corpus is not None]
    return {
        "kind": "runs",
        "metrics": _metrics_table(runs),
        "stages": [_stages(run) for run in corpus_runs],
        "findings": diagnose(runs), "nothing_found": nothing_found(runs),
        "figure_list": _figures([
            ("Utilization over time", "", plots.timeline(runs)),
            *((f"Corpus pipeline: {run.label}", STAGES_CAPTION, plots.stage_timeline(run)) for run in corpus_runs),
            ("Summary", SUMMARY_CAPTION, plots.summary(runs)),
        ]),
        **_run_details(runs, open_count=2),
    }


# ---- parts -------------------------------------------------------------------------------


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _header_values(runs: list[Run]) -> dict[str, Any]:
    from whisperkit._version import __version__

    audio = dict.fromkeys(
        f"{run.transcript.audio_path or 'audio from memory'} ({run.transcript.audio_seconds:.1f} s)" for run in runs
    )
    cores = next((run.environment.get("cpu_logical_cores") for run in runs if run.environment), None)
    return {
        "written": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "version": __version__,
        "started": sorted(run.started_at for run in runs if run.started_at), "audio": list(audio),
        "cores": cores or "the",
    }


def _run_details(runs: list[Run], *, open_count: int) -> dict[str, Any]:
    """Settings, machine and transcripts of ``runs`` (the first ``open_count`` transcripts open)."""
    machine, machine_differs = _environment_table(runs)
    return {
        "settings": _settings_table(runs), "machine": machine, "machine_differs": machine_differs,
        "references": list(dict.fromkeys(run.reference for run in runs if run.reference)),
        "channel_wer": Table(["channel", *(run.label for run in runs)], channel_wer_rows(runs)),
        "transcripts": [{"label": run.label, "warnings": list(run.transcript.warnings),
                         "text": " ".join(segment.labelled() for segment in run.transcript.segments),
                         "opened": number < open_count} for number, run in enumerate(runs)],
    }


def _comparison_table(comparison: Comparison) -> Table:
    rows = [["speedup (before wall / after wall)", fmt.times(comparison.speedup)],
            ["word error rate, after text against before text", fmt.percent(comparison.wer_between)]]
    reference = comparison.wer_vs_reference
    for side in ("before", "after"):
        value = reference.get(side) if reference else None
        rows.append([f"word error rate of {side} against the reference",
                     fmt.percent(value) if reference else "n/a (no reference text)"])
    return Table(["", "value"], rows)


def _stages(run: Run) -> dict[str, Any]:
    """A corpus run's stages (threads, items, busy and wait seconds) and its failed files."""
    corpus = run.corpus
    return {"label": run.label, "summary": corpus.summary(), "table": Table(STAGE_HEADER, stage_rows(corpus)),
            "failures": list(corpus.failures.items())}


def _metrics_table(runs: list[Run]) -> Table:
    return Table(["metric", *(run.label for run in runs)], metric_rows(runs, long=True))


def _settings_table(runs: list[Run]) -> Table:
    """One row per setting, one column per run; rows that differ between runs marked."""
    settings = [_settings(run) for run in runs]
    names = list(dict.fromkeys(name for one in settings for name in one))
    rows, marked = [], set()
    for number, name in enumerate(names):
        values = [fmt.setting(one.get(name)) for one in settings]
        rows.append([name, *values])
        if len(set(values)) > 1:
            marked.add(number)
    return Table(["setting", *(run.label for run in runs)], rows, marked=marked)


def _settings(run: Run) -> dict[str, object]:
    """The settings a run used: resolved config (model, device, batch size) and decoding in effect."""
    from whisperkit.core.config import decoding_settings

    used = {k: v for k, v in run.transcript.config.items() if k not in ("options", "label")}
    decoding = decoding_settings(run.config)
    other = {k: v for k, v in (run.config.options or {}).items() if k not in decoding}
    return {**used, **decoding, **({"other options": other} if other else {})}


def _environment_table(runs: list[Run]) -> tuple[Table, bool]:
    """The machine's table, and whether the runs come from different machines (one column each)."""
    described = [_environment_rows(run.environment or {}) for run in runs]
    if all(rows == described[0] for rows in described):
        return Table(["", "value"], [[name, value] for name, value in described[0].items()]), False
    names = list(dict.fromkeys(name for rows in described for name in rows))
    rows = [[name, *(rows.get(name, "") for rows in described)] for name in names]
    return Table(["", *(run.label for run in runs)], rows), True


def _environment_rows(env: dict[str, Any]) -> dict[str, str]:
    gpus = env.get("gpus") or []
    rows = {
        "CPU": str(env.get("cpu_model", "unknown")),
        "cores (physical / logical)": f"{env.get('cpu_physical_cores')} / {env.get('cpu_logical_cores')}",
        "memory MiB": fmt.setting(env.get("memory_total_mb")),
    }
    for gpu in gpus:
        rows[f"GPU {gpu.get('index')}"] = (
            f"{gpu.get('name')}, {fmt.number(gpu.get('memory_total_mb'), 0)} MiB, driver {gpu.get('driver_version')}, "
            f"CUDA {gpu.get('cuda_driver_version')}"
        )
    if not gpus:
        rows["GPU"] = f"none visible: {env.get('gpu_unavailable_reason') or 'reason not recorded'}"
    rows["CUDA devices ctranslate2 sees"] = fmt.setting(env.get("ctranslate2_cuda_devices"))
    rows["Python"] = f"{env.get('python')} on {env.get('platform')}"
    for name, version in (env.get("versions") or {}).items():
        rows[name] = version or "not installed"
    return rows


def _figures(figures: list[tuple[str, str, Figure]]) -> list[FigureHtml]:
    """Figures as HTML: plotly.js inlined with the first one only."""
    from markupsafe import Markup

    return [FigureHtml(heading, caption, Markup(fig.to_html(full_html=False, include_plotlyjs=number == 0, config=PLOTLY_CONFIG)))
            for number, (heading, caption, fig) in enumerate(figures)]
