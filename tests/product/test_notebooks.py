"""The notebooks: saved clean, and every one runs top to bottom in a real kernel of this Python.

Each notebook runs with nbclient in a kernel started from ``sys.executable`` (a kernelspec written
to a temporary folder, so whatever ``python3`` kernel the machine has does not matter), with the
real bundled model on the bundled audio, as a student would run it on a CPU-only laptop.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
DOCS = ROOT / "docs"
EXPECTED = ["01_quickstart.ipynb", "02_cpu_bound_vs_gpu_bound.ipynb", "03_batch_size_sweep.ipynb",
            "04_workers_threads_batches.ipynb", "05_corpus.ipynb", "06_scaling_out.ipynb"]
KERNEL_NAME = "whisperkit-test"
CELL_TIMEOUT_S = 300
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
PLOTLY_MIME = "application/vnd.plotly.v1+json"


def all_notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def test_the_six_notebooks_exist():
    assert [path.name for path in all_notebooks()] == EXPECTED


@pytest.mark.parametrize("path", all_notebooks(), ids=lambda p: p.name)
def test_notebook_is_saved_clean_with_a_parameters_cell(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    dirty = [i for i, cell in enumerate(code_cells) if cell.outputs or cell.execution_count is not None]
    assert not dirty, f"{path.name}: code cells {dirty} have outputs; clear them before saving"
    assert "parameters" in code_cells[0].metadata.get("tags", []), \
        f"{path.name}: the first code cell must be tagged 'parameters' (papermill)"
    assert all("parameters" not in cell.metadata.get("tags", []) for cell in code_cells[1:])
    assert re.search(r"^(AUDIO|MODEL|DEVICE) = ", code_cells[0].source, re.MULTILINE)
    assert notebook.metadata["kernelspec"]["name"] == "python3"
    assert notebook.cells[0].cell_type == "markdown" and notebook.cells[0].source.startswith("# ")
    widget_state = notebook.metadata.get("widgets", {})
    assert not widget_state, f"{path.name}: saved widget state; save without it"


GOALS = "**What you will learn**"
EXERCISE = "**Predict, then measure.**"
SUMMARY = "## What you learned"
GLOSSARY_LINK = "../docs/glossary.md"
GLOSSARY_TERMS = ["RTFx", "NVML utilization", "VAD", "Chunk", "Window", "Inter-op", "Intra-op", "RSS", "WER"]
# what a verdict may say (whisperkit.experiments.verdicts and the notebooks' own): never a bare larger number
VERDICTS = ("no difference within noise", "in every repeat", "QUICK mode", "quick mode", "x faster (wall", "x slower (wall",
            "beyond the noise", "do not differ within noise", "do the same work")


@pytest.mark.parametrize("path", all_notebooks(), ids=lambda p: p.name)
def test_notebook_teaches_goals_an_exercise_and_a_summary(path):
    """Learning goals in the first cell, a predict-then-measure question right before the code cell
    that measures it, a closing summary with what to try next, and a link to the glossary."""
    cells = nbformat.read(path, as_version=4).cells
    assert GOALS in cells[0].source, f"{path.name}: the first cell must list what the student will learn"
    questions = [i for i, cell in enumerate(cells) if cell.cell_type == "markdown" and EXERCISE in cell.source]
    assert questions, f"{path.name}: no predict-then-measure exercise ({EXERCISE!r} in a markdown cell)"
    for i in questions:
        assert i + 1 < len(cells) and cells[i + 1].cell_type == "code", \
            f"{path.name}: the exercise in cell {i} must be followed by the code cell that measures it"
    last_markdown = [cell for cell in cells if cell.cell_type == "markdown"][-1]
    assert SUMMARY in last_markdown.source and "Try next" in last_markdown.source, \
        f"{path.name}: the last markdown cell must say what was learned and what to try next"
    assert any(GLOSSARY_LINK in cell.source for cell in cells if cell.cell_type == "markdown")


def test_the_teachers_guide_and_the_glossary_exist():
    glossary = (DOCS / "glossary.md").read_text()
    missing = [term for term in GLOSSARY_TERMS if f"**{term}" not in glossary]
    assert not missing, f"docs/glossary.md lacks {missing}"
    guide = (DOCS / "teaching.md").read_text()
    assert all(path.name in guide for path in all_notebooks()), "docs/teaching.md names every notebook"
    assert "90-minute" in guide and "Answers" in guide and "load average" in guide  # a plan, answers, measured timings


@pytest.fixture(scope="module")
def kernel_manager_factory(tmp_path_factory):
    """KernelManagers whose kernel is this interpreter (sys.executable), via a temporary kernelspec."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    kernels = tmp_path_factory.mktemp("kernels")
    spec = kernels / KERNEL_NAME
    spec.mkdir()
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "whisperkit test kernel",
        "language": "python",
    }))
    spec_manager = KernelSpecManager(kernel_dirs=[str(kernels)])

    def make():
        return KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=spec_manager)

    return make


