"""Choosing a batch size: from a memory model on a GPU, from measured throughput on a CPU.

The memory model (an estimate, documented so it can be checked and improved)::

    needed MiB = weights + runtime overhead + batch_size x per-item memory
    weights          = parameters x bytes per weight (float32 4, float16 2, int8* about 1.1)
    runtime overhead = 1200 MiB (CUDA context, cuBLAS/cuDNN workspaces, allocator cache)
    per item         = activation bytes x d_model
                       x (1500 x 8                      encoder output and one layer's working set
                          + 2 x decoder layers x 1500   cross-attention keys and values
                          + beam x 2 x decoder layers x 224)   self-attention cache, 224 tokens
                       x 0.317                          calibration, see below
                     + encoder heads x 1500 x 1500 x activation bytes   one layer's attention scores

Assumptions, so the model can be checked:

- CTranslate2 without flash attention (its default) materializes each encoder layer's
  attention scores, heads x 1500 x 1500 per item, one layer at a time: about 86 MiB per item
  for large-v3, turbo and distil-large-v3 (20 heads) in float16. This term does not shrink with
  fewer decoder layers, so it dominates for turbo and distil models.
- Every batch item is a full 30 s window (1500 encoder positions); the decoder's
  self-attention cache holds 224 tokens per beam (the maximum is 448).
- Activations are float16 on the GPU except for the float32 and int8 (float32 activation)
  compute types; int8 weights take about 1.1 bytes per parameter (some layers stay float).
- The calibration factor makes large-v2 in float16 with beam 5 cost 225 MiB per batch item
  (attention scores included), which is what faster-whisper's own benchmark reports (4525 MB
  sequential, 6090 MB at batch size 8, RTX 3070 Ti).
- The free memory is the model's own device's (a MIG instance's where there is one), read
  once before the run; other processes that allocate meanwhile are not foreseen.

A batch size is then the largest power of two whose estimate fits in the free device memory
less 10 % headroom, between 1 and 64. It is monotone: more memory never gives a smaller batch,
a larger model never a larger one. It is an estimate: :func:`whisperkit.autotune` measures,
and a batch that does not fit is halved at run time (:func:`halving_on_out_of_memory`).

On a CPU memory is rarely the limit; throughput is. Measured on a 2-core machine (faster-whisper
1.2.1, ctranslate2 4.8.5, tiny.en int8, beam 5, 258 s of speech): sequential 16.2 s, batched at
batch size 8 7.6 s, at 16 7.3 s (4 % faster than 8). Batched mode also changes the decoding
settings and the segmentation, so sequential against batched is not batching alone
(``compare(matched=True)`` isolates it). Rerun on any long file with
``whisperkit sweep FILE --device cpu --batch-sizes 8,16``. Hence the CPU recommendation, 8;
:func:`autotune` measures instead of estimating.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from whisperkit.checks import check_number, check_whole
from whisperkit.errors import ConfigError, DeviceError, ModelError, OutOfMemoryError, first_line
from whisperkit.measure.cuda import is_cuda_error, is_out_of_memory

T = TypeVar("T")

if TYPE_CHECKING:
    from whisperkit.core.models import Model

MAX_RECOMMENDED_BATCH_SIZE = 64  # the largest batch size recommended (Config accepts up to config.MAX_BATCH_SIZE)
CPU_BATCH_SIZE = 8
HEADROOM = 0.10  # share of free memory left unused
RUNTIME_OVERHEAD_MB = 1200.0
CALIBRATION = 0.317
ENCODER_FRAMES = 1500  # encoder positions for a 30 s window
TYPICAL_TOKENS = 224  # self-attention cache length assumed per beam (max 448)


@dataclass(frozen=True)
class Architecture:
    """What decides a Whisper model's memory: parameters (millions) and shapes."""

    parameters_m: float
    d_model: int
    decoder_layers: int
    encoder_heads: int


# Published sizes of the Whisper family (OpenAI's model card, distil-whisper's); turbo and the
# distil models keep their teacher's encoder.
ARCHITECTURES = {
    "tiny": Architecture(39, 384, 4, 6),
    "base": Architecture(74, 512, 6, 8),
    "small": Architecture(244, 768, 12, 12),
    "medium": Architecture(769, 1024, 24, 16),
    "large": Architecture(1550, 1280, 32, 20),
    "turbo": Architecture(809, 1280, 4, 20),
    "distil-large": Architecture(756, 1280, 2, 20),
    "distil-medium": Architecture(394, 1024, 2, 16),
    "distil-small": Architecture(166, 768, 2, 12),
}

