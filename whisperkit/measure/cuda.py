"""What CUDA ctranslate2 can use here, and what its CUDA errors mean (empty answers without a GPU).

- :func:`cuda_device_count`, :func:`supported_compute_types`: ctranslate2's own answers. The NVIDIA
  driver alone makes the device count positive. ctranslate2 turns any failure of
  ``cudaGetDeviceCount`` into 0 devices (``src/cuda/utils.cc``), so :func:`cuda_unusable_reason`
  asks the driver itself (:func:`driver_status`: ``cuInit``, ``cuDriverGetVersion``,
  ``cuDeviceGetCount`` from ``libcuda.so.1``) and names the driver's error (999
  ``CUDA_ERROR_UNKNOWN``, a driver too old for CUDA 12, ...) rather than "no GPU".
- :func:`cuda_libraries`: whether the CUDA libraries the installed ctranslate2 loads at run time
  can be loaded. Its Linux and Windows wheels are built without cuDNN from 4.6.3 (``WITH_CUDNN=OFF``
  in ``python/tools/prepare_build_environment_*.sh``; 4.6.3 added a pure-CUDA Conv1D) and open
  ``libcublas.so.12`` lazily by name at the first matrix product (``src/cuda/cublas_stub.cc``);
  4.5 to 4.6.2 wheels also need cuDNN 9, whose sub-libraries (``libcudnn_ops``, ``_cnn``, ...)
  whisperkit does not load, hence ``ctranslate2>=4.7`` in ``pyproject.toml`` (4.6.3 is already
  cuDNN-free; 4.8.5, tested here, names ``libcublas.so.12`` and no cuDNN). The libraries named in ctranslate2's own shared
  library are the ones looked for. Where the system's library path lacks one, the
  ``nvidia-cublas-cu12`` wheel's ``site-packages/nvidia/*/lib`` folder is searched and the library
  found there is loaded now (``RTLD_GLOBAL``), so ctranslate2's later ``dlopen`` by name finds it:
  users of ``pip install 'whisperkit[gpu]'`` need no ``LD_LIBRARY_PATH``. This must happen before
  the first matrix product, also for a ``WhisperModel`` the user loaded
  (:func:`whisperkit.core.models.wrap_whisper_model`).
- :func:`is_out_of_memory`, :func:`is_cuda_error`, :func:`cuda_error_advice`: the one place that
  reads ctranslate2's error wording (``CUDA failed with error out of memory``, ``cuBLAS failed with
  status CUBLAS_STATUS_ALLOC_FAILED``, ``Library libcublas.so.12 is not found or cannot be
  loaded``).
"""

from __future__ import annotations

import ctypes
import functools
import glob
import importlib.util
import os
import re
import sys
from dataclasses import asdict, dataclass, field

from whisperkit.errors import first_line

#: What to run to get the CUDA 12 libraries as Python wheels.
GPU_EXTRA_HINT = "pip install 'whisperkit[gpu]'"
#: Libraries a ctranslate2 build may load at run time: what each is, and libraries to load before
#: it from the same wheel folder (cuBLAS needs cuBLASLt). The wheels from 4.6.3 name only cuBLAS;
#: cuDNN is for builds made with ``WITH_CUDNN=ON``.
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
                      "cuda driver", "nccl failed with error", "cuda_error_", "cudaerror",
                      "is not found or cannot be loaded", "cannot load symbol")


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
    """True for any error ctranslate2 reports from CUDA, cuBLAS, cuDNN or NCCL (allocation and
    a missing CUDA library included)."""
    text = str(error).lower()
    return is_out_of_memory(error) or any(marker in text for marker in CUDA_ERROR_MARKERS)


def cuda_unusable_reason() -> str | None:
    """Why ctranslate2 cannot run on a GPU here, in one line (None when it can)."""
    if cuda_device_count() == 0:
        return no_device_reason()
    return cuda_libraries().reason


def no_device_reason(nvml_gpus: int | None = None) -> str:
    """Why ctranslate2 sees no CUDA device, from the driver's own answer (:func:`driver_status`).

    ``nvml_gpus``: how many GPUs NVML lists (None: asked here). Without a driver and without GPUs
    in NVML it is the plain "no NVIDIA GPU or driver visible"; otherwise the driver's error.
    """
    if nvml_gpus is None:
        from whisperkit.measure.nvml import gpu_inventory

        nvml_gpus = len(gpu_inventory()[0])
    return driver_status().reason(nvml_gpus)


#: What to do about a ``cuInit`` error (CUresult codes of ``cuda.h``).
DRIVER_ERROR_ADVICE = {
    3: "the driver was not initialized",
    34: "libcuda.so.1 here is the CUDA toolkit's stub, not the driver's: put the driver's library first on the library path",
    46: "the GPUs are in exclusive-process mode and taken by another process (nvidia-smi -c shows the mode)",
    100: "no CUDA device is visible to this process: check CUDA_VISIBLE_DEVICES and, in a container, --gpus",
    101: "CUDA_VISIBLE_DEVICES names a device that does not exist",
    803: "the driver's library does not match its kernel module (a driver update without a reboot): reboot",
    804: "the CUDA forward-compatibility package does not support this GPU",
    999: ("the driver failed to start CUDA (often after a driver update or suspend without a reboot, or with "
          "/dev/nvidia-uvm missing in a container): reboot, or reload the nvidia_uvm kernel module"),
}
#: The oldest driver CUDA version ctranslate2's CUDA 12 wheels run on (12000: CUDA 12.0, driver R525).
MIN_DRIVER_CUDA = 12000
NO_GPU_REASON = ("ctranslate2 sees no CUDA device (no NVIDIA GPU or driver visible); "
                 f"on a GPU machine: install the NVIDIA driver, then {GPU_EXTRA_HINT}")


