"""The notebook app driven from Python, as a user drives it: set controls, click, read what it shows.

Runs the real bundled tiny.en on the short bundled clips; only the "unexpected exception" test
replaces a function, to make one happen.
"""

from __future__ import annotations

import datetime
import os
import re

import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("anywidget")  # plotly's FigureWidget needs it

import whisperkit as wk  # noqa: E402
from whisperkit.core.samples import reference_text, sample_path  # noqa: E402
from whisperkit.experiments import results, runners  # noqa: E402
from whisperkit.views.app import App, app  # noqa: E402

TIMEOUT_S = 90


@pytest.fixture
def a():
    application = app()
    application.audio.value = "aesop_02"
    return application


def click_and_wait(application, button):
    """Click, record every change of the buttons' ``disabled`` while the job runs, wait for it."""
    seen = []
    application.transcribe_button.observe(lambda change: seen.append(change["new"]), names="disabled")
    button.click()
    assert all(b.disabled for b in (application.transcribe_button, application.compare_button,
                                    application.sweep_button)), "buttons must be disabled while a job runs"
    assert application.wait(TIMEOUT_S), "the job did not finish in time"
    assert not any(b.disabled for b in (application.transcribe_button, application.compare_button,
                                        application.sweep_button)), "buttons must be enabled after the job"
    assert seen == [True, False]
    return application


def visible_text(html_value: str) -> str:
    return re.sub(r"<[^>]+>", "", html_value)


def test_app_is_a_widget_that_nests_in_a_layout_of_ones_own():
    import ipywidgets

    a = wk.app()
    assert isinstance(a, App) and isinstance(a, ipywidgets.Widget)
    bundle = a._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == a.model_id
    tab = ipywidgets.Tab([a, ipywidgets.HTML("notes")])
    assert tab.children[0] is a
    assert a.controls.transcribe_button is a.transcribe_button and a.live.figure is a.live_figure
    assert a.model.value == "tiny.en (bundled)"
    assert {"tiny", "small", "large-v3"} <= set(a.model.options)
    assert a.device.options == ("auto", "cpu", "cuda")
    assert a.compute_type.options == ("auto", "int8", "int8_float16", "float16", "float32")
    assert (a.batch_size.min, a.batch_size.max) == (1, 64)
    assert set(wk.list_samples()) == set(a.audio.options)


def test_transcribe_shows_text_table_live_chart_and_figures(a):
    import plotly.graph_objects as go

    a.mode.value = "batched"
    a.batch_size.value = 4
    click_and_wait(a, a.transcribe_button)

    assert a.message.value == "", visible_text(a.message.value)
    assert a.last_error is None
    assert isinstance(a.last_result, results.Run)
    assert a.last_result.transcript.config["batch_size"] == 4
    assert "slow and steady wins the race" in visible_text(a.transcript.value).lower()
    table = visible_text(a.table.value)
    rtfx = re.search(r"RTFx\s*([0-9.]+)", table)
    assert rtfx and float(rtfx.group(1)) == pytest.approx(a.last_result.metrics["rtfx"], abs=0.01)
    assert "batched, batch 4" in table
    from whisperkit.experiments.metrics import METRICS

    assert all(m.label in table for m in METRICS if not m.corpus_only)  # the app's table reads the registry
    assert a.progress.value == a.progress.max and a.status.value.startswith("Done in")

    live = {trace.name: trace for trace in a.live_figure.data}
    system = live["CPU % (system)"]
    assert len(system.x) >= 2 and len(system.x) == len(system.y)
    assert list(system.x) == sorted(system.x)
    readings = [y for y in system.y if y == y]
    assert readings and all(0 <= y <= 100 for y in readings)
    assert len(live["CPU % (this process)"].x) == len(system.x)

    figures = a.figures.children
    assert len(figures) == 2 and all(isinstance(f, go.FigureWidget) for f in figures)
    timeline_columns = {(trace.meta or {}).get("column") for trace in figures[0].data}
    assert {"cpu_percent", "process_cpu_percent"} <= timeline_columns
    assert any(trace.type == "bar" for trace in figures[1].data)


