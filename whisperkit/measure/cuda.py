"""What CUDA ctranslate2 can use here: device count and compute types (empty answers without a GPU)."""

from __future__ import annotations


def cuda_device_count() -> int:
    """CUDA devices ctranslate2 can use (0 without GPU or driver)."""
    import ctranslate2

    try:
        return ctranslate2.get_cuda_device_count()
    except RuntimeError:
        return 0


def supported_compute_types(device: str) -> set[str]:
    """Compute types ctranslate2 supports on ``device`` (empty where the device is unusable)."""
    import ctranslate2

    try:
        return set(ctranslate2.get_supported_compute_types(device))
    except (RuntimeError, ValueError):
        return set()