def execute(path: Path, kernel_manager_factory, parameters: str | None = None):
    notebook = nbformat.read(path, as_version=4)
    if parameters:
        first = next(cell for cell in notebook.cells if cell.cell_type == "code")
        first.source += "\n" + parameters
    client = nbclient.NotebookClient(
        notebook,
        km=kernel_manager_factory(),
        kernel_name=KERNEL_NAME,
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()
    return check_executed(path, notebook)


def check_executed(path: Path, notebook):
    """What every executed notebook must show: no error, no stderr, at least one plotly figure."""
    errors = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
              if output.output_type == "error"]
    assert not errors, f"{path.name}: {errors[0].ename}: {errors[0].evalue}"
    # Jupyter shows stderr in red: a student takes any of it for an error
    stderr = [output.text for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
              if output.output_type == "stream" and output.name == "stderr" and output.text.strip()]
    assert not stderr, f"{path.name}: stderr in the executed output, shown in red: {stderr[0][:300]!r}"
    figures = [cell for cell in notebook.cells if cell.cell_type == "code" and PLOTLY_MIME in mimetypes(cell)]
    assert figures, f"{path.name}: no plotly figure among the outputs; every notebook shows its measurements as figures"
    return notebook


def text_of(cell) -> str:
    parts = []
    for output in cell.outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif "data" in output:
            parts.append(output.data.get("text/plain", ""))
            parts.append(output.data.get("text/html", ""))
    return "".join(parts)


def code_cell(notebook, contains: str):
    matches = [cell for cell in notebook.cells if cell.cell_type == "code" and contains in cell.source]
    assert matches, f"no code cell contains {contains!r}"
    return matches[0]


def mimetypes(cell) -> set[str]:
    return {key for output in cell.outputs if "data" in output for key in output.data}


def verdict_of(text: str) -> str:
    """The verdict line a comparison printed; it must not crown a side its repeats do not separate."""
    line = re.search(r"verdict[^:]*: (.*)", text)
    assert line, f"no verdict in {text[:300]!r}"
    assert any(word in line.group(1) for word in VERDICTS), line.group(1)
    return line.group(1)


def real_speech_folder() -> Path | None:
    """shared/data/real-speech above the repository, as notebook 05 looks for it."""
    for folder in [NOTEBOOKS, *NOTEBOOKS.parents]:
        if (folder / "shared" / "data" / "real-speech" / "short").is_dir():
            return folder / "shared" / "data" / "real-speech"
    return None


def test_01_quickstart_runs(kernel_manager_factory):
    notebook = execute(NOTEBOOKS / "01_quickstart.ipynb", kernel_manager_factory)
    text = text_of(code_cell(notebook, "print(transcript.text)")).lower()
    assert "four score and seven years ago" in text
    assert "created equal" in text
    rtfx = re.search(r"RTFx ([0-9.]+)", text_of(code_cell(notebook, "transcript.wall_seconds")))
    assert rtfx and float(rtfx.group(1)) > 1
    assert PLOTLY_MIME in mimetypes(code_cell(notebook, "wk.plots.timeline(run)"))
    last = [cell for cell in notebook.cells if cell.cell_type == "code"][-1]
    assert last.source.strip() == "wk.app()" and WIDGET_MIME in mimetypes(last)


