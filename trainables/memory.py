"""Running out of memory: a trial that cannot allocate fails as ``oom: …``, on any device.

CUDA raises ``torch.OutOfMemoryError``; the CPU allocator raises a ``RuntimeError`` whose text
starts ``DefaultCPUAllocator: can't allocate memory``; numpy and Python raise ``MemoryError``.
``out_of_memory`` maps all three to one ``OutOfMemory`` whose message starts ``oom:``, the
reason the searcher records. ``memory_limit`` caps the host memory a run may add
(``cpu_memory_gb``), so that a configuration too large for the machine fails fast, and so that a
test can make a real allocation fail on a CPU.

The cap is ``RLIMIT_DATA``, the process's private writable memory (the heap and anonymous
mappings, where torch's CPU tensors and Python's objects live), not ``RLIMIT_AS``, the whole
address space: a CUDA process reserves address space far beyond its memory (the CUDA context
maps its libraries and reserves ranges for unified addressing, inaccessible until used), and
pinned buffers are mappings of the driver's device, so under ``RLIMIT_AS`` a modest cap would
fail a healthy GPU trial as ``oom``. Reserved (``PROT_NONE``) and shared mappings are not data.
"""

from __future__ import annotations

import resource
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from trainables.errors import first_line

_CPU_ALLOCATOR = ("can't allocate memory", "out of memory")


class OutOfMemory(RuntimeError):
    """A run could not allocate memory (GPU or CPU): the trial fails with reason ``oom: …``."""

    reason = "oom"


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(error, RuntimeError) and any(
        text in str(error).lower() for text in _CPU_ALLOCATOR
    )


def out_of_memory(error: BaseException, where: str) -> OutOfMemory:
    """The ``OutOfMemory`` that reports ``error`` (an allocation failure) raised in ``where``."""
    return OutOfMemory(f"oom: {where}: {first_line(error, with_type=True)}"[:400])


def _data_size() -> int:
    """This process's current data size in bytes (``VmData`` of Linux ``/proc/self/status``:
    what ``RLIMIT_DATA`` counts)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    raise OSError("/proc/self/status has no VmData line")


@contextmanager
def memory_limit(gb: float | None) -> Iterator[None]:
    """Within the block, the process may add at most ``gb`` GiB of private writable memory (the
    soft ``RLIMIT_DATA``, restored afterwards: a Ray worker runs other trials after this one)."""
    if gb is None:
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    limit = _data_size() + int(gb * 2**30)
    for existing in (soft, hard):  # never looser than a limit the process already has
        if existing != resource.RLIM_INFINITY:
            limit = min(limit, existing)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))
