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
    buttons = (application.transcribe_button, application.compare_button, application.sweep_button,
               application.save_button, application.export_button, application.load_button)
    running = application.busy  # a job that fails at once may be over already (``seen`` still shows it)
    assert not running or all(b.disabled for b in buttons), "buttons must be disabled while a job runs"
    assert application.wait(TIMEOUT_S), "the job did not finish in time"
    assert not any(b.disabled for b in (application.transcribe_button, application.compare_button,
                                        application.sweep_button)), "buttons must be enabled after the job"
    assert seen == [True, False]
    return application


def visible_text(html_value: str) -> str:
    import html

    return html.unescape(re.sub(r"<[^>]+>", "", html_value))


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
    menu = dict((value, text) for text, value in a.model.options)
    assert {"tiny", "small", "large-v3"} <= set(menu)
    assert menu["tiny.en (bundled)"] == "tiny.en (bundled): works offline"
    # every other model says whether it works offline (in faster-whisper's cache) or needs a download
    assert all(text in (f"{value}: works offline", f"{value}: needs a download") for value, text in menu.items()
               if value != "tiny.en (bundled)")
    assert (a.repeats.value, a.quick.value) == (3, False) and a.controls.repeat_count() == 3
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
    # the slider stays: Compare's batched side uses it; the plan says Transcribe does not
    assert not a.batch_size.disabled
    assert "Transcribe: sequential (the batch size is not used)" in visible_text(a.plan.value)
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
    a.batch_size.value = 4
    assert "batched at batch size 4" in visible_text(a.plan.value) and "3 alternating runs each" in visible_text(a.plan.value)
    click_and_wait(a, a.compare_button)
    assert a.message.value == "", visible_text(a.message.value)
    result = a.last_result
    assert isinstance(result, results.Comparison)
    # the app's model/device/compute type on both sides, the seed's settings otherwise; the slider's batch size after
    assert result.before.config.num_workers == 24 and result.before.config.mode == "sequential"
    assert result.after.config.mode == "batched" and result.after.config.batch_size == 4
    assert result.after.transcript.config["batch_size"] == 4 and result.after.label == "after: batched, batch_size=4"
    assert len(result.before_runs) == len(result.after_runs) == 3  # three alternating repeats by default
    assert visible_text(a.table.value).startswith(result.verdict[:1].upper() + result.verdict[1:])
    # the last run's "before" lines stay on the live chart, faded, beside the "after" run's
    held = [trace for trace in a.live_figure.data if trace.name.startswith("before: ")]
    assert held and all(len(trace.x) >= 2 for trace in held)
    table = visible_text(a.table.value)
    for expected in ("before", "after", "RTFx", "Speed-up", "vad_filter", "condition_on_previous_text"):
        assert expected in table
    assert "Diagnosis" in table and "workers-over-callers" in table  # the diagnosis panel
    words = visible_text(a.transcript.value).lower()
    assert words.count("slow and steady wins the race") == 2
    assert len(a.live_figure.data[0].x) >= 2
    # the live chart was fed by the last run's own sampler: it ends at that run's last CPU reading (NaN left out)
    measured = result.after_runs[-1].timeline.dropna(subset=["cpu_percent"])
    assert a.live_figure.data[0].x[-1] == pytest.approx(measured["time_s"].iloc[-1])
    assert (a.progress.value, a.progress.max) == (6, 6)
    assert len(a.figures.children) == 2


def test_sweep_measures_the_batch_sizes_typed(a):
    assert a.sweep_sizes.value == ", ".join(str(size) for size in runners.DEFAULT_SWEEP)  # the one default list
    a.sweep_sizes.value = "1, 4"
    a.quick.value = True
    assert a.repeats.disabled and "one run each (quick mode: noise not measured)" in visible_text(a.plan.value)
    assert "the batch-size slider is not used" in visible_text(a.plan.value)
    click_and_wait(a, a.sweep_button)
    assert a.message.value == "", visible_text(a.message.value)
    result = a.last_result
    assert isinstance(result, results.Sweep)
    assert [p.batch_size for p in result.points] == [1, 4]
    assert a.progress.value == a.progress.max == 2
    table = visible_text(a.table.value)
    # aesop_02 is one chunk: batch sizes 1 and 4 do the same work, and the app says so rather than crowning one
    assert result.verdict[:1].upper() + result.verdict[1:] in table and "Fastest batch size" not in table
    assert "do the same work" in table and result.best == 1
    assert "memory model" in table  # the memory model's recommendation, reconciled in one sentence
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
        assert set(live["CPU % (system)"].x) <= set(live[name].x)  # same samples (the CPU's first one is NaN: left out)
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


