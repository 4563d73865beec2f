"""The app's result area: the transcript, a table of metrics (from the registry) and the figures."""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from whisperkit.views import format as fmt
from whisperkit.views import tables

if TYPE_CHECKING:
    import pandas as pd

    from whisperkit.experiments.results import Comparison, Run, Sweep

TABLE_STYLE = (
    "<style>.wk-table{border-collapse:collapse;font-size:12px;line-height:1.35;margin:4px 0}"
    ".wk-table th,.wk-table td{border:1px solid #d0d0d0;padding:2px 8px;text-align:right}"
    ".wk-table thead th{background:#f3f3f3}</style>"
)


class ResultView:
    """``transcript`` and ``table`` (HTML widgets) and ``figures`` (a VBox of plotly FigureWidgets)."""

    def __init__(self) -> None:
        import ipywidgets as w

        # a long transcript scrolls in its box instead of pushing the charts down
        self.transcript = w.HTML(value="", layout=w.Layout(max_height="140px", overflow="auto"))
        self.table = w.HTML(value="")
        self.figures = w.VBox([])

    def show(self, result: Run | Comparison | Sweep | list[Run]) -> None:
        """Show a Run, a Comparison, a Sweep or a list of runs (loaded from disk): its text(s), its
        table and notes, its figures."""
        import plotly.graph_objects as go

        from whisperkit.experiments.results import Comparison, Sweep

        if isinstance(result, Comparison):
            texts, table, figures, notes = _comparison(result)
        elif isinstance(result, Sweep):
            texts, table, figures, notes = _sweep(result)
        elif isinstance(result, list):
            texts, table, figures, notes = _runs(result)
        else:
            texts, table, figures, notes = _run(result)
        self.transcript.value = "".join(
            f'<p style="white-space:pre-wrap;line-height:1.4;margin:2px 0">'
            f'{f"<b>{html.escape(label)}:</b> " if label else ""}'
            f"{html.escape(text) or '<i>(no speech found)</i>'}</p>"
            for label, text in texts
        )
        from whisperkit.views.report import diagnosis_html

        self.table.value = (table + "".join(f"<p><i>{html.escape(note)}</i></p>" for note in notes)
                            + "<div><b>Diagnosis</b>" + diagnosis_html(result) + "</div>")
        self.figures.children = [go.FigureWidget(figure) for figure in figures]


SHOWN_FILES = 20  # a corpus run's transcript box shows this many files' texts


def _run(result: Run) -> tuple[list[tuple[str, str]], str, list, list[str]]:
    from whisperkit.views import plots

    table = _html_table(_metrics_frame([result], ["value"]), header=False)
    figures = [plots.timeline(result), plots.summary(result)]
    if result.corpus is None:
        return [("", result.transcript.text)], table, figures, _notes(result)
    corpus = result.corpus
    texts = [(os.path.basename(path), t.text) for path, t in list(corpus.transcripts.items())[:SHOWN_FILES]]
    if len(corpus.transcripts) > SHOWN_FILES:
        texts.append(("", f"... and {len(corpus.transcripts) - SHOWN_FILES} more files"))
    table += ("<div><b>Stages</b> (" + html.escape(corpus.summary()) + ")"
              + _html_table(tables.frame(tables.STAGE_HEADER, tables.stage_rows(corpus))) + "</div>")
    failed = [f"failed: {reason}" for reason in corpus.failures.values()]
    return texts, table, [plots.stage_timeline(result), *figures], failed + _notes(result)


def _comparison(result: Comparison) -> tuple[list[tuple[str, str]], str, list, list[str]]:
    from whisperkit.views import plots

    texts = [("before", result.before.transcript.text), ("after", result.after.transcript.text)]
    verdict = result.verdict
    table = (f"<p><b>{html.escape(verdict[:1].upper() + verdict[1:])}</b></p>"
             f"<p>Speed-up (median before wall / median after wall): <b>{fmt.times(result.speedup)}</b>; "
             f"word error rate between the two texts: {fmt.percent(result.wer_between)}</p>")
    side_by_side = [_html_table(_metrics_frame([result.before, result.after], ["before", "after"]))]
    if result.differences:
        rows = [[d["setting"], fmt.setting(d["before"]), fmt.setting(d["after"])] for d in result.differences]
        side_by_side.append("<div><b>What differs between the two sides</b>"
                            + _html_table(tables.frame(["setting", "before", "after"], rows)) + "</div>")
    table += ('<div style="display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start">'
              + "".join(side_by_side) + "</div>")
    return texts, table, [plots.timeline(result), plots.summary(result)], _notes(result.after)


def _sweep(result: Sweep) -> tuple[list[tuple[str, str]], str, list, list[str]]:
    from whisperkit.views import plots

    best = result.best
    best_run = next((r for r in result.runs if r.transcript.config.get("batch_size") == best), None)
    shown = best_run or (result.runs[-1] if result.runs else None)
    texts = [(f"batch size {best}", shown.transcript.text)] if shown is not None else []
    table = _html_table(tables.frame(tables.sweep_header(result), tables.sweep_rows(result)))
    table += (f"<p><b>{html.escape(_sentence(result.verdict))}.</b> "
              f"<i>({html.escape(result.stopped_because)})</i></p>")
    advice = _reconciled(result)
    if advice:
        table += f"<p>{html.escape(advice)}.</p>"
    figures = [plots.sweep(result), plots.timeline(result.runs)] if result.runs else [plots.sweep(result)]
    return texts, table, figures, _notes(shown) if shown is not None else []


def _runs(runs: list[Run]) -> tuple[list[tuple[str, str]], str, list, list[str]]:
    """Runs loaded from a folder: each one's text, their metrics side by side, their timelines."""
    from whisperkit.views import plots

    texts = [(run.label, run.transcript.text) for run in runs[:SHOWN_FILES]]
    table = _html_table(_metrics_frame(runs, [f"run {number}" for number in range(1, len(runs) + 1)]))
    return texts, table, [plots.timeline(runs), plots.summary(runs)], _notes(runs[-1])


def _reconciled(result: Sweep) -> str:
    """The sweep's finding and the memory model's recommendation for its model and device, in one
    sentence ("" where the model cannot be told)."""
    from whisperkit.core.batching import recommend_batch_size
    from whisperkit.errors import WhisperkitError
    from whisperkit.experiments.verdicts import reconcile_batch_sizes

    if not result.runs:
        return ""
    used = result.runs[0].transcript.config
    try:
        recommended = recommend_batch_size(str(used.get("model")), str(used.get("compute_type")),
                                           device="cuda" if used.get("device") == "cuda" else "cpu")
    except WhisperkitError:
        return ""
    return reconcile_batch_sizes(result, recommended=recommended)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _html_table(frame: pd.DataFrame, header: bool = True) -> str:
    """A DataFrame of text cells (see :mod:`whisperkit.views.tables`) as compact HTML."""
    return TABLE_STYLE + frame.to_html(border=0, classes="wk-table", header=header)


def _metrics_frame(runs: Sequence[Run], names: Sequence[str]) -> pd.DataFrame:
    """The runs' configuration and every registered metric, one column per run."""
    rows = [["configuration", *(run.label for run in runs)], *tables.metric_rows(runs)]
    return tables.frame(["metric", *names], rows)


def _notes(run_: Run) -> list[str]:
    notes = list(run_.transcript.warnings)
    notes += [f"batch size {retry['batch_size']} ran out of memory and was halved ({retry['error']})"
              for retry in run_.transcript.batch_retries]
    if run_.gpu_unavailable_reason:
        notes.append(f"GPU: {run_.gpu_unavailable_reason}")
    return notes
