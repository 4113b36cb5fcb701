"""ASE calculators by name, loaded once per worker thread/process, with a stable label.

Names understood by :func:`get_calculator`:

========================  ==================================================================
``"emt"``                 ASE's EMT (Al, Cu, Ag, Au, Ni, Pd, Pt; H, C, N, O only for tests).
                          A toy model: good for fast tests, not for physics.
``"chgnet"``              CHGNet (pretrained 0.3.0 model), the optional ``teacher``
                          extra (``pip install ase-cartnet[teacher]``). Its weights ship
                          inside the ``chgnet`` wheel; nothing is downloaded.
``"sevennet"``            SevenNet-0 (11Jul2024, trained on MPtrj), ``teacher`` extra; its
                          weights ship inside the ``sevenn`` wheel.
``"sevennet-l3i5"``       SevenNet-l3i5 (l_max 3, 5 interaction layers, MPtrj), same wheel.
``"sevennet-mf-mpa"``     SevenNet-MF-0's MPtrj+sAlex fidelity (``modal="mpa"``), same wheel.
``"package.module:name"`` ``name()`` from an importable module, called without arguments;
                          it must return an ASE calculator.
========================  ==================================================================

Loaded models are cached per thread and device (so a process or dask worker loads CHGNet once,
and two threads never share one calculator's mutable state). ``device`` ("cpu", "cuda",
"cuda:1") places the ML potentials; EMT and custom factories ignore it.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import Any

from ase.calculators.calculator import BaseCalculator

from ase_cartnet.errors import InputError

_LOCAL = threading.local()
_LOAD_COUNT = 0  # models constructed in this process (tests check "one load per worker")
_LOAD_LOCK = threading.Lock()
_CONFIGURED = False  # configure_worker ran in this process


def _emt(device: str = "cpu") -> BaseCalculator:
    from ase.calculators.emt import EMT

    return EMT()


def _missing_teacher(name: str, package: str, exc: ImportError) -> InputError:
    return InputError(
        f"calculator {name!r} needs the optional teacher extra: "
        f"pip install 'ase-cartnet[teacher]' (or pip install {package}) ({exc})"
    )


def _chgnet(device: str = "cpu") -> BaseCalculator:
    try:
        from chgnet.model import CHGNet

        from phonon_ref.chgnet_teacher import CHGNetTeacher
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise _missing_teacher("chgnet", "chgnet", exc) from exc
    model = CHGNet.load(use_device=device, verbose=False)
    return CHGNetTeacher(model=model, use_device=device, on_isolated_atoms="ignore")


_SEVENNET_MODELS = {
    "sevennet": ("7net-0", None),
    "sevennet-l3i5": ("7net-l3i5", None),
    "sevennet-mf-mpa": ("7net-mf-0", "mpa"),
}


def _sevennet(name: str):
    model, modal = _SEVENNET_MODELS[name]

    def factory(device: str = "cpu") -> BaseCalculator:
        try:
            from sevenn.calculator import SevenNetCalculator
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise _missing_teacher(name, "sevenn", exc) from exc
        with warnings.catch_warnings():  # e3nn's and torch's deprecation chatter at load
            warnings.simplefilter("ignore")
            return SevenNetCalculator(model=model, modal=modal, device=device)

    return factory


_FACTORIES = {
    "emt": _emt,
    "chgnet": _chgnet,
    **{name: _sevennet(name) for name in _SEVENNET_MODELS},
}


def _factory(spec: str):
    key = spec.strip().lower()
    if key in _FACTORIES:
        return _FACTORIES[key]
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise InputError(f"calculator {spec!r}: cannot import module {module_name!r}") from exc
        factory = getattr(module, attr, None)
        if not callable(factory):
            raise InputError(f"calculator {spec!r}: {module_name} has no callable {attr!r}")
        return factory
    raise InputError(
        f"unknown calculator {spec!r}; use one of {', '.join(map(repr, _FACTORIES))} "
        "or 'package.module:factory'"
    )


def get_calculator(
    spec: str | BaseCalculator, *, cached: bool = True, device: str = "cpu"
) -> BaseCalculator:
    """An ASE calculator for ``spec`` (a name, see the module docstring, or a calculator).

    A calculator object is returned as it is. A name is resolved once per thread and device and
    reused (``cached=False`` builds a fresh one); ``device`` places the ML potentials.
    """
    global _LOAD_COUNT
    if isinstance(spec, BaseCalculator):
        return spec
    if not isinstance(spec, str):
        raise InputError(f"calculator must be a name or an ASE calculator, got {type(spec)}")
    cache: dict[str, BaseCalculator] = getattr(_LOCAL, "calculators", None) or {}
    _LOCAL.calculators = cache
    key = f"{calculator_label(spec)}@{device}"
    if cached and key in cache:
        return cache[key]
    factory = _factory(spec)
    calc = factory(device) if spec.strip().lower() in _FACTORIES else factory()
    if not isinstance(calc, BaseCalculator):
        raise InputError(f"calculator {spec!r} did not return an ASE calculator: {calc!r}")
    with _LOAD_LOCK:
        _LOAD_COUNT += 1
    if cached:
        cache[key] = calc
    return calc


@contextlib.contextmanager
def forces_only(calc: BaseCalculator) -> Iterator[BaseCalculator]:
    """Within this context a calculator with a ``compute_stress`` switch (the CHGNet teacher,
    :class:`phonon_ref.chgnet_teacher.CHGNetTeacher`) computes energy and forces only, unless a
    call asks for the stress; any other calculator is unchanged. For force-only work such as
    phonopy's displaced supercells (2.6× faster with CHGNet, same forces)."""
    if not hasattr(calc, "compute_stress"):
        yield calc
        return
    before = calc.compute_stress
    calc.compute_stress = False
    try:
        yield calc
    finally:
        calc.compute_stress = before


