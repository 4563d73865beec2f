"""HTML reports from real runs of the bundled model: one self-contained file that opens offline."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess

import pytest
from test_plots import with_gpu

import whisperkit as wk
from whisperkit.experiments.store import load_runs
from whisperkit.views.report import report

# a tag that would load something: <script src=...>, <link href=...>, <img src=...>, ...
EXTERNAL_RESOURCE = re.compile(
    r"<(?:script|link|img|iframe|source|audio|video|embed|object)\b[^>]*\b(?:src|href|data)\s*=\s*[\"']?\s*(?:https?:)?//",
    re.IGNORECASE,
)


@pytest.fixture(scope="module")
def comparison_html(clip_comparison, tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "report.html"
    assert report(clip_comparison, path) == str(path)
    return path.read_text(encoding="utf-8")


def plotly_js_version() -> str:
    from plotly.offline import get_plotlyjs_version

    return get_plotlyjs_version()


def without_plotly_js(page: str) -> str:
    """The page with the one <script> that holds the plotly.js bundle removed."""
    start = page.index(f"* plotly.js v{plotly_js_version()}")
    opening = page.rindex("<script", 0, start)
    closing = page.index("</script>", start)
    return page[:opening] + page[closing + len("</script>"):]


def test_report_inlines_plotly_js_once_and_loads_nothing_from_a_network(comparison_html):
    assert comparison_html.startswith("<!DOCTYPE html>")
    assert comparison_html.count(f"* plotly.js v{plotly_js_version()}") == 1
    assert comparison_html.count("window.PlotlyConfig") == 1
    assert len(comparison_html) > 3_000_000 and len(without_plotly_js(comparison_html)) < 1_000_000
    assert comparison_html.count("Plotly.newPlot(") == 2  # timeline and summary
    assert EXTERNAL_RESOURCE.search(comparison_html) is None
    rest = without_plotly_js(comparison_html)
    assert re.search(r"https?://|@import|@font-face", rest) is None  # no CDN, font or link at all
    assert '"displaylogo":false' in rest.replace(" ", "")


def test_report_shows_speedup_metrics_and_differences(clip_comparison, comparison_html):
    assert f"{clip_comparison.speedup:.2f}x faster" in comparison_html or \
        f"{1 / clip_comparison.speedup:.2f}x slower" in comparison_html
    assert f"<th>speedup (before wall / after wall)</th><td>{clip_comparison.speedup:.2f}x</td>" in comparison_html
    assert f"{100 * clip_comparison.wer_between:.1f} %" in comparison_html
    assert f"<td>{clip_comparison.after.metrics['rtfx']:.2f}</td>" in comparison_html
    for difference in clip_comparison.differences:
        row = f"<tr><th>{difference['setting']}</th><td>{_text(difference['before'])}</td>" \
              f"<td>{_text(difference['after'])}</td></tr>"
        assert row in comparison_html
    assert "not only a batching effect" in comparison_html
    assert "<th>vad_filter</th>" in comparison_html and "n/a (no GPU)" in comparison_html
    assert "NVMLError_LibraryNotFound" in comparison_html or clip_comparison.before.gpu_unavailable_reason in comparison_html
    assert _text(clip_comparison.before.transcript.text) in comparison_html


def test_report_rows_come_from_the_metrics_registry(clip_comparison, comparison_html):
    from whisperkit.experiments.metrics import METRICS

    for m in METRICS:  # one row per registered metric, under its description, with its decimals
        if m.corpus_only:
            assert f"<th>{_escaped(m.description)}</th>" not in comparison_html  # not corpus runs
            continue
        assert f"<th>{_escaped(m.description)}</th>" in comparison_html
    wall = clip_comparison.before.metrics["wall_seconds"]
    assert f"<td>{wall:,.{METRICS[2].digits}f}</td>" in comparison_html and METRICS[2].key == "wall_seconds"


def test_report_escapes_transcripts_and_labels(clip_comparison, tmp_path):
    run = clip_comparison.after
    transcript = dataclasses.replace(run.transcript, segments=[wk.Segment(0.0, 1.0, "<b>bold</b> & <script>x</script>")])
    tricky = dataclasses.replace(run, transcript=transcript, config=run.config.replace(label="<i>odd label</i>"))
    page = (tmp_path / "r.html")
    report([tricky], page)
    text = page.read_text(encoding="utf-8")
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; &lt;script&gt;x&lt;/script&gt;" in text
    assert "<b>bold</b>" not in text and "<script>x</script>" not in text
    assert "<i>odd label</i>" not in without_plotly_js(text).split("<div")[0]  # title and header escaped
    assert "&lt;i&gt;odd label&lt;/i&gt;" in text
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]  # written atomically, no temporary left


def test_report_of_a_sweep(clip_sweep, tmp_path):
    path = report(clip_sweep, tmp_path / "sweep" / "report.html")
    text = open(path, encoding="utf-8").read()
    assert f'<p class="headline">{_escaped(clip_sweep.verdict[:1].upper() + clip_sweep.verdict[1:])}.</p>' in text
    assert "Best batch size" not in text  # the verdict names a batch size only where the runs separate it
    assert f'<tr class="best"><th>{clip_sweep.best}</th>' in text
    assert text.count(f"* plotly.js v{plotly_js_version()}") == 1
    assert text.count("Plotly.newPlot(") == 2  # sweep curve and timeline
    assert "all batch sizes measured" in text
    assert EXTERNAL_RESOURCE.search(text) is None


def test_report_of_a_list_of_runs_with_a_gpu(clip_comparison, tmp_path):
    runs = [with_gpu(clip_comparison.before), with_gpu(clip_comparison.after, seed=1)]
    text = open(report(runs, tmp_path / "runs.html"), encoding="utf-8").read()
    assert "NVIDIA L4, 24,576 MiB, driver 550.54.15" in text
    assert "n/a (no GPU)" not in text
    assert f"<td>{runs[1].metrics['mean_gpu_util_percent']:.1f}</td>" in text
    assert '<tr class="differs"><th>mode</th><td>sequential</td><td>batched</td></tr>' in text


def test_a_saved_comparison_reports_from_disk(clip_comparison, tmp_path):
    folder = wk.save(clip_comparison, tmp_path / "cmp")
    assert not (tmp_path / "cmp" / "report.html").exists()  # results hold no views; the caller writes HTML
    text = open(report(load_runs(folder), tmp_path / "cmp.html"), encoding="utf-8").read()
    assert "before" in text and "after" in text


@pytest.mark.skipif(shutil.which("chromium") is None, reason="headless chromium (Debian package chromium) not installed")
def test_report_renders_offline_in_a_browser(comparison_html, tmp_path):
    page = tmp_path / "report.html"
    page.write_text(comparison_html, encoding="utf-8")
    command = [
        "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--proxy-server=http://127.0.0.1:9",  # no network
        f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom", page.as_uri(),
    ]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120).stdout
    assert 'class="main-svg"' not in comparison_html  # so these come from plotly.js drawing
    assert dom.count('class="main-svg"') >= 4  # plotly draws two svg layers per figure; two figures
    assert re.search(r'class="annotation-text"[^>]*>(?:<tspan[^>]*>)?No GPU visible', dom)


def _escaped(text: str) -> str:
    """``text`` as the report's template escapes it (Jinja2's autoescaping: ' as &#39;)."""
    from markupsafe import escape

    return str(escape(text))


def _text(value) -> str:
    return _escaped("none" if value is None else str(value))
