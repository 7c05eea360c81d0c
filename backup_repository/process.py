"""The server process and its operating system: how its allocator holds the pieces of a body, and giving memory
back after the start-up's peak."""

import ctypes
import ctypes.util
import gc


def release_free_memory():
    """Collect garbage and ask glibc's allocator to return the free parts of its heap to the system (malloc_trim):
    reading ten thousand documents at start-up leaves tens of MiB free but still counted in the RSS. Does nothing
    where malloc_trim does not exist (musl, other systems)."""
    gc.collect()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


#: glibc's mallopt parameters (malloc.h) and the values the server sets (docs/performance.md#allocator).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 4 << 20
TRIM_THRESHOLD = 8 << 20


def tune_allocator():
    """Keep the megabyte pieces of request bodies in the heap instead of a fresh mmap each (glibc's default for
    blocks that size, until it adapts, and then it gives the heap's top back as soon as 2 MiB are free): every
    fresh page costs a fault and the kernel's zeroing, about half the pages of an upload before (60,000 faults
    for 340 MB, 14% of the server's CPU). Blocks up to MMAP_THRESHOLD come from the heap, and up to TRIM_THRESHOLD
    free at its top stay there for the next pieces. Nothing where mallopt does not exist (musl, other systems)."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return
    mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
