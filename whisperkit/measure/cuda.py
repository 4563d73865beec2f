"""What CUDA ctranslate2 can use here, and what its CUDA errors mean (empty answers without a GPU).

- :func:`cuda_device_count`, :func:`supported_compute_types`: ctranslate2's own answers. The NVIDIA
  driver alone makes the device count positive.
- :func:`cuda_libraries`: whether the CUDA libraries the installed ctranslate2 loads at run time
  (ctranslate2 4.x: ``libcublas.so.12``; builds that use cuDNN also ``libcudnn.so.9``) can be
  loaded. Where the system's library path lacks them, the ``nvidia-cublas-cu12`` and
  ``nvidia-cudnn-cu12`` wheels' ``site-packages/nvidia/*/lib`` folders are searched and the libraries
  found there are loaded now (``RTLD_GLOBAL``), so ctranslate2's later ``dlopen`` finds them by
  name: users of ``pip install 'whisperkit[gpu]'`` need no ``LD_LIBRARY_PATH``.
- :func:`is_out_of_memory`, :func:`is_cuda_error`: the one place that reads ctranslate2's error
  wording (``CUDA failed with error out of memory``, ``cuBLAS failed with status
  CUBLAS_STATUS_ALLOC_FAILED``, ``cuDNN failed with status CUDNN_STATUS_ALLOC_FAILED``).
"""

from __future__ import annotations

import ctypes
import functools
import glob
import importlib.util
import os
import re
import sys
from dataclasses import dataclass, field

#: What to run to get the CUDA 12 libraries as Python wheels.
GPU_EXTRA_HINT = "pip install 'whisperkit[gpu]'"
#: Libraries ctranslate2 may load at run time: what each is, and libraries to load before it from
#: the same wheel folder (cuBLAS needs cuBLASLt).
CUDA_LIBRARIES = {
    "libcublas.so.12": ("CUDA 12 cuBLAS", ("libcublasLt.so.12",)),
    "libcudnn.so.9": ("cuDNN 9", ()),
}
#: Used when ctranslate2's shared library cannot be read: what every ctranslate2 4.x wheel loads.
DEFAULT_NEEDED = ("libcublas.so.12",)
_LIBRARY_NAME = re.compile(rb"lib(?:cublas|cudnn)\.so\.\d+")

#: Lower-case pieces of ctranslate2's messages for a failed device allocation.
OUT_OF_MEMORY_MARKERS = ("out of memory", "cublas_status_alloc_failed", "cudnn_status_alloc_failed",
                         "cudaerrormemoryallocation", "cuda_error_out_of_memory")
#: Pieces of ctranslate2's messages for any other CUDA, cuBLAS, cuDNN or NCCL failure.
CUDA_ERROR_MARKERS = ("cuda failed with error", "cublas failed with status", "cudnn failed with status",
                      "cuda driver", "nccl failed with error", "cuda_error_", "cudaerror")


def cuda_device_count() -> int:
    """CUDA devices ctranslate2 can use (0 without GPU or driver)."""
    import ctranslate2

    try:
        return ctranslate2.get_cuda_device_count()
    except RuntimeError:
        return 0


def supported_compute_types(device: str, device_index: int = 0) -> set[str]:
    """Compute types ctranslate2 supports on ``device`` (empty where the device is unusable)."""
    import ctranslate2

    try:
        return set(ctranslate2.get_supported_compute_types(device, device_index))
    except (RuntimeError, ValueError):
        return set()


def is_out_of_memory(error: BaseException) -> bool:
    """True for a CUDA, cuBLAS or cuDNN allocation failure, in ctranslate2's wording."""
    text = str(error).lower()
    return any(marker in text for marker in OUT_OF_MEMORY_MARKERS)


def is_cuda_error(error: BaseException) -> bool:
    """True for any error ctranslate2 reports from CUDA, cuBLAS, cuDNN or NCCL (allocation included)."""
    text = str(error).lower()
    return is_out_of_memory(error) or any(marker in text for marker in CUDA_ERROR_MARKERS)


