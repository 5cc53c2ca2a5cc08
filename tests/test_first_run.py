"""The first-run compile helper (fastfa/first_run.py): its manifest names kernels that exist with
the parameters they have, its signatures decode, the helper fills a cache a run then loads, and it
stays away where it cannot help."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from numba.core import types

from fastfa import first_run


def test_every_manifest_entry_is_a_kernel_with_its_parameters():
    manifest = json.loads(first_run.MANIFEST.read_text())
    assert manifest["command"][:2] == ["fastfa", "train"]
    names = [entry["name"] for entry in manifest["kernels"]]
    assert set(first_run.ROOTS) <= set(names)
    for entry in manifest["kernels"]:
        dispatcher = getattr(importlib.import_module(entry["module"]), entry["name"])
        parameters = inspect.signature(dispatcher.py_func).parameters
        assert len(parameters) == len(entry["args"]), entry["name"]
    for floats in ("float32", "float64"):
        jobs = first_run.helper_jobs(floats=floats)
        assert len(jobs) == len(names) - len(first_run.ROOTS)
        assert jobs[0][0].py_func.__name__ == names[-1]  # the kernels a run reaches last come first
        arrays = [t for _, signature in jobs for t in signature if isinstance(t, types.Array)]
        assert {str(t.dtype) for t in arrays} >= {floats, "int64"} and "float32" not in {
            str(t.dtype) for t in arrays if floats == "float64"
        }


@pytest.mark.parametrize(
    "numba_type",
    [
        types.Array(types.float32, 2, "C"),
        types.Array(types.int64, 1, "A", readonly=True),
        types.literal(262144),
        types.none,
        types.boolean,
        types.float64,
        types.uint64,
    ],
)
def test_types_survive_the_manifest(numba_type):
    assert first_run.decode(first_run.encode(numba_type)) == numba_type


def test_the_helper_fills_the_cache_a_run_loads(tmp_path):
    manifest = tmp_path / "manifest.json"
    entry = {"module": "fastfa.kernels.base", "name": "split", "args": [["scalar", "int64"]] * 3}
    manifest.write_text(json.dumps({"command": ["fastfa", "train"], "kernels": [entry]}))
    cache = tmp_path / "cache"
    code = f"from fastfa import first_run; first_run.compile_all({str(manifest)!r})"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=Path(__file__).resolve().parents[1])
    indexes = list(cache.rglob("base.split-*.nbi"))
    assert len(indexes) == 1 and list(cache.rglob("base.split-*.nbc"))


def test_no_helper_where_it_cannot_help(monkeypatch):
    monkeypatch.setattr(first_run, "_started", False)
    monkeypatch.setenv(first_run.ENABLE, "0")
    assert first_run.start_helper() is None
    monkeypatch.setenv(first_run.ENABLE, "1")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert first_run.start_helper() is None  # one core: the run needs it
    monkeypatch.setattr(first_run, "_started", True)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert first_run.start_helper() is None  # one helper per process