def test_bad_sweep_sizes_are_one_red_line(a):
    a.sweep_sizes.value = "1, two, 4"
    click_and_wait(a, a.sweep_button)
    assert isinstance(a.last_error, wk.ConfigError) and "sweep sizes '1, two, 4'" in visible_text(a.message.value)


def test_a_failed_job_leaves_an_empty_chart_with_a_time_axis(a, tmp_path):
    click_and_wait(a, a.transcribe_button)
    a.audio_path.value = str(tmp_path / "missing.flac")
    click_and_wait(a, a.transcribe_button)
    assert isinstance(a.last_error, wk.WhisperkitError)
    traces = a.live_figure.data
    # what the failed run sampled before it failed, without NaN (an axis of NaN alone reads "nan")
    assert all(x == x for trace in traces for x in trace.x) and all(y == y for trace in traces for y in trace.y)
    if all(len(trace.x) == 0 for trace in traces):  # nothing measured: a plain time axis, not plotly's autorange
        assert tuple(a.live_figure.layout.xaxis.range) == (0, 10) and a.live_figure.layout.xaxis.autorange is False
    else:
        assert a.live_figure.layout.xaxis.autorange is True


def test_diagnosis_is_worded_for_the_machine(a):
    from whisperkit.measure.columns import gpu_indices

    click_and_wait(a, a.transcribe_button)
    table = visible_text(a.table.value)
    if gpu_indices(a.last_result.timeline):
        assert "No GPU was visible" not in table
    else:  # a run without a GPU says nothing about an idle GPU
        assert "nothing points to an idle GPU" not in table.lower()
        assert "No GPU was visible to these runs" in table or "<li>" in a.table.value


def test_a_run_saved_from_the_app_loads_in_a_notebook_and_back_in_the_app(a, tmp_path):
    assert a.save_button.disabled and a.export_button.disabled and not a.load_button.disabled
    a.batch_size.value = 2
    click_and_wait(a, a.transcribe_button)
    run = a.last_result
    folder = tmp_path / "my run"
    a.run_folder.value = str(folder)
    a.save_button.click()
    assert "wk.load_run(" in visible_text(a.message.value), visible_text(a.message.value)
    loaded = wk.load_run(folder)  # as a notebook loads it
    assert loaded.transcript.text == run.transcript.text and loaded.transcript.config["batch_size"] == 2
    a.save_button.click()  # a second save into the same folder is refused: nothing is overwritten
    assert isinstance(a.last_error, wk.WhisperkitError) and "Error" in visible_text(a.message.value)
    a.export_button.click()
    report = folder / "report.html"
    assert report.is_file() and "slow and steady wins the race" in report.read_text(encoding="utf-8").lower()
    other = app()  # a classmate's app opens the folder
    other.run_folder.value = str(folder)
    other.load_button.click()
    assert isinstance(other.last_result, results.Run) and other.last_error is None
    assert other.last_result.transcript.text == run.transcript.text
    assert "slow and steady wins the race" in visible_text(other.transcript.value).lower()
    assert "batched, batch 2" in visible_text(other.table.value) and len(other.figures.children) == 2
    assert not other.save_button.disabled


def test_a_saved_comparison_loads_back_as_its_runs(a, tmp_path):
    a.quick.value = True
    click_and_wait(a, a.compare_button)
    a.run_folder.value = str(tmp_path / "cmp")
    a.save_button.click()
    assert "wk.load_runs(" in visible_text(a.message.value)
    other = app()
    other.run_folder.value = str(tmp_path / "cmp")
    other.load_button.click()
    assert other.last_error is None and [r.label for r in other.last_result] == [a.last_result.before.label,
                                                                                 a.last_result.after.label]
    assert "before: sequential, num_workers=24" in visible_text(other.table.value)