def cuda_unusable_reason() -> str | None:
    """Why ctranslate2 cannot run on a GPU here, in one line (None when it can)."""
    if cuda_device_count() == 0:
        return ("ctranslate2 sees no CUDA device (no NVIDIA GPU or driver visible); "
                f"on a GPU machine: install the NVIDIA driver, then {GPU_EXTRA_HINT}")
    return cuda_libraries().reason


@dataclass(frozen=True)
class CudaLibraries:
    """Which run-time CUDA libraries the installed ctranslate2 needs, and where each was found.

    ``found`` maps a library to the file it was loaded from ("system library path" when the
    dynamic loader found it by name); ``missing`` lists the ones that could not be loaded, with
    the loader's message in ``errors``.
    """

    needed: tuple[str, ...]
    found: dict[str, str] = field(default_factory=dict)
    missing: tuple[str, ...] = ()
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.missing

    @property
    def reason(self) -> str | None:
        """One line naming what is missing and how to get it; None when nothing is."""
        if self.ok:
            return None
        names = ", ".join(f"{name} ({CUDA_LIBRARIES.get(name, ('CUDA library',))[0]})" for name in self.missing)
        return f"ctranslate2 cannot load {names}; {GPU_EXTRA_HINT}"

    def to_dict(self) -> dict:
        return {"needed": list(self.needed), "found": dict(self.found), "missing": list(self.missing),
                "errors": dict(self.errors)}


@functools.lru_cache(maxsize=1)
def cuda_libraries() -> CudaLibraries:
    """Load (once per process) the CUDA libraries ctranslate2 needs; see the module docstring."""
    needed = needed_libraries()
    found: dict[str, str] = {}
    errors: dict[str, str] = {}
    for name in needed:
        where, error = _load_library(name)
        if where is None:
            errors[name] = error
        else:
            found[name] = where
    missing = tuple(name for name in needed if name not in found)
    return CudaLibraries(needed, found, missing, errors)


def needed_libraries() -> tuple[str, ...]:
    """The cuBLAS and cuDNN libraries the installed ctranslate2 names (it loads them at run time)."""
    names: set[str] = set()
    for path in _ctranslate2_libraries():
        try:
            with open(path, "rb") as library:
                names.update(match.decode() for match in _LIBRARY_NAME.findall(library.read()))
        except OSError:
            continue
    return tuple(sorted(names)) or DEFAULT_NEEDED


def _ctranslate2_libraries() -> list[str]:
    spec = importlib.util.find_spec("ctranslate2")
    if spec is None or spec.origin is None:
        return []
    package = os.path.dirname(spec.origin)
    return sorted(glob.glob(os.path.join(package, "libctranslate2*.so*"))
                  + glob.glob(os.path.join(package + ".libs", "libctranslate2*.so*")))


def wheel_library_folders() -> list[str]:
    """``nvidia/*/lib`` folders of the NVIDIA library wheels on ``sys.path``."""
    folders: list[str] = []
    for entry in sys.path:
        for folder in sorted(glob.glob(os.path.join(entry or ".", "nvidia", "*", "lib"))):
            if folder not in folders:
                folders.append(folder)
    return folders


def _load_library(name: str) -> tuple[str | None, str]:
    """``(where it was loaded from, "")``, or ``(None, the loader's message)``."""
    try:
        _dlopen(name)
        return "system library path", ""
    except OSError as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
    _, before = CUDA_LIBRARIES.get(name, ("", ()))
    for folder in wheel_library_folders():
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            continue
        try:
            for dependency in before:
                if os.path.exists(os.path.join(folder, dependency)):
                    _dlopen(os.path.join(folder, dependency))
            _dlopen(path)
            return path, ""
        except OSError as error:
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
    return None, message


def _dlopen(name_or_path: str) -> None:
    ctypes.CDLL(name_or_path, mode=ctypes.RTLD_GLOBAL)