def test_sequential_mode_disables_batch_size_and_runs_sequentially(a):
    a.mode.value = "sequential"
    assert a.batch_size.disabled and a.batch_auto.disabled
    a.audio.value = "aesop_09"
    click_and_wait(a, a.transcribe_button)
    assert a.last_result.config.mode == "sequential"
    assert "little friends may prove great friends" in visible_text(a.transcript.value).lower()
    a.mode.value = "batched"
    assert not a.batch_size.disabled
    a.batch_auto.value = True
    assert a.batch_size.disabled and a.config().batch_size == "auto"


def test_missing_audio_file_is_one_red_line_in_the_app(a, tmp_path):
    missing = tmp_path / "no_such_file.flac"
    a.audio_path.value = str(missing)
    click_and_wait(a, a.transcribe_button)
    assert isinstance(a.last_error, wk.WhisperkitError)
    assert "color:#b00020" in a.message.value
    text = visible_text(a.message.value)
    assert str(missing) in text and "Error" in text
    assert "\n" not in text and "Traceback" not in text and "File \"" not in text
    assert a.transcript.value == "" and a.progress.bar_style == "danger"


def test_cuda_where_it_cannot_run_is_shown_in_the_app(a):
    from whisperkit.core.models import device_choice

    choice = device_choice("auto")
    if choice.device == "cuda":
        pytest.skip("CUDA runs here")
    a.device.value = "cuda"
    click_and_wait(a, a.transcribe_button)
    assert isinstance(a.last_error, wk.DeviceError)
    text = visible_text(a.message.value)
    assert "device cuda was asked for" in text and "Traceback" not in text
    assert choice.reason.removesuffix("; running on the CPU").split(";")[0] in text


def test_unknown_model_folder_is_shown_in_the_app(a, tmp_path):
    a.model_path.value = str(tmp_path / "not_a_model")
    click_and_wait(a, a.transcribe_button)
    assert isinstance(a.last_error, wk.ModelError)
    assert "not_a_model" in visible_text(a.message.value)


