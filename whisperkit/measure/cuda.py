"""What CUDA ctranslate2 can use here: device count and compute types (empty answers without a GPU).

:func:`is_out_of_memory` is the one place that reads ctranslate2's wording of a failed device
allocation (``CUDA failed with error out of memory``, ``cuBLAS failed with status
CUBLAS_STATUS_ALLOC_FAILED``, ``cuDNN failed with status CUDNN_STATUS_ALLOC_FAILED``).
"""

from __future__ import annotations

#: Lower-case pieces of ctranslate2's messages for a failed device allocation.
OUT_OF_MEMORY_MARKERS = ("out of memory", "cublas_status_alloc_failed", "cudnn_status_alloc_failed",
                         "cudaerrormemoryallocation", "cuda_error_out_of_memory")


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


def is_out_of_memory(error: BaseException) -> bool:
    """True for a CUDA, cuBLAS or cuDNN allocation failure, in ctranslate2's wording."""
    text = str(error).lower()
    return any(marker in text for marker in OUT_OF_MEMORY_MARKERS)
