"""Running out of memory: a trial that cannot allocate fails as ``oom: …``, on any device.

CUDA raises ``torch.OutOfMemoryError``; the CPU allocator raises a ``RuntimeError`` whose text
starts ``DefaultCPUAllocator: can't allocate memory``; numpy and Python raise ``MemoryError``.
``out_of_memory`` maps all three to one ``OutOfMemory`` whose message starts ``oom:``, the
reason the searcher records. ``memory_limit`` caps the address space a run may add
(``cpu_memory_gb``, ``RLIMIT_AS``), so that a configuration too large for the machine fails
fast, and so that a test can make a real allocation fail on a CPU.
"""

from __future__ import annotations

import os
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


def _address_space() -> int:
    """This process's current virtual size in bytes (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[0])
    return pages * os.sysconf("SC_PAGE_SIZE")


@contextmanager
def memory_limit(gb: float | None) -> Iterator[None]:
    """Within the block, the process may add at most ``gb`` GiB of address space (the soft
    ``RLIMIT_AS``, restored afterwards: a Ray worker runs other trials after this one)."""
    if gb is None:
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _address_space() + int(gb * 2**30)
    for existing in (soft, hard):  # never looser than a limit the process already has
        if existing != resource.RLIM_INFINITY:
            limit = min(limit, existing)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