@dataclass(frozen=True)
class DriverStatus:
    """What the CUDA driver library (``libcuda.so.1``) says, read through ctypes.

    ``load_error`` is set when the library cannot be opened; ``init_code`` is ``cuInit(0)``'s
    CUresult (0: success) with ``init_name`` and ``init_text`` from ``cuGetErrorName`` and
    ``cuGetErrorString``; ``driver_cuda`` is ``cuDriverGetVersion`` (12040: CUDA 12.4) and
    ``device_count`` ``cuDeviceGetCount`` (None where not reached).
    """

    load_error: str | None = None
    init_code: int | None = None
    init_name: str | None = None
    init_text: str | None = None
    driver_cuda: int | None = None
    device_count: int | None = None

    def reason(self, nvml_gpus: int = 0) -> str:
        """One line: why ctranslate2 sees no device although the driver says this."""
        listed = f"NVML lists {nvml_gpus} GPU(s), but " if nvml_gpus else ""
        if self.load_error is not None:
            if not nvml_gpus:
                return NO_GPU_REASON
            return (f"{listed}the CUDA driver library cannot be loaded ({self.load_error}); in a container, start it "
                    "with the NVIDIA runtime (docker --gpus all), else reinstall the NVIDIA driver")
        if self.init_code:
            advice = DRIVER_ERROR_ADVICE.get(self.init_code, "see the driver's log (dmesg) and nvidia-smi")
            return (f"{listed}the CUDA driver fails to start: cuInit returned {self.init_name or 'error'} "
                    f"({self.init_code}: {self.init_text or 'no description'}); {advice}")
        if self.driver_cuda is not None and self.driver_cuda < MIN_DRIVER_CUDA:
            return (f"{listed}the NVIDIA driver supports CUDA {_version(self.driver_cuda)} only, and ctranslate2's "
                    "wheels need CUDA 12: update the driver to R525 or newer")
        if self.device_count == 0:
            return (f"{listed}the CUDA driver sees no device (CUDA_VISIBLE_DEVICES="
                    f"{os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')!r}); make a GPU visible to this process")
        return (f"{listed}ctranslate2 sees no CUDA device although the driver sees {self.device_count} "
                f"(CUDA {_version(self.driver_cuda)}); its CUDA runtime failed to start: reinstall ctranslate2, "
                "or run `whisperkit env` for details")

    def to_dict(self) -> dict:
        return asdict(self)


def driver_status() -> DriverStatus:
    """Ask ``libcuda.so.1`` directly: ``cuInit(0)``, then the driver's CUDA version and device count."""
    try:
        lib = _open_libcuda()
    except OSError as error:
        return DriverStatus(load_error=str(error).splitlines()[0] if str(error) else type(error).__name__)
    try:
        code = int(lib.cuInit(0))
        version, count = ctypes.c_int(0), ctypes.c_int(0)
        has_version = int(lib.cuDriverGetVersion(ctypes.byref(version))) == 0
        if code:
            return DriverStatus(init_code=code, init_name=_error_text(lib.cuGetErrorName, code),
                                init_text=_error_text(lib.cuGetErrorString, code),
                                driver_cuda=version.value if has_version else None)
        has_count = int(lib.cuDeviceGetCount(ctypes.byref(count))) == 0
        return DriverStatus(init_code=0, driver_cuda=version.value if has_version else None,
                            device_count=count.value if has_count else None)
    except (AttributeError, OSError, TypeError, ValueError) as error:  # a library without these symbols
        return DriverStatus(load_error=f"libcuda.so.1 does not answer as the CUDA driver ({first_line(error)})")


def _open_libcuda():
    """The CUDA driver library (a seam for tests: they give a fake with the same functions)."""
    return ctypes.CDLL("nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1")


def _error_text(function, code: int) -> str | None:
    """``cuGetErrorName``/``cuGetErrorString`` of ``code`` (None where the driver gives none)."""
    text = ctypes.c_char_p()
    try:
        if int(function(code, ctypes.byref(text))) != 0 or not text.value:
            return None
    except (ctypes.ArgumentError, TypeError):
        return None
    return text.value.decode("utf-8", errors="replace")


def _version(code: int | None) -> str:
    return "unknown" if code is None else f"{code // 1000}.{code % 1000 // 10}"


_MISSING_LIBRARY = re.compile(r"Library (\S+) is not found or cannot be loaded")
_MISSING_SYMBOL = re.compile(r"Cannot load symbol (\S+) from library (\S+)")


def cuda_error_advice(error: BaseException) -> str | None:
    """What to do about a ctranslate2 error that says a CUDA library is missing or wrong, in one
    line (None for other errors). ctranslate2 opens cuBLAS at its first matrix product, so this
    error comes at the first transcription, not when the model is loaded."""
    text = str(error)
    missing = _MISSING_LIBRARY.search(text)
    if missing:
        name = missing.group(1)
        what = CUDA_LIBRARIES.get(name, ("a CUDA library",))[0]
        return (f"ctranslate2 cannot load {name} ({what}), which it opens at its first matrix product; "
                f"{GPU_EXTRA_HINT}, or use device cpu")
    wrong = _MISSING_SYMBOL.search(text)
    if wrong:
        return (f"the {wrong.group(2)} found here lacks {wrong.group(1)} (another CUDA version's library under "
                f"that name?); {GPU_EXTRA_HINT}, or use device cpu")
    return None


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