def test_unexpected_exception_is_a_short_message_and_buttons_come_back(a, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("something broke\nsecond line")

    monkeypatch.setattr(runners, "run", broken)
    click_and_wait(a, a.transcribe_button)
    assert visible_text(a.message.value) == "Error: ValueError: something broke"
    assert isinstance(a.last_error, ValueError)


def test_uploaded_file_is_saved_and_transcribed(a):
    content = open(sample_path("aesop_04"), "rb").read()
    a.upload.value = ({"name": "my clip (1).flac", "type": "audio/flac", "size": len(content),
                       "content": memoryview(content),
                       "last_modified": datetime.datetime.now(datetime.timezone.utc)},)
    saved = a.audio_path.value
    assert saved.endswith("my_clip_1_.flac") and open(saved, "rb").read() == content
    click_and_wait(a, a.transcribe_button)
    assert "missed the hanging grapes" in visible_text(a.transcript.value).lower()


def test_compare_shows_both_sides_and_what_differs(a):
    click_and_wait(a, a.compare_button)
    assert a.message.value == "", visible_text(a.message.value)
    result = a.last_result
    assert isinstance(result, results.Comparison)
    # the app's model/device/compute type on both sides, the seed's settings otherwise
    assert result.before.config.num_workers == 24 and result.before.config.mode == "sequential"
    assert result.after.config.mode == "batched" and result.after.config.batch_size == "auto"
    table = visible_text(a.table.value)
    for expected in ("before", "after", "RTFx", "Speed-up", "vad_filter", "condition_on_previous_text"):
        assert expected in table
    assert "Diagnosis" in table and "workers-over-callers" in table  # the diagnosis panel
    words = visible_text(a.transcript.value).lower()
    assert words.count("slow and steady wins the race") == 2
    assert len(a.live_figure.data[0].x) >= 2
    # the live chart was fed by the last run's own sampler: it ends where that run's timeline ends
    assert a.live_figure.data[0].x[-1] == pytest.approx(result.after.timeline["time_s"].iloc[-1])
    assert (a.progress.value, a.progress.max) == (2, 2)
    assert len(a.figures.children) == 2


def test_sweep_measures_each_batch_size(a):
    click_and_wait(a, a.sweep_button)
    assert a.message.value == "", visible_text(a.message.value)
    result = a.last_result
    assert isinstance(result, results.Sweep)
    assert [p.batch_size for p in result.points] == list(runners.DEFAULT_SWEEP)  # the one default list
    assert a.progress.value == a.progress.max == len(runners.DEFAULT_SWEEP)
    assert f"Fastest batch size: {result.best}" in visible_text(a.table.value)
    assert reference_text(sample_path("aesop_02")).lower().rstrip(".") in visible_text(a.transcript.value).lower()


def test_live_chart_draws_one_line_per_gpu(a, monkeypatch):
    """With NVML answering (a fake pynvml with two GPUs), the live chart gains a line per GPU
    whose values are the GPU utilization NVML reported; the CPU run itself is real."""

    try:
        from tests import fake_pynvml
    except ImportError:
        import fake_pynvml

    fake_pynvml.install(monkeypatch, [fake_pynvml.a100(util_gpu_percent=87), fake_pynvml.rtx3090(util_gpu_percent=99)])
    click_and_wait(a, a.transcribe_button)
    assert a.message.value == "", visible_text(a.message.value)
    live = {trace.name: trace for trace in a.live_figure.data}
    for name, util in (("GPU 0 util %", 87), ("GPU 1 util %", 99)):
        assert name in live, sorted(live)
        readings = [y for y in live[name].y if y == y]
        assert readings and set(readings) == {util}
        assert len(live[name].x) == len(live["CPU % (system)"].x)
    assert a.last_result.metrics["mean_gpu_util_percent"] == 99
    table = visible_text(a.table.value)
    assert re.search(r"GPU util %\s*99", table)


def test_corpus_mode_runs_a_folder_and_shows_each_file_and_the_stages(a, tmp_path, bad_audio):
    import shutil

    from whisperkit.core.samples import short_clips

    assert a.controls._corpus_inputs.layout.display == "none" and a.pack.value  # folder controls: corpus mode only
    a.mode.value = "corpus"
    assert a.controls._corpus_inputs.layout.display is None
    assert a.controls._file_inputs.layout.display == "none" and a.compare_button.disabled
    assert a.controls.audio_source() == short_clips()  # no folder typed: the ten bundled clips
    for name in ("aesop_02", "aesop_04", "aesop_09"):
        shutil.copy(sample_path(name), tmp_path)
    shutil.copy(bad_audio["text"], tmp_path / "broken.wav")
    a.folder.value = str(tmp_path)
    a.batch_size.value = 2
    a.transcribe_button.click()
    assert a.wait(TIMEOUT_S) and a.message.value == "", visible_text(a.message.value)
    run = a.last_result
    assert run.config.mode == "corpus" and run.config.pack and run.corpus.batch_size == 2
    assert sorted(os.path.basename(p) for p in run.corpus.transcripts) == ["aesop_02.flac", "aesop_04.flac", "aesop_09.flac"]
    shown = visible_text(a.transcript.value).lower()
    rates = []
    for path, transcript in run.corpus.transcripts.items():
        rates.append(wk.word_error_rate(reference_text(sample_path(os.path.basename(path)[:-5])), transcript.text))
        assert f"{os.path.basename(path)}: {transcript.text.lower()}" in shown
    assert sum(rates) / len(rates) < 0.25, rates
    table = visible_text(a.table.value)
    assert "Stages" in table and "3 file(s) done, 1 failed" in table and "failed:" in table and "broken.wav" in table
    assert a.figures.children[0].layout.title.text.startswith("Corpus pipeline")
    assert not a.transcribe_button.disabled and not a.sweep_button.disabled and a.compare_button.disabled
    a.mode.value = "batched"
    assert not a.compare_button.disabled and a.controls._corpus_inputs.layout.display == "none"
