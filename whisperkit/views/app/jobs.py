"""The app's jobs: transcribe, compare the seed's before and after, sweep batch sizes.

Each job takes the audio, the :class:`~whisperkit.Config` the controls describe and a :class:`Job`:
``watch`` (handed to the runners as ``on_start``, so the live chart follows each run's sampler),
``step``, called as ``step(done, total, label)`` whenever the job moves on, ``hold``, called with
a side's name when that side's run is over (the live chart keeps its lines beside the next run's),
and the controls' ``repeats`` and ``sweep_sizes``. It returns the result to show. The app runs a
job on a background thread (:class:`whisperkit.views.app.window.App`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from whisperkit.core.config import Config
    from whisperkit.experiments.results import Comparison, Run, Sweep
    from whisperkit.measure.sampler import Sampler

    Result = Run | Comparison | Sweep

Watch = Callable[["Sampler"], None]
Audio = str | list[str]  # a file; in corpus mode a folder, @list.txt, or a list of files
Step = Callable[[int, int, str], None]  # (steps done, steps in all, what runs now)

LABELS = {"transcribe": "Transcribing", "compare": "Comparing before and after", "sweep": "Sweeping batch sizes"}


@dataclass(frozen=True)
class Job:
    """What a job gets from the app besides the audio and the Config (see the module notes)."""

    watch: Watch
    step: Step
    hold: Callable[[str], None]
    repeats: int = 1
    sweep_sizes: Sequence[int] = (1, 2, 4, 8, 16)


def transcribe(audio: Audio, config: Config, job: Job) -> Run:
    """One monitored run of ``config`` (in corpus mode over the files of ``audio``)."""
    from whisperkit.experiments import runners

    return runners.run(audio, config, progress=False, on_start=job.watch)


def compare(audio: Audio, config: Config, job: Job) -> Comparison:
    """The seed's before and after, each with the controls' model, device and compute type, the
    after side at the controls' batch size, ``job.repeats`` alternating runs per side."""
    from whisperkit.errors import ConfigError
    from whisperkit.experiments import runners

    if config.mode == "corpus":
        raise ConfigError("compare runs the seed's two single-file modes; pick batched or sequential mode")
    chosen = {"model": config.model, "device": config.device, "compute_type": config.compute_type}
    before = runners.SEED_BEFORE.replace(**chosen)
    after = runners.SEED_AFTER.replace(**chosen, batch_size=config.batch_size)
    total = 2 * job.repeats
    job.step(0, total, f"Comparing: before (sequential, num_workers=24), run 1 of {job.repeats}")
    done = [0]

    def finished(side: str, run_: Run) -> None:
        done[0] += 1
        if side == "before":  # the after run is drawn beside the before run's lines
            job.hold(side)
        following = "after (batched)" if side == "before" else "before (sequential)"
        job.step(done[0], total, f"Comparing: {following}, run {done[0] // 2 + 1} of {job.repeats}")

    return runners.compare(cast(str, audio), before, after, repeats=job.repeats, progress=False, on_start=job.watch,
                           on_run=finished)


def sweep(audio: Audio, config: Config, job: Job) -> Sweep:
    """Batched (or corpus) runs at each of the controls' sweep sizes, ``job.repeats`` rounds."""
    from whisperkit.experiments import runners

    sizes = list(job.sweep_sizes)
    total = len(sizes) * job.repeats
    job.step(0, total, f"Sweeping batch sizes: {sizes[0]} (1 of {total})")
    done = [0]

    def finished(size: int, run_: Run) -> None:
        done[0] += 1
        following = f"{sizes[done[0] % len(sizes)]} ({done[0] + 1} of {total})" if done[0] < total else "done"
        job.step(done[0], total, f"Sweeping batch sizes: {following}")

    mode = "corpus" if config.mode == "corpus" else "batched"
    return runners.sweep(audio, sizes, config.replace(mode=mode), repeats=job.repeats, progress=False,
                         on_start=job.watch, on_run=finished)


JOBS: dict[str, Callable[[Audio, Config, Job], Result]] = {
    "transcribe": transcribe, "compare": compare, "sweep": sweep,
}