def test_02_before_after_runs(kernel_manager_factory):
    notebook = execute(NOTEBOOKS / "02_cpu_bound_vs_gpu_bound.ipynb", kernel_manager_factory)
    table = text_of(code_cell(notebook, "comparison = wk.compare("))
    assert "speed-up" in table and "RTFx" in table and "num_workers=24" in table
    verdict_of(table)
    assert "median s" in table and "max s" in table  # the spread of the 3 repeats, not one number
    assert PLOTLY_MIME in mimetypes(code_cell(notebook, "wk.plots.timeline(comparison)"))
    assert PLOTLY_MIME in mimetypes(code_cell(notebook, "wk.plots.summary(comparison)"))
    assert "vad_filter" in text_of(code_cell(notebook, "pd.DataFrame(comparison.differences)"))
    matched = text_of(code_cell(notebook, "matched=True"))
    assert "batching alone" in matched and "same chunks" in matched
    assert "settings still different: ['mode', 'batch_size']" in matched  # no segmentation, no workers
    assert "num_workers=6" in matched and "num_workers=24" not in matched  # the label says what ran
    assert "batching alone (" in matched and any(word in matched for word in VERDICTS)
    spans = [json.loads(re.search(rf"chunks \(s\), {side}: *(\[.*?\]\])", matched).group(1))
             for side in ("before", "after")]
    assert len(spans[0]) == len(spans[1]) >= 2  # both sides decoded the same chunks of the 40 s excerpt
    assert all(abs(a - b) <= 0.02 for x, y in zip(*spans) for a, b in zip(x, y))
    diagnosis = text_of(code_cell(notebook, "wk.diagnose(comparison)"))
    assert diagnosis.startswith("1. [") and "[workers-over-callers]" in diagnosis
    assert "[batch-larger-than-chunks]" in diagnosis and f"{len(spans[0])} chunk(s)" in diagnosis  # batch 8, fewer chunks
    seed_call = text_of(code_cell(notebook, "use_bettertransformer=True"))
    assert "the seed's call fails:" in seed_call and "unexpected keyword argument" in seed_call
    assert "slow and steady wins the race" in seed_call.lower()


def test_03_sweep_runs(kernel_manager_factory):
    notebook = execute(NOTEBOOKS / "03_batch_size_sweep.ipynb", kernel_manager_factory)
    swept = text_of(code_cell(notebook, "wk.sweep("))
    assert re.search(r"fastest median: batch size \d+; within noise of it, or doing the same work: \[", swept)
    assert "RTFx min" in swept and "RTFx max" in swept  # the spread of the 3 repeats
    figure = code_cell(notebook, "wk.plots.sweep(sw)")
    assert PLOTLY_MIME in mimetypes(figure)
    stars = [t for t in figure.outputs[-1].data[PLOTLY_MIME]["data"] if (t.get("meta") or {}).get("series") == "best"]
    alone = "beyond the noise of every other size" in verdict_of(swept)
    assert all(t["name"] == ("best batch size" if alone else "smallest batch size as fast within noise") for t in stars)
    assert re.search(r"autotune picked: \d+", text_of(code_cell(notebook, "runners.autotune(")))
    estimates = text_of(code_cell(notebook, "recommend_batch_size(m,"))
    assert "large-v3" in estimates and "80 GiB" in estimates
    chosen = text_of(code_cell(notebook, "loaded = wk.load_model("))
    assert "estimated batch size: 8" in chosen and "reconciled: " in chosen  # sweep, autotune and estimate in one sentence


