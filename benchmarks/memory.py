"""Peak resident memory (RSS) a callable adds to the process: ``peak_rss_growth(fn)``.

``tracemalloc`` sees Python's allocator only; tensor storage is allocated by ATen outside it,
so memory is measured here as the kernel sees it: the process's RSS high-water mark
(``VmHWM`` in ``/proc/self/status``), reset just before ``fn`` runs by writing ``5`` to
``/proc/self/clear_refs`` (Linux >= 4.0).

Each measurement runs in a forked child, so that one measurement's leftovers (allocator caches,
modules imported, compiled TorchScript) never lower the next one's figure, and the caller's
process is left as it was. In the child:

* ``torch.set_num_threads(1)`` first: GNU OpenMP's thread pool does not survive ``fork`` (a
  forked child that runs a parallel kernel after its parent did deadlocks);
* glibc's ``malloc`` is told to serve every block above 128 KiB with its own ``mmap``
  (``mallopt(M_MMAP_THRESHOLD)``, which also turns off glibc's sliding threshold), so that a
  freed tensor returns its pages to the kernel at once, as it would in a process whose
  threshold had not slid: RSS then follows the bytes held alive, not the allocator's history.
  The same setting applies to everything measured (eager forward and both tracers) alike;
* ``setup()`` (if given) runs before the reset: imports, building the model, a warmup call of
  something else; its allocations are part of the baseline, not of the growth.

The growth is ``VmHWM after fn - VmRSS before fn`` in bytes: the most memory ``fn`` held at
once above what the process already held.

    from benchmarks.memory import peak_rss_growth
    peak_rss_growth(lambda: model(x))
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import pickle
import re
from typing import Any, Callable, Dict, Optional

__all__ = ["peak_rss_growth", "rss_kib", "MMAP_THRESHOLD"]

#: blocks at least this large get their own mmap in the measuring child (glibc)
MMAP_THRESHOLD = 128 * 1024
_M_MMAP_THRESHOLD = -3  # from glibc's malloc.h
_M_TRIM_THRESHOLD = -1


def rss_kib() -> Dict[str, int]:
    """``VmRSS`` and ``VmHWM`` of this process, in KiB."""
    with open("/proc/self/status") as f:
        status = f.read()
    return {key: int(m.group(1)) for key in ("VmRSS", "VmHWM")
            if (m := re.search(rf"^{key}:\s+(\d+) kB", status, re.M)) is not None}


def _fix_malloc() -> None:
    """Fixed mmap threshold (see the module docstring); silently nothing off glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, MMAP_THRESHOLD)
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_high_water() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _measure(fn: Callable[[], Any], setup: Optional[Callable[[], Any]]) -> int:
    import torch  # the child's own thread setting (see the module docstring)

    torch.set_num_threads(1)
    _fix_malloc()
    if setup is not None:
        setup()
    gc.collect()
    _fix_malloc()  # return what setup freed before taking the baseline
    _reset_high_water()
    before = rss_kib()["VmRSS"]
    fn()
    return (rss_kib()["VmHWM"] - before) * 1024


def peak_rss_growth(fn: Callable[[], Any], setup: Optional[Callable[[], Any]] = None) -> int:
    """Bytes of peak RSS growth while ``fn()`` runs, measured in a forked child.

    ``fn``'s result is dropped in the child; an exception in ``fn`` or ``setup`` is raised
    again here as ``RuntimeError`` naming it. Linux only (``fork``, ``/proc``)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: measure, report, leave without running the parent's atexit hooks
        os.close(read_end)
        result: Any
        try:
            result = ("ok", _measure(fn, setup))
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            result = ("error", f"{type(e).__name__}: {e}")
        with os.fdopen(write_end, "wb") as out:
            pickle.dump(result, out)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as inp:
        data = inp.read()
    os.waitpid(pid, 0)
    if not data:
        raise RuntimeError("the measuring child died without a result")
    status, value = pickle.loads(data)
    if status != "ok":
        raise RuntimeError(f"peak_rss_growth: {value}")
    return int(value)
