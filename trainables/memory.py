"""Running out of memory: a trial that cannot allocate fails as ``oom: …``, on any device.

CUDA raises ``torch.OutOfMemoryError``; the CPU allocator raises a ``RuntimeError`` whose text
starts ``DefaultCPUAllocator: can't allocate memory`` (a kernel's own buffer: ``posix_memalign
failed: Cannot allocate memory``; C++ code's ``std::bad_alloc``); numpy and Python raise
``MemoryError``. ``is_out_of_memory``
tells them from other errors: a training step that ran out goes on with half its micro-batch
(``trainables.train.fitted_step``), and ``out_of_memory`` makes what is left one ``OutOfMemory``
whose message starts ``oom:``, the reason the searcher records. ``MemoryCap`` caps the host
memory a run may add (``cpu_memory_gb``), so that a configuration too large for the machine
fails fast or shrinks, and so that a test can make a real allocation fail on a CPU.

The cap is ``RLIMIT_DATA``, the process's private writable memory (the heap and anonymous
mappings, where torch's CPU tensors and Python's objects live), not ``RLIMIT_AS``, the whole
address space: a CUDA process reserves address space far beyond its memory (the CUDA context
maps its libraries and reserves ranges for unified addressing, inaccessible until used), and
pinned buffers are mappings of the driver's device, so under ``RLIMIT_AS`` a modest cap would
fail a healthy GPU trial as ``oom``. Reserved (``PROT_NONE``) and shared mappings are not data.

Under the cap torch's CPU kernels run without oneDNN (``torch.backends.mkldnn``): measured at
torch 2.14.1, oneDNN does not survive a failed allocation. Its convolutions then fail every
later call with ``could not create a primitive``, however much memory is free, or the process
dies of a segmentation fault, where torch's own kernels raise the allocator's error and a
smaller micro-batch runs (``trainables.train.fitted_step``). The price is a slower CPU step
(about 1.45x for hrnet_w18_small at 128 px), paid only by a CPU run that sets a cap; a GPU
run's convolutions are cuDNN's.
"""

from __future__ import annotations

import resource
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

import torch

from trainables.errors import first_line

_CPU_ALLOCATOR = ("can't allocate memory", "cannot allocate memory", "out of memory", "bad_alloc")


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


class MemoryCap:
    """At most ``gb`` GiB of private writable memory more than the process holds when the cap is
    made (the soft ``RLIMIT_DATA``), applied only inside ``held()`` blocks: a run holds it over
    its epochs' computation, not over what it hands to Ray between them (a report persists a
    checkpoint with pyarrow's threads, which abort the process when they cannot allocate).
    Inside a block the CPU kernels are torch's own (oneDNN off). Both are restored on leaving:
    a Ray worker runs other trials after this one. ``gb`` None: no cap."""

    def __init__(self, gb: float | None) -> None:
        self.limit: int | None = None
        if gb is not None:
            self.limit = _data_size() + int(gb * 2**30)
            for existing in resource.getrlimit(resource.RLIMIT_DATA):
                if existing != resource.RLIM_INFINITY:  # never looser than one already set
                    self.limit = min(self.limit, existing)

    @contextmanager
    def held(self) -> Iterator[None]:
        if self.limit is None:
            yield
            return
        soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
        resource.setrlimit(resource.RLIMIT_DATA, (self.limit, hard))
        onednn = torch.backends.mkldnn.enabled
        torch.backends.mkldnn.enabled = False
        try:
            yield
        finally:
            torch.backends.mkldnn.enabled = onednn
            resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


def memory_limit(gb: float | None) -> AbstractContextManager[None]:
    """A block that may add at most ``gb`` GiB (``MemoryCap(gb).held()``)."""
    return MemoryCap(gb).held()