WEIGHT_BYTES = {"float32": 4.0, "float16": 2.0, "bfloat16": 2.0, "int16": 2.0}
COMPUTE_TYPES = ("float32", "float16", "bfloat16", "int16", "int8", "int8_float32", "int8_float16",
                 "int8_bfloat16")
ACTIVATION_BYTES = {"float32": 4.0, "int8": 4.0, "int8_float32": 4.0, "int16": 4.0}


def architecture(model: str) -> Architecture:
    """The architecture for a model name or a folder whose name contains one (``faster-whisper-small``).

    A name that matches nothing is treated as large, the safe side: it gives the smallest batch.
    """
    text = os.path.basename(os.path.normpath(model)).lower() if model else "tiny"
    if "turbo" in text:
        return ARCHITECTURES["turbo"]
    for prefix in ("distil-large", "distil-medium", "distil-small"):
        if prefix in text:
            return ARCHITECTURES[prefix]
    for size in ("tiny", "base", "small", "medium", "large"):
        if size in text:
            return ARCHITECTURES[size]
    return ARCHITECTURES["large"]


def names_an_architecture(model: str) -> bool:
    """True when a model name (or a folder's name) contains a known size, so estimates apply to it."""
    text = os.path.basename(os.path.normpath(model)).lower() if model else ""
    return any(size in text for size in ARCHITECTURES)


def weights_mb(model: str, compute_type: str) -> float:
    """Estimated memory of the weights in MiB."""
    bytes_per_weight = WEIGHT_BYTES.get(compute_type, 1.1)  # the int8 kinds keep some float layers
    return architecture(model).parameters_m * 1e6 * bytes_per_weight / 2**20


def per_item_mb(model: str, compute_type: str, beam_size: int = 5) -> float:
    """Estimated memory of one more batch item (a 30 s chunk) in MiB.

    >>> round(attention_scores_mb("large-v3", "float16"), 1)   # of the 225 MiB for large-v3
    85.8
    """
    arch = architecture(model)
    activation_bytes = ACTIVATION_BYTES.get(compute_type, 2.0)
    positions = (
        ENCODER_FRAMES * 8
        + 2 * arch.decoder_layers * ENCODER_FRAMES
        + beam_size * 2 * arch.decoder_layers * TYPICAL_TOKENS
    )
    return activation_bytes * arch.d_model * positions * CALIBRATION / 2**20 + attention_scores_mb(model, compute_type)


def attention_scores_mb(model: str, compute_type: str) -> float:
    """One encoder layer's self-attention scores for one item: heads x 1500 x 1500 values, MiB."""
    return architecture(model).encoder_heads * ENCODER_FRAMES**2 * ACTIVATION_BYTES.get(compute_type, 2.0) / 2**20


def recommend_batch_size(
    model: str = "tiny.en",
    compute_type: str = "float16",
    memory_gb: float | None = None,
    *,
    device: str = "cuda",
    beam_size: int = 5,
    weights_loaded: bool = False,
) -> int:
    """A batch size for ``model`` from the memory model above.

    Args:
      model: a model size or a folder name containing one.
      compute_type: the CTranslate2 compute type the model runs in.
      memory_gb: free device memory in GiB; None asks NVML for the free memory of CUDA device 0
        (the NVML device it is, after ``CUDA_VISIBLE_DEVICES``; a MIG instance's own memory), and
        where NVML cannot tell, gives the CPU choice, 8.
      device: ``"cuda"`` uses the memory model; ``"cpu"`` returns the measured CPU optimum (8).
      weights_loaded: the model is already on the device, so the free memory no longer
        includes its weights and they are not subtracted again.

    >>> recommend_batch_size("large-v3", "float16", memory_gb=8.0)
    8
    >>> recommend_batch_size("large-v3", "float16", memory_gb=16.0)
    32
    """
    _check_model_name(model)
    if not isinstance(compute_type, str) or compute_type not in COMPUTE_TYPES:
        raise ConfigError(f"unknown compute type {compute_type!r}; one of: {', '.join(COMPUTE_TYPES)}")
    if device not in ("cuda", "cpu"):
        raise ConfigError(f"device must be cuda or cpu, got {device!r}")
    from whisperkit.core.config import MAX_BEAM_SIZE

    check_whole(beam_size, "beam_size", 1, MAX_BEAM_SIZE)
    if memory_gb is not None:
        check_number(memory_gb, "memory_gb", 0.0, above=True)
    return _recommend(model, compute_type, memory_gb, device, beam_size, weights_loaded)


