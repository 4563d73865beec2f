"""The app's run folder: save the last result, export it as the HTML report, load a saved run back.

A result saved here is a whisperkit run folder (:func:`whisperkit.save`): a notebook loads it with
``wk.load_run(folder)`` (one run) or ``wk.load_runs(folder)`` (a comparison's or a sweep's runs),
and the app's Load shows it again. Save refuses a folder that already holds files (nothing saved
before is overwritten); an empty folder field saves to ``whisperkit-runs/<kind>-<time>`` under the
notebook's folder. Export writes ``report.html`` into the folder (the same report as
``whisperkit.views.report.report``), refusing to replace one that is there.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from whisperkit.experiments.results import Comparison, Run, Sweep

    Shown = Run | Comparison | Sweep | list[Run]

DEFAULT_PARENT = "whisperkit-runs"
REPORT_NAME = "report.html"


class RunFolder:
    """``folder`` (Text), ``save_button``, ``export_button``, ``load_button`` and their ``box``."""

    def __init__(self) -> None:
        import ipywidgets as w

        self.folder = w.Text(placeholder=f"a run folder (empty: {DEFAULT_PARENT}/<kind>-<time>)",
                             description="Run folder", style={"description_width": "110px"},
                             layout=w.Layout(width="480px"))
        self.save_button = w.Button(description="Save", icon="save", disabled=True,
                                    tooltip="save the last result as a run folder (wk.load_run / wk.load_runs)",
                                    layout=w.Layout(width="90px"))
        self.export_button = w.Button(description="Export report", icon="file-code-o", disabled=True,
                                      tooltip="write the last result's HTML report (report.html) into the folder",
                                      layout=w.Layout(width="130px"))
        self.load_button = w.Button(description="Load", icon="folder-open", tooltip="show a saved run folder",
                                    layout=w.Layout(width="90px"))
        self.buttons = (self.save_button, self.export_button, self.load_button)
        self.box = w.HBox([self.folder, *self.buttons])

    def enable(self, enabled: bool, has_result: bool) -> None:
        """Load whenever no job runs; Save and Export where there is a result to save."""
        self.load_button.disabled = not enabled
        self.save_button.disabled = self.export_button.disabled = not (enabled and has_result)

    def target(self, result: Shown) -> str:
        """The folder typed, or a new one named after the result's kind and the time."""
        typed = self.folder.value.strip()
        if typed:
            return os.path.expanduser(typed)
        kind = type(result).__name__.lower() if not isinstance(result, list) else "runs"
        return os.path.join(DEFAULT_PARENT, f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}")


def save(result: Shown, folder: str) -> str:
    """Save ``result`` into ``folder`` (refused if it holds files); a sentence saying where and how to load it."""
    from whisperkit.errors import RunError
    from whisperkit.experiments.store import claim_folder
    from whisperkit.experiments.store import save as save_result

    if isinstance(result, list):
        raise RunError("these runs were loaded from a folder; they are saved there already")
    with claim_folder(folder):
        save_result(result, folder)
    loader = "wk.load_run" if type(result).__name__ == "Run" else "wk.load_runs"
    return f"Saved to {os.path.abspath(folder)}; in a notebook: {loader}({folder!r})"


def export(result: Shown, folder: str) -> str:
    """Write ``result``'s HTML report as ``folder/report.html``; a sentence saying where."""
    from whisperkit.errors import RunError
    from whisperkit.views.report import report

    path = os.path.join(folder, REPORT_NAME)
    if os.path.exists(path):
        raise RunError(f"{path} exists already; type another run folder to export into")
    os.makedirs(folder, exist_ok=True)
    report(result, path)
    return f"Report written to {os.path.abspath(path)} (opens offline in any browser)"


def load(folder: str) -> Shown:
    """A saved run folder: its Run, or the runs of a saved comparison or sweep (oldest first)."""
    from whisperkit.experiments.store import load_run, load_runs

    if os.path.isfile(os.path.join(folder, "run.json")):
        return load_run(folder)
    return load_runs(folder)
