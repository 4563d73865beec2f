"""The app's controls: model, device, compute type, mode, batch size, audio or a folder; what they ask for."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import ipywidgets

    from whisperkit.core.config import Config

from whisperkit.core.channels import CHANNEL_MODES, DEFAULT_CHANNELS

BUNDLED_CHOICE = "tiny.en (bundled)"
DEVICE_CHOICES = ("auto", "cpu", "cuda")
COMPUTE_TYPE_CHOICES = ("auto", "int8", "int8_float16", "float16", "float32")
MODE_CHOICES = ("batched", "sequential", "corpus")
DEFAULT_SAMPLE = "gettysburg"


class Controls:
    """The input widgets, their layout (``box``) and the :class:`~whisperkit.Config` they describe.

    ``model`` (Dropdown), ``model_path`` (Text, a local CTranslate2 folder that overrides
    ``model``), ``device``, ``compute_type``, ``mode``, ``channels`` (Dropdowns), ``batch_size`` (IntSlider
    1-64), ``batch_auto`` (Checkbox: batch size from device memory), ``audio`` (Dropdown of
    bundled samples), ``audio_path`` (Text; overrides ``audio``), ``upload`` (FileUpload; an
    uploaded file is saved to a temporary folder, removed with the app, and its path put in
    ``audio_path``); in corpus mode ``folder`` (Text: a folder of recordings, or ``@list.txt``;
    empty: the ten bundled clips) and ``pack`` (Checkbox: several short clips per window) take
    the place of the audio controls; and the ``transcribe_button``, ``compare_button`` (not in
    corpus mode: its two sides are single-file modes) and ``sweep_button``.
    """

    def __init__(self) -> None:
        import ipywidgets as w
        from faster_whisper.utils import available_models

        from whisperkit.core.samples import list_samples

        wide = {"description_width": "110px"}
        box = w.Layout(width="330px")
        models = [BUNDLED_CHOICE, *(name for name in available_models() if name != "tiny.en")]
        self.model = w.Dropdown(options=models, value=BUNDLED_CHOICE, description="Model", style=wide, layout=box)
        self.model_path = w.Text(placeholder="or a local CTranslate2 folder", description="Model folder",
                                 style=wide, layout=box)
        self.device = w.Dropdown(options=DEVICE_CHOICES, value="auto", description="Device", style=wide, layout=box)
        self.compute_type = w.Dropdown(options=COMPUTE_TYPE_CHOICES, value="auto", description="Compute type",
                                       style=wide, layout=box)
        self.mode = w.Dropdown(options=MODE_CHOICES, value="batched", description="Mode", style=wide, layout=box)
        self.channels = w.Dropdown(options=CHANNEL_MODES, value=DEFAULT_CHANNELS, description="Channels", style=wide,
                                   layout=box, tooltip="split: each channel of a call or interview as a speaker of "
                                                       "its own; mix: to mono; auto: split when the channels differ")
        self.batch_size = w.IntSlider(value=8, min=1, max=64, description="Batch size", style=wide,
                                      layout=w.Layout(width="300px"))
        self.batch_auto = w.Checkbox(value=False, description="auto", indent=False,
                                     tooltip="batch size from free device memory",
                                     layout=w.Layout(width="70px", margin="0 0 0 8px"))
        samples = list_samples()
        self.audio = w.Dropdown(options=samples, value=DEFAULT_SAMPLE if DEFAULT_SAMPLE in samples else samples[0],
                                description="Sample", style=wide, layout=box)
        self.audio_path = w.Text(placeholder="or a path to an audio/video file", description="Audio file",
                                 style=wide, layout=box)
        self.upload = w.FileUpload(accept="audio/*,video/*", multiple=False, description="Upload audio",
                                   layout=w.Layout(margin="2px 0 0 114px"))
        self.folder = w.Text(placeholder="empty: the ten bundled clips", description="Folder", style=wide,
                             layout=box, tooltip="corpus mode: a folder of recordings (searched recursively) "
                                                 "or @list.txt")
        self.pack = w.Checkbox(value=True, description="pack short clips into shared 30 s windows", indent=False,
                               layout=w.Layout(margin="2px 0 0 114px"))
        self.transcribe_button = w.Button(description="Transcribe", button_style="primary", icon="play")
        self.compare_button = w.Button(description="Compare before/after", icon="balance-scale",
                                       layout=w.Layout(width="190px"))
        self.sweep_button = w.Button(description="Sweep batch sizes", icon="line-chart",
                                     layout=w.Layout(width="170px"))
        self.buttons = (self.transcribe_button, self.compare_button, self.sweep_button)
        self._upload_dir = tempfile.mkdtemp(prefix="whisperkit-upload-")
        weakref.finalize(self, shutil.rmtree, self._upload_dir, True)
        self.upload.observe(self._on_upload, names="value")
        self.mode.observe(self._on_batch_controls, names="value")
        self.mode.observe(self._on_mode, names="value")
        self.batch_auto.observe(self._on_batch_controls, names="value")

        left = w.VBox([self.model, self.model_path, self.device, self.compute_type, self.channels],
                      layout=w.Layout(margin="0 24px 0 0"))
        self._file_inputs = w.VBox([self.audio, self.audio_path, self.upload])
        self._corpus_inputs = w.VBox([self.folder, self.pack], layout=w.Layout(display="none"))
        right = w.VBox([self.mode, w.HBox([self.batch_size, self.batch_auto]), self._file_inputs,
                        self._corpus_inputs])
        self.box: ipywidgets.Box = w.VBox([w.HBox([left, right]), w.HBox(list(self.buttons))])

    def config(self) -> Config:
        """The :class:`whisperkit.Config` the controls describe (raises ConfigError if invalid)."""
        from whisperkit.core.config import Config

        return Config(
            model=self.model_name(),
            device=self.device.value,
            compute_type=self.compute_type.value,
            mode=self.mode.value,
            batch_size="auto" if self.batch_auto.value else int(self.batch_size.value),
            pack=bool(self.pack.value),
            channels=self.channels.value,
        )

    def model_name(self) -> str | None:
        """The model folder if one is typed, else the dropdown's name (None: the bundled tiny.en)."""
        folder = self.model_path.value.strip()
        if folder:
            return os.path.expanduser(folder)
        return None if self.model.value == BUNDLED_CHOICE else self.model.value

    def audio_source(self) -> str | list[str]:
        """What to transcribe: the typed (or uploaded) path, else the chosen bundled sample; in
        corpus mode the typed folder, else the ten bundled clips."""
        from whisperkit.core.samples import sample_path, short_clips

        if self.mode.value == "corpus":
            folder = self.folder.value.strip()
            return os.path.expanduser(folder) if folder else short_clips()
        typed = self.audio_path.value.strip()
        return os.path.expanduser(typed) if typed else sample_path(self.audio.value)

    def enable(self, enabled: bool) -> None:
        """Enable or disable the three buttons (disabled while a job runs; compare also in corpus mode)."""
        for button in self.buttons:
            button.disabled = not enabled
        self.compare_button.disabled = not enabled or self.mode.value == "corpus"

    def _on_mode(self, change: dict[str, Any] | None = None) -> None:
        corpus = self.mode.value == "corpus"
        self._file_inputs.layout.display = "none" if corpus else None
        self._corpus_inputs.layout.display = None if corpus else "none"
        self.compare_button.disabled = corpus or self.transcribe_button.disabled

    def _on_upload(self, change: dict[str, Any]) -> None:
        """Save the uploaded file to the app's temporary folder and put its path in ``audio_path``."""
        files = change["new"]
        if not files:
            return
        upload = files[-1]
        path = os.path.join(self._upload_dir, _safe_file_name(upload["name"]))
        with open(path, "wb") as handle:
            handle.write(bytes(upload["content"]))
        self.audio_path.value = path

    def _on_batch_controls(self, change: dict[str, Any] | None = None) -> None:
        self.batch_size.disabled = self.mode.value == "sequential" or self.batch_auto.value
        self.batch_auto.disabled = self.mode.value == "sequential"


def _safe_file_name(name: str) -> str:
    base = os.path.basename(name or "upload")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", base) or "upload"
