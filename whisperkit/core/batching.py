"""Choosing a batch size: from a memory model on a GPU, from measured throughput on a CPU.

The memory model (an estimate, documented so it can be checked and improved)::

    needed MiB = weights + runtime overhead + batch_size x per-item memory
    weights          = parameters x bytes per weight (float32 4, float16 2, int8* about 1.1)
    runtime overhead = 1200 MiB (CUDA context, cuBLAS/cuDNN workspaces, allocator cache)
    per item         = activation bytes x d_model
                       x (1500 x 8                      encoder output and one layer's working set
                          + 2 x decoder layers x 1500   cross-attention keys and values
                          + beam x 2 x decoder layers x 224)   self-attention cache, 224 tokens
                       x 0.513                          calibration, see below

The calibration factor makes large-v2 in float16 with beam 5 cost 225 MiB per batch item,
which is what faster-whisper's own benchmark reports (4525 MB sequential, 6090 MB at batch
size 8, RTX 3070 Ti). A batch size is then the largest power of two whose estimate fits in
the free device memory less 10 % headroom, between 1 and 64. It is monotone: more memory
never gives a smaller batch, a larger model never a larger one.

On a CPU memory is rarely the limit; throughput is. Measured on 2 cores (tiny.en int8,
DESIGN.md): batch 8 runs 2.1x faster than sequential and batch 16 only 4 % faster than 8, so the
CPU recommendation is 8. :func:`autotune` measures instead of estimating.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from whisperkit.errors import ConfigError

if TYPE_CHECKING:
    from whisperkit.core.models import Model

MAX_BATCH_SIZE = 64
CPU_BATCH_SIZE = 8
HEADROOM = 0.10  # share of free memory left unused
RUNTIME_OVERHEAD_MB = 1200.0
CALIBRATION = 0.513
ENCODER_FRAMES = 1500  # encoder positions for a 30 s window
TYPICAL_TOKENS = 224  # self-attention cache length assumed per beam (max 448)


@dataclass(frozen=True)
class Architecture:
    """What decides a Whisper model's memory: parameters (millions) and shapes."""

    parameters_m: float
    d_model: int
    decoder_layers: int


# Published sizes of the Whisper family (OpenAI's model card, distil-whisper's).
ARCHITECTURES = {
    "tiny": Architecture(39, 384, 4),
    "base": Architecture(74, 512, 6),
    "small": Architecture(244, 768, 12),
    "medium": Architecture(769, 1024, 24),
    "large": Architecture(1550, 1280, 32),
    "turbo": Architecture(809, 1280, 4),
    "distil-large": Architecture(756, 1280, 2),
    "distil-medium": Architecture(394, 1024, 2),
    "distil-small": Architecture(166, 768, 2),
}

WEIGHT_BYTES = {"float32": 4.0, "float16": 2.0, "bfloat16": 2.0, "int16": 2.0}
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


def weights_mb(model: str, compute_type: str) -> float:
    """Estimated memory of the weights in MiB."""
    bytes_per_weight = WEIGHT_BYTES.get(compute_type, 1.1)  # the int8 kinds keep some float layers
    return architecture(model).parameters_m * 1e6 * bytes_per_weight / 2**20


def per_item_mb(model: str, compute_type: str, beam_size: int = 5) -> float:
    """Estimated memory of one more batch item (a 30 s chunk) in MiB."""
    arch = architecture(model)
    activation_bytes = ACTIVATION_BYTES.get(compute_type, 2.0)
    positions = (
        ENCODER_FRAMES * 8
        + 2 * arch.decoder_layers * ENCODER_FRAMES
        + beam_size * 2 * arch.decoder_layers * TYPICAL_TOKENS
    )
    return activation_bytes * arch.d_model * positions * CALIBRATION / 2**20


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
      memory_gb: free device memory in GiB; None asks NVML for GPU 0's free memory (and where
        NVML cannot tell, the CPU choice, 8).
      device: ``"cuda"`` uses the memory model; ``"cpu"`` returns the measured CPU optimum (8).
      weights_loaded: the model is already on the device, so the free memory no longer
        includes its weights and they are not subtracted again.

    >>> recommend_batch_size("large-v3", "float16", memory_gb=8.0)
    8
    >>> recommend_batch_size("large-v3", "float16", memory_gb=16.0)
    32
    """
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
    return min(MAX_BATCH_SIZE, 2 ** int(math.log2(fits)))


def recommend_for_model(model: Model, beam_size: int = 5) -> int:
    """``batch_size="auto"`` for a loaded :class:`whisperkit.Model` (its weights already in memory)."""
    return recommend_batch_size(model.name, model.compute_type, device=model.device, beam_size=beam_size,
                                weights_loaded=True)


def free_gpu_memory_gb(index: int = 0) -> float | None:
    """Free memory of GPU ``index`` in GiB from NVML, or None where NVML cannot tell."""
    from whisperkit.measure.nvml import gpu_inventory

    gpus, _ = gpu_inventory()
    for gpu in gpus:
        if gpu["index"] == index and gpu["memory_free_mb"] == gpu["memory_free_mb"]:  # not NaN
            return gpu["memory_free_mb"] / 1024
    return None
