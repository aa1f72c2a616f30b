"""glibc keeps freed memory for reuse when a search runs, so training steps stop page-faulting.

What is tested is what the settings do to glibc, read back from glibc itself (mallinfo2), not a
page-fault count, which depends on the machine; the fault counts are the benchmark's business.
"""

import ctypes
import os
import subprocess
import sys
from pathlib import Path

import pytest

from search_engine.runtime import allocator

ROOT = Path(__file__).resolve().parents[3]
BLOCK = 16 * 1024 * 1024  # above glibc's default mmap threshold (128 KiB), below the tuned one (32 MiB)

# In a fresh interpreter: apply the settings, malloc and free one 16 MiB block, and report glibc's
# own accounting. With glibc's defaults the block is an mmap of its own (hblkhd) that free() returns
# to the system; with the settings it comes from the heap and stays there as free memory (fordblks).
PROBE = f"""
import ctypes, ctypes.util
from search_engine.runtime.allocator import keep_freed_memory
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                              "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = Info
applied = keep_freed_memory()
block = libc.malloc({BLOCK})
ctypes.memset(block, 1, {BLOCK})
mapped = libc.mallinfo2().hblkhd
libc.free(block)
print(applied, mapped, libc.mallinfo2().fordblks)
"""


def probe(tuning: str) -> tuple[bool, int, int]:
    env = {**os.environ, "LFL_MALLOC_TUNING": tuning}
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    return out[0] == "True", int(out[1]), int(out[2])


def has_mallinfo2() -> bool:
    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux") or not has_mallinfo2(), reason="glibc >= 2.33 only")
def test_with_the_settings_a_large_block_comes_from_the_heap_and_stays_after_free():
    applied, mapped, free_kept = probe("1")
    assert applied
    assert mapped < BLOCK, f"the 16 MiB block was still an mmap of its own ({mapped} bytes mapped)"
    assert free_kept >= BLOCK, f"free() returned the block to the system (only {free_kept} bytes kept)"


@pytest.mark.skipif(not sys.platform.startswith("linux") or not has_mallinfo2(), reason="glibc >= 2.33 only")
def test_opting_out_leaves_glibcs_defaults():
    applied, mapped, free_kept = probe("0")
    assert not applied
    assert mapped >= BLOCK  # glibc's own behaviour: a block this size is mmapped...
    assert free_kept < BLOCK  # ...and unmapped on free


class FakeMallopt:
    """Stands in for libc.mallopt (a ctypes function: argtypes/restype get assigned); records calls."""

    def __init__(self, answer: int):
        self.calls: list[tuple[int, int]] = []
        self.answer = answer  # what mallopt returns: 1 accepted, 0 refused

    def __call__(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return self.answer


class FakeLibc:
    def __init__(self, answer: int = 1):
        self.mallopt = FakeMallopt(answer)

    @property
    def calls(self) -> list[tuple[int, int]]:
        return self.mallopt.calls


@pytest.fixture
def fake_libc(monkeypatch):
    def install(answer: int = 1) -> FakeLibc:
        libc = FakeLibc(answer)
        monkeypatch.setattr(allocator.ctypes, "CDLL", lambda _name: libc)
        monkeypatch.setattr(allocator.sys, "platform", "linux")
        monkeypatch.setattr(allocator, "_applied", None)
        return libc

    return install


def test_the_settings_are_applied_once_per_process(fake_libc, monkeypatch):
    monkeypatch.setenv("LFL_MALLOC_TUNING", "1")
    libc = fake_libc()
    assert [allocator.keep_freed_memory() for _ in range(3)] == [True, True, True]
    assert libc.calls == [(-3, 32 * 1024 * 1024), (-1, 2**31 - 1)]  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, once


@pytest.mark.parametrize("value", ["0", "false", "off", " no "])
def test_the_opt_out_never_calls_mallopt(fake_libc, monkeypatch, value):
    monkeypatch.setenv("LFL_MALLOC_TUNING", value)
    libc = fake_libc()
    assert allocator.keep_freed_memory() is False
    assert libc.calls == []


def test_a_refused_setting_reports_not_applied(fake_libc, monkeypatch):
    monkeypatch.setenv("LFL_MALLOC_TUNING", "1")
    libc = fake_libc(answer=0)
    assert allocator.keep_freed_memory() is False
    assert allocator.keep_freed_memory() is False
    assert len(libc.calls) == 1  # the first refusal stops it, and the answer is remembered