def test_04_workers_threads_batches_runs(kernel_manager_factory):
    notebook = execute(NOTEBOOKS / "04_workers_threads_batches.ipynb", kernel_manager_factory)
    single = text_of(code_cell(notebook, "for workers in (1, 24)"))
    extra = re.search(r"23 more workers added (-?\d+) MiB to the peak; the weights are (\d+) MiB", single)
    assert extra, single
    added, weights = int(extra.group(1)), int(extra.group(2))
    assert weights > 30 and added < 23 * weights, "the workers share the weights: no 23 copies"
    assert "speed: " in single and any(word in single for word in VERDICTS)
    many = code_cell(notebook, "def transcribe_files(")
    assert "slow and steady wins the race" in text_of(many).lower()
    verdict_of(text_of(many))
    batched = text_of(code_cell(notebook, "wk.transcribe_clips(")).lower()
    assert "slow and steady wins the race" in batched and "batched across files" in batched
    # the measurements as figures, not only tables: workers (speed and memory), then every configuration
    single_figure = code_cell(notebook, "the same measurement as a figure")
    assert PLOTLY_MIME in mimetypes(single_figure)
    bars = single_figure.outputs[-1].data[PLOTLY_MIME]["data"]
    assert [list(bar["x"]) for bar in bars] == [["num_workers=1", "num_workers=24"]] * 2
    many_figure = code_cell(notebook, "every row above as a bar")
    assert PLOTLY_MIME in mimetypes(many_figure)
    assert len(many_figure.outputs[-1].data[PLOTLY_MIME]["data"][0]["x"]) == 4  # three thread rows and the batched one
    assert "error_y" in many_figure.outputs[-1].data[PLOTLY_MIME]["data"][0]  # the spread, min to max


def test_05_corpus_runs(kernel_manager_factory):
    notebook = execute(NOTEBOOKS / "05_corpus.ipynb", kernel_manager_factory)
    ways = text_of(code_cell(notebook, "ways = pd.DataFrame("))
    assert "one file at a time" in ways and "across files, packed windows" in ways and "RTFx median" in ways
    verdict_of(ways)
    real = text_of(code_cell(notebook, "real = find_real_speech("))
    if real_speech_folder() is None:
        assert "No real-speech folder found" in real
    else:  # the four ways on real human speech, per clip
        assert re.search(r"mean per-clip WER: sequential 0\.\d+, batched per file 0\.\d+, corpus across files "
                         r"0\.\d+, corpus packed 0\.\d+", real), real
    words = text_of(code_cell(notebook, "words = pd.DataFrame(")).lower()
    assert "slow and steady wins the race" in words and "hanging grapes" in words
    assert "the model waited" in text_of(code_cell(notebook, "print(packed.summary())"))
    assert PLOTLY_MIME in mimetypes(code_cell(notebook, "wk.plots.stage_timeline(packed)"))
    resumed = text_of(code_cell(notebook, "again = wk.transcribe_corpus("))
    assert "10 files written; second run: 10 skipped, 0 transcribed" in resumed
    table = text_of(code_cell(notebook, "run = wk.run(clips, wk.Config("))
    assert "model wait %" in table and "files done" in table and "corpus, packed, batch 8" in table
    assert PLOTLY_MIME in mimetypes(code_cell(notebook, "wk.plots.timeline(run)"))
    assert "10 file(s) done, 0 failed" in text_of(code_cell(notebook, "loaded = wk.load_run(saved)"))
    assert "application/vnd.jupyter.widget-view+json" in mimetypes(code_cell(notebook, 'application.mode.value = "corpus"'))


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="notebook 06 needs the ray extra: pip install whisperkit[ray]")
def test_06_scaling_out_runs(kernel_manager_factory):
    notebook = execute(NOTEBOOKS / "06_scaling_out.ipynb", kernel_manager_factory)
    assert "WER between the engines over the corpus: 0.0" in text_of(code_cell(notebook, "local_text = "))
    assert "same output files: True" in text_of(code_cell(notebook, "local_text = "))
    for source in ("wk.plots.worker_timelines(result)", "wk.plots.stage_timeline(result)"):
        figure = code_cell(notebook, source)
        assert PLOTLY_MIME in mimetypes(figure)
        layout = figure.outputs[-1].data[PLOTLY_MIME]["layout"]
        assert layout["xaxis"]["range"][0] == 0, f"{source}: the figure must show the whole run, from 0 s"
    assert "first batch decoded from" in text_of(code_cell(notebook, "where the Ray run's time went"))
    survived = text_of(code_cell(notebook, "a worker died"))
    assert "a worker died: True; files done: 10 of 10, failed: 0;" in survived
