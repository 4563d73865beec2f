"""One self-contained HTML report of a comparison, a sweep, a run or a list of runs.

The file opens offline and can be mailed as it is: plotly.js is inlined once (about 4.8 MB),
the styles are inline, and nothing is fetched from a network.

>>> from whisperkit.views.report import report
>>> report(comparison, "report.html")        # doctest: +SKIP
'report.html'
"""

from __future__ import annotations

import html
import os
from collections.abc import Collection, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from whisperkit.files import write_text_atomic
from whisperkit.views import format as fmt
from whisperkit.views.tables import STAGE_HEADER, metric_rows, stage_rows, sweep_header, sweep_rows

if TYPE_CHECKING:
    from plotly.graph_objects import Figure

    from whisperkit.experiments.results import Comparison, Run, Sweep
    from whisperkit.views.plots.common import Runs

PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}  # no logo: it links to plotly.com

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; line-height: 1.45;
       max-width: 1200px; margin: 2em auto; padding: 0 1.2em; }
h1 { margin-bottom: .1em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; padding-bottom: .2em; }
.meta, .note { color: #555; font-size: 14px; }
.headline { font-size: 1.5em; margin: .6em 0; } .headline b { color: #16808d; }
table { border-collapse: collapse; margin: .5em 0 1.2em; font-size: 14px; }
th, td { border-bottom: 1px solid #e6e6e6; padding: 4px 12px; text-align: left; vertical-align: top; }
thead th { background: #f3f5f7; }
tbody th { font-weight: 500; color: #444; }
tr.differs > * { background: #fff4d6; } tr.best > * { background: #e6f5ea; }
.transcript { white-space: pre-wrap; background: #fafafa; border-left: 3px solid #ccc; padding: .5em 1em; }
details { margin: .4em 0; } summary { cursor: pointer; font-weight: 600; }
.figure { margin: 1em 0 2.2em; }
"""

READING_GUIDE = """
<p>Each timeline shows one run from model load to its last segment, on one time axis in seconds.
The CPU panel shows the whole machine (system) and this Python process, each as a share of all
{cores} cores: 100&nbsp;% means every core is busy. Shaded phases: <b>load</b> (the model),
<b>prepare</b> (audio decoding, voice activity detection and log-mel features; for a multilingual
model with no language given also language detection, which runs the model) and <b>decode</b> (the
model's windows or batches).</p>
<p>Where a GPU is visible, its panel shows NVML utilization: the share of the driver's last sample
period (1/6&nbsp;s to 1&nbsp;s) in which at least one kernel ran. 100&nbsp;% means the GPU was never
idle, not that all of its cores were busy. Low GPU utilization while the model is on the GPU means
the GPU waited (for the CPU, or for work); a busy CPU core alone does not show that, because CUDA's
default scheduling spins the waiting host thread. The Diagnosis section tells these cases apart.
RTFx is seconds of audio transcribed per second of wall time (higher is faster).</p>
"""

DIFFERENCES_SENTENCE = (
    "Batched mode changes decoding and segmentation as well as batching: every setting below "
    "differs between the two sides, so a change in speed or in the words is not only a batching "
    "effect. <code>compare(..., matched=True)</code> (<code>whisperkit compare --matched</code>) "
    "makes the sequential side decode the batched side's chunks with its decoding settings."
)
STAGES_SENTENCE = (
    "One bar per piece of work of each stage thread; gaps in the model row are the model waiting "
    "for the CPU stages (reading, voice detection, features)."
)
MATCHED_SENTENCE = (
    "Matched: the sequential side decodes the batched side's chunks with its decoding settings, so "
    "the remaining differences below are batching and workers, not decoding or segmentation."
)


def report(obj: Runs, path: str | os.PathLike) -> str:
    """Write an HTML report of ``obj`` (Comparison, Sweep, Run or list of Runs) to ``path``.

    The file is written atomically and holds: title and date, a short guide to reading it,
    metrics (speedup, RTFx, wall s, CPU %, GPU %, RSS MiB, word error rates), the settings that
    differ, the figures, the machine, and the transcripts. Returns ``path`` as a string.
    """
    from whisperkit.experiments.results import Comparison, Sweep
    from whisperkit.views.plots import runs_of

    runs = runs_of(obj)
    if isinstance(obj, Comparison):
        title, sections = "Before and after", _comparison_sections(obj, runs)
    elif isinstance(obj, Sweep):
        title, sections = "Batch-size sweep", _sweep_sections(obj, runs)
    else:
        title = runs[0].label if len(runs) == 1 else f"{len(runs)} runs"
        sections = _runs_sections(runs)
    page = _page(f"whisperkit: {title}", _header(title, runs) + "".join(sections))
    write_text_atomic(path, page)
    return str(path)


# ---- the three kinds of report -----------------------------------------------------------


def _comparison_sections(comparison: Comparison, runs: list[Run]) -> list[str]:
    from whisperkit.views import plots

    return [
        _headline(comparison),
        _reading_guide(runs),
        _section("Results", _comparison_table(comparison) + _metrics_table(runs)),
        _section("What differs between the sides", _differences(comparison)),
        _section("Diagnosis", diagnosis_html(comparison)),
        _figures([
            ("Utilization over time", "Before above after, on the same time axis.", plots.timeline(comparison)),
            ("Summary", "Means over the transcription (prepare and decode), model load excluded.",
             plots.summary(comparison)),
        ]),
        _section("All settings", _settings_table(runs)),
        _section("Machine", _environment_table(runs)),
        _section("Transcripts", _transcripts(runs, open_count=2)),
    ]


def _sweep_sections(sw: Sweep, runs: list[Run]) -> list[str]:
    from whisperkit.views import plots

    figures = [("Throughput and memory against batch size", "", plots.sweep(sw))]
    if runs:
        figures.append(("Utilization over time", "One block per batch size.", plots.timeline(sw)))
    best = sw.best
    headline = (f'<p class="headline">Best batch size: <b>{best}</b></p>' if best is not None
                else '<p class="headline">No batch size fitted in memory.</p>')
    stopped = f'<p class="note">Stopped because: {html.escape(sw.stopped_because)}.</p>' if sw.stopped_because else ""
    return [
        headline + stopped,
        _reading_guide(runs),
        _section("Results", _sweep_table(sw)),
        _figures(figures),
        _section("Settings", _settings_table(runs)) if runs else "",
        _section("Machine", _environment_table(runs)) if runs else "",
        _section("Transcripts", _transcripts(runs, open_count=0)) if runs else "",
    ]


def _runs_sections(runs: list[Run]) -> list[str]:
    from whisperkit.views import plots

    corpus_runs = [run for run in runs if run.corpus is not None]
    return [
        _reading_guide(runs),
        _section("Results", _metrics_table(runs)),
        *(_section(f"Corpus stages: {run.label}", _stage_table(run)) for run in corpus_runs),
        _section("Diagnosis", diagnosis_html(runs)),
        _figures([
            ("Utilization over time", "", plots.timeline(runs)),
            *((f"Corpus pipeline: {run.label}", STAGES_SENTENCE, plots.stage_timeline(run)) for run in corpus_runs),
            ("Summary", "Means over the transcription (prepare and decode), model load excluded.",
             plots.summary(runs)),
        ]),
        _section("Settings", _settings_table(runs)),
        _section("Machine", _environment_table(runs)),
        _section("Transcripts", _transcripts(runs, open_count=2)),
    ]


# ---- parts -------------------------------------------------------------------------------


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def _header(title: str, runs: list[Run]) -> str:
    from whisperkit._version import __version__

    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    started = sorted(run.started_at for run in runs if run.started_at)
    when = f" · runs started {started[0]}" + (f" to {started[-1]}" if started[-1] != started[0] else "") \
        if started else ""
    audio = dict.fromkeys(
        f"{run.transcript.audio_path or 'audio from memory'} ({run.transcript.audio_seconds:.1f} s)" for run in runs
    )
    audio_line = f"<br>Audio: {html.escape(', '.join(audio))}" if audio else ""
    return (f"<h1>{html.escape(title)}</h1>\n"
            f'<p class="meta">Report written {now} by whisperkit {__version__}{when}{audio_line}</p>\n')


def _headline(comparison: Comparison) -> str:
    before = comparison.before.metrics.get("wall_seconds")
    after = comparison.after.metrics.get("wall_seconds")
    verdict = comparison.verdict
    return (f'<p class="headline">{html.escape(verdict[:1].upper() + verdict[1:])}</p>\n<p class="note">Transcription wall time (model load excluded): '
            f"{fmt.metric_text('wall_seconds', before)} s before, {fmt.metric_text('wall_seconds', after)} s after; speedup is the median before wall time "
            f"over the median after wall time ({len(comparison.before_runs)} run(s) per side).</p>\n")


def _reading_guide(runs: list[Run]) -> str:
    cores = next((run.environment.get("cpu_logical_cores") for run in runs if run.environment), None)
    return _section("How to read this report", READING_GUIDE.format(cores=cores or "the"))


def _comparison_table(comparison: Comparison) -> str:
    rows = [["speedup (before wall / after wall)", fmt.times(comparison.speedup)],
            ["word error rate, after text against before text", fmt.percent(comparison.wer_between)]]
    reference = comparison.wer_vs_reference
    for side in ("before", "after"):
        value = reference.get(side) if reference else None
        rows.append([f"word error rate of {side} against the reference",
                     fmt.percent(value) if reference else "n/a (no reference text)"])
    return _table(["", "value"], rows)


def _stage_table(run: Run) -> str:
    """A corpus run's stages (threads, items, busy and wait seconds) and its failed files."""
    corpus = run.corpus
    table = _table(STAGE_HEADER, stage_rows(corpus))
    summary = f'<p class="note">{html.escape(corpus.summary())}.</p>'
    failed = "".join(f"<li>{html.escape(path)}: {html.escape(reason)}</li>" for path, reason in corpus.failures.items())
    return summary + table + (f"<p>Failed files:</p><ul>{failed}</ul>" if failed else "")


def _metrics_table(runs: list[Run]) -> str:
    return _table(["metric", *(run.label for run in runs)], metric_rows(runs, long=True))


def diagnosis_html(result: Run | Comparison | Sweep | list[Run]) -> str:
    """The findings of :func:`whisperkit.experiments.diagnose.diagnose` for ``result`` (a Run,
    Comparison, Sweep or list of runs) as an HTML list, most important first."""
    from whisperkit.experiments.diagnose import diagnose

    findings = diagnose(result)
    if not findings:
        return "<p>No findings: nothing points to an idle GPU, a wasted setting or a misread meter.</p>"
    items = "".join(
        f"<li><b>{html.escape(f.title)}</b> <code>{html.escape(f.code)}</code>"
        f"{' (' + html.escape(f.run) + ')' if f.run else ''}<br>{html.escape(f.evidence)}<br>"
        f"<i>What to do:</i> {html.escape(f.what_to_do)}</li>"
        for f in findings
    )
    return f"<ol>{items}</ol>"


def _differences(comparison: Comparison) -> str:
    sentence = MATCHED_SENTENCE if comparison.matched else DIFFERENCES_SENTENCE
    if not comparison.differences:
        return "<p>Both sides use the same settings.</p>"
    rows = [[d["setting"], fmt.setting(d["before"]), fmt.setting(d["after"])] for d in comparison.differences]
    return f"<p>{sentence}</p>\n" + _table(["setting", "before", "after"], rows, css_class="differences")


def _sweep_table(sw: Sweep) -> str:
    rows = sweep_rows(sw)
    marked = {number for number, row in enumerate(rows) if row[0] == str(sw.best) and row[-1] == "no"}
    return _table(sweep_header(), rows, marked=marked, mark_class="best")


def _settings_table(runs: list[Run]) -> str:
    settings = [_settings(run) for run in runs]
    names = list(dict.fromkeys(name for one in settings for name in one))
    rows, marked = [], set()
    for number, name in enumerate(names):
        values = [fmt.setting(one.get(name)) for one in settings]
        rows.append([name, *values])
        if len(set(values)) > 1:
            marked.add(number)
    note = '<p class="note">Highlighted rows differ between runs.</p>\n' if marked else ""
    return note + _table(["setting", *(run.label for run in runs)], rows, marked=marked)


def _settings(run: Run) -> dict[str, object]:
    """The settings a run used: resolved config (model, device, batch size) and decoding in effect."""
    from whisperkit.core.config import decoding_settings

    used = {k: v for k, v in run.transcript.config.items() if k not in ("options", "label")}
    decoding = decoding_settings(run.config)
    other = {k: v for k, v in (run.config.options or {}).items() if k not in decoding}
    return {**used, **decoding, **({"other options": other} if other else {})}


def _environment_table(runs: list[Run]) -> str:
    described = [_environment_rows(run.environment or {}) for run in runs]
    if all(rows == described[0] for rows in described):
        return _table(["", "value"], [[name, value] for name, value in described[0].items()])
    names = list(dict.fromkeys(name for rows in described for name in rows))
    rows = [[name, *(rows.get(name, "") for rows in described)] for name in names]
    return ('<p class="note">The runs come from different machines or setups.</p>\n'
            + _table(["", *(run.label for run in runs)], rows))


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


def _transcripts(runs: list[Run], *, open_count: int) -> str:
    parts = []
    references = dict.fromkeys(run.reference for run in runs if run.reference)
    for reference in references:
        parts.append(f"<details><summary>reference text</summary>\n<p class=\"transcript\">"
                     f"{html.escape(reference)}</p></details>")
    for number, run in enumerate(runs):
        warnings = "".join(f"<li>{html.escape(w)}</li>" for w in run.transcript.warnings)
        warnings = f'<ul class="note">{warnings}</ul>' if warnings else ""
        opened = " open" if number < open_count else ""
        parts.append(f"<details{opened}><summary>{html.escape(run.label)}</summary>\n{warnings}"
                     f'<p class="transcript">{html.escape(run.transcript.text) or "(no speech found)"}</p></details>')
    return "\n".join(parts)


def _figures(figures: list[tuple[str, str, Figure]]) -> str:
    """Figures as HTML: plotly.js inlined with the first one only."""
    parts = []
    for number, (heading, caption, fig) in enumerate(figures):
        div = fig.to_html(full_html=False, include_plotlyjs=number == 0, config=PLOTLY_CONFIG)
        caption_html = f'<p class="note">{html.escape(caption)}</p>' if caption else ""
        parts.append(f'<h2>{html.escape(heading)}</h2>\n{caption_html}\n<div class="figure">{div}</div>\n')
    return "".join(parts)


def _section(heading: str, content: str) -> str:
    return f"<h2>{html.escape(heading)}</h2>\n{content}\n"


def _table(header: Sequence[object], rows: Sequence[Sequence[object]], *, marked: Collection[int] = (),
           mark_class: str = "differs", css_class: str = "") -> str:
    """An HTML table; every cell escaped; the first cell of a row is its heading; rows whose
    number is in ``marked`` get ``mark_class``."""
    head = "".join(f"<th>{html.escape(str(cell))}</th>" for cell in header)
    body = []
    for number, row in enumerate(rows):
        cells = f"<th>{html.escape(str(row[0]))}</th>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row[1:])
        css = f' class="{mark_class}"' if number in marked else ""
        body.append(f"<tr{css}>{cells}</tr>")
    table_class = f' class="{css_class}"' if css_class else ""
    return f"<table{table_class}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>\n"