def load_count() -> int:
    """How many named calculators this process has constructed (for diagnostics and tests)."""
    return _LOAD_COUNT


def calculator_label(spec: str | BaseCalculator) -> str:
    """A stable text naming a calculator (a cache key part): the name, or for an object its
    class path and parameters. Two models of one class with equal ``parameters`` (e.g. two
    checkpoints loaded by hand) get the same label: pass ``calculator_name`` where it matters.
    """
    if isinstance(spec, str):
        return spec.strip().lower() if spec.strip().lower() in _FACTORIES else spec.strip()
    cls = type(spec)
    params = getattr(spec, "parameters", None) or {}
    items = ", ".join(f"{k}={params[k]!r}" for k in sorted(params))
    return f"{cls.__module__}.{cls.__qualname__}({items})"


def calculator_info(spec: str | BaseCalculator) -> dict[str, Any]:
    """``{"name", "version"}`` of a calculator, for dataset provenance (teacher name+version)."""
    label = calculator_label(spec)
    version = "unknown"
    if label == "chgnet":
        import chgnet

        calc = get_calculator("chgnet")
        model_version = getattr(getattr(calc, "model", None), "version", None)
        version = f"chgnet {chgnet.__version__}, model {model_version}"
    elif label in _SEVENNET_MODELS:
        import sevenn

        model, modal = _SEVENNET_MODELS[label]
        version = f"sevenn {sevenn.__version__}, model {model}" + (f" ({modal})" if modal else "")
    elif label == "emt":
        import ase

        version = f"ase {ase.__version__}"
    else:
        module = spec.partition(":")[0] if isinstance(spec, str) else type(spec).__module__
        top = importlib.import_module(module.split(".")[0])
        version = f"{top.__name__} {getattr(top, '__version__', 'unknown')}"
    return {"name": label, "version": version}


def teacher_info(spec: str | BaseCalculator, load_here: bool) -> dict[str, Any]:
    """:func:`calculator_info` for a dataset's provenance; with ``load_here=False`` (the work
    runs on other workers) CHGNet's version is read without loading the model in this process."""
    if not load_here and isinstance(spec, str) and spec.strip().lower() == "chgnet":
        import chgnet

        return {"name": "chgnet", "version": f"chgnet {chgnet.__version__}, model 0.3.0"}
    return calculator_info(spec)


def limit_threads(n_threads: int) -> None:
    """Limit torch and the BLAS/OpenMP pools (threadpoolctl) of this process to ``n_threads``.

    Called inside worker processes only (never changes the caller's process when it runs
    in-process): see :func:`configure_worker`.
    """
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n_threads)  # for libraries loaded later
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=n_threads)
    except ImportError:  # pragma: no cover - optional
        pass
    try:
        import torch
    except ImportError:  # pragma: no cover
        return
    if torch.get_num_threads() != n_threads:
        torch.set_num_threads(n_threads)


def restore_malloc_thresholds() -> bool:
    """Undo the effect of ``MALLOC_TRIM_THRESHOLD_`` in this process (glibc only).

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``. Setting that variable
    switches off glibc's adaptive mmap threshold, so every tensor buffer above 128 KiB is
    mmap-ed, zero-filled and unmapped again: CHGNet force calls then run about 2.4× slower
    (5.6 s instead of 2.3 s for a 240-atom cell on one thread). Raising the mmap threshold to
    64 MiB and the trim threshold to 128 MiB restores the speed. Returns whether it applied.
    """
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # pragma: no cover - not glibc
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from <malloc.h>
    ok = libc.mallopt(m_mmap_threshold, 64 * 2**20) == 1
    return libc.mallopt(m_trim_threshold, 128 * 2**20) == 1 and ok


def configure_worker(parent_pid: int, n_threads: int | None) -> None:
    """In a worker process (pid ≠ ``parent_pid``): limit its threads to ``n_threads`` and undo
    dask's malloc setting (:func:`restore_malloc_thresholds`). Once per process."""
    global _CONFIGURED
    if os.getpid() == parent_pid or _CONFIGURED:
        return
    _CONFIGURED = True
    restore_malloc_thresholds()
    if n_threads is not None:
        limit_threads(n_threads)
