"""The server process and its operating system: giving memory back after the start-up's peak."""

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