def _recommend(model: str, compute_type: str, memory_gb, device: str, beam_size: int, weights_loaded: bool) -> int:
    if device == "cpu":
        return CPU_BATCH_SIZE
    if memory_gb is None:
        memory_gb = free_gpu_memory_gb()
        if memory_gb is None:
            return CPU_BATCH_SIZE
    if not memory_gb > 0:
        raise ConfigError(f"memory_gb must be above 0, got {memory_gb!r}")
    weights = 0.0 if weights_loaded else weights_mb(model, compute_type)
    usable_mb = memory_gb * 1024 * (1 - HEADROOM) - weights - RUNTIME_OVERHEAD_MB
    fits = math.floor(usable_mb / per_item_mb(model, compute_type, beam_size))
    if fits < 1:
        return 1
    return min(MAX_RECOMMENDED_BATCH_SIZE, 2 ** int(math.log2(fits)))


def _check_model_name(model: object) -> None:
    """A plain name must contain a known size; a folder or an "owner/name" id may be anything."""
    if not isinstance(model, (str, os.PathLike)):
        raise ModelError(f"model must be a name or a folder, got {type(model).__name__}")
    text = os.fspath(model)
    if "/" in text or os.sep in text or os.path.isdir(text):
        return
    if not names_an_architecture(text):
        raise ModelError(
            f"unknown model {text!r}; name one of the sizes {', '.join(ARCHITECTURES)} "
            "(with suffixes such as large-v3 or small.en), or a model folder"
        )


def recommend_for_model(model: Model, beam_size: int = 5) -> int:
    """``batch_size="auto"`` for a loaded :class:`whisperkit.Model` (its weights already in memory),
    from the free memory of the device that runs it (``model.device_index``)."""
    memory_gb = free_gpu_memory_gb(model.device_index) if model.device == "cuda" else None
    if memory_gb is None:
        return CPU_BATCH_SIZE
    return _recommend(model.name, model.compute_type, memory_gb, model.device, beam_size, weights_loaded=True)


def free_gpu_memory_gb(cuda_index: int = 0) -> float | None:
    """Free memory in GiB of CUDA device ``cuda_index`` (CUDA's numbering) from NVML, or None where
    NVML cannot tell. On a MIG instance it is the instance's memory, not the whole card's."""
    from whisperkit.measure.devices import model_gpu

    free_mb = model_gpu(cuda_index).memory_free_mb
    return free_mb / 1024 if free_mb == free_mb else None  # NaN: unknown


def halving_on_out_of_memory(
    attempt: Callable[[int | None], T],
    batch_size: int | None,
    *,
    device: str,
    retries: list[dict] | None = None,
    on_retry: Callable[[int], None] | None = None,
) -> T:
    """``attempt(batch_size)``, halving the batch size (down to 1) each time the device runs out of memory.

    Every batched path goes through here. Out of memory is any CUDA, cuBLAS or cuDNN allocation
    failure (:func:`whisperkit.measure.cuda.is_out_of_memory`); each one appends
    ``{"batch_size": failed size, "error": first line}`` to ``retries`` and calls
    ``on_retry(new size)`` before the next attempt. ``batch_size=None`` (a sequential run) is
    tried once. Out of memory at batch size 1 (or sequential) is a one-line :class:`OutOfMemoryError`,
    any other CUDA error a one-line :class:`DeviceError`; other errors pass through unchanged.
    """
    while True:
        try:
            return attempt(batch_size)
        except RuntimeError as error:
            if not is_cuda_error(error):
                raise
            if not is_out_of_memory(error):
                raise DeviceError(f"{device} failed while transcribing ({first_line(error)}); "
                                  "check the GPU with `whisperkit env`, or use device cpu") from None
            if batch_size is None or batch_size <= 1:
                where = "sequentially" if batch_size is None else "even at batch size 1"
                raise OutOfMemoryError(f"out of {device} memory {where} ({first_line(error)}); "
                                  "use a smaller model or compute type") from None
            if retries is not None:
                retries.append({"batch_size": batch_size, "error": first_line(error)})
            batch_size = max(1, batch_size // 2)
            if on_retry is not None:
                on_retry(batch_size)
