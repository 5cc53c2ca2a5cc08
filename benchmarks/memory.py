"""Peak memory of ``fastfa train`` on an HDF5 dataset far larger than its memory budget.

Writes a synthetic classification dataset with at least ``--gb`` GiB of float32 features
(512 features x 1,048,576 rows for the default 2 GiB, plus a 10,000-row test split),
block by block with h5py so this script itself stays small, into a temporary folder on
disk (not /dev/shm). Then runs, as a subprocess::

    python -m fastfa train FILE --epochs 1 --hidden 256 --batch-size 128 --quiet --json

and reports the file size, rows, wall-clock seconds, samples per second and the child's
peak resident set size (``getrusage(RUSAGE_CHILDREN).ru_maxrss``), and whether it stayed
under the limit (500 MiB; training streams the file in chunks of 128 MiB of inputs). The
dataset is deleted afterwards unless ``--keep``. Exit status 1 when over the limit.

Usage::

    python -m benchmarks.memory [--gb 2.0] [--features 512] [--dir DIR] [--keep] [--limit-mb 500]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

CLASSES = 10
TEST_ROWS = 10_000
BLOCK_ROWS = 32_768  # rows generated and written at a time (64 MiB of 512 float32 features)
STORAGE_CHUNK_BYTES = 1 << 18  # HDF5 storage chunk, as fastfa.datasets writes them (256 KiB)
COMMAND = ["train", "--epochs", "1", "--hidden", "256", "--batch-size", "128", "--quiet", "--json"]


def write_synthetic(path, rows, features, seed=0):
    """A learnable classification task (labels of a noisy linear teacher), written block by block."""
    rng = np.random.default_rng(seed)
    teacher = rng.standard_normal((features, CLASSES)).astype(np.float32) / np.sqrt(features)
    chunk = (max(1, STORAGE_CHUNK_BYTES // (4 * features)), features)
    with h5py.File(path, "w") as f:
        f.attrs.update(
            {
                "name": "memory-benchmark",
                "task": "classification",
                "n_classes": CLASSES,
                "source": "synthetic (benchmarks/memory.py): x ~ N(0, 1), y = argmax(x T + noise)",
            }
        )
        for split, n in (("train", rows), ("test", TEST_ROWS)):
            group = f.create_group(split)
            x = group.create_dataset("x", shape=(n, features), dtype=np.float32, chunks=chunk)
            y = group.create_dataset("y", shape=(n,), dtype=np.int64, chunks=(min(n, 1 << 15),))
            for start in range(0, n, BLOCK_ROWS):
                stop = min(start + BLOCK_ROWS, n)
                block = rng.standard_normal((stop - start, features), dtype=np.float32)
                noise = rng.standard_normal((stop - start, CLASSES), dtype=np.float32)
                x[start:stop] = block
                y[start:stop] = np.argmax(block @ teacher + 0.5 * noise, axis=1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=2.0, help="GiB of float32 training inputs (default 2)")
    parser.add_argument("--features", type=int, default=512)
    parser.add_argument("--dir", type=Path, default=None, help="folder for the dataset (default: temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the dataset file afterwards")
    parser.add_argument("--limit-mb", type=float, default=500.0, help="peak RSS limit in MiB (default 500)")
    args = parser.parse_args(argv)
    if args.gb <= 0 or args.features < 1:
        parser.error("--gb and --features must be positive")
    rows = int(np.ceil(args.gb * 2**30 / (4 * args.features)))
    base = Path(tempfile.gettempdir()) if args.dir is None else args.dir
    if str(base.resolve()).startswith("/dev/shm"):
        parser.error(f"{base} is in memory (/dev/shm); give a folder on disk with --dir")
    needed = 4 * args.features * (rows + TEST_ROWS) + 8 * (rows + TEST_ROWS)
    free = shutil.disk_usage(base).free
    if free < 1.1 * needed:
        sys.exit(f"{base}: {free / 1e9:.1f} GB free, the dataset needs {needed / 1e9:.1f} GB; use --dir")
    folder = Path(tempfile.mkdtemp(prefix="fastfa-memory-", dir=base))
    path = folder / "big.h5"
    try:
        print(f"writing {path}: {rows:,} x {args.features} float32 + {TEST_ROWS:,} test rows", flush=True)
        started = time.perf_counter()
        write_synthetic(path, rows, args.features)
        size = path.stat().st_size
        print(f"  {size / 1e9:.2f} GB ({size / 2**30:.2f} GiB) in {time.perf_counter() - started:.1f} s")

        command = [sys.executable, "-m", "fastfa", COMMAND[0], str(path), *COMMAND[1:]]
        print("$ " + " ".join(command), flush=True)
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
        if done.returncode != 0:
            sys.exit(f"training failed (status {done.returncode}): {done.stderr.strip()}")
        if peak_kib < before:  # cannot happen: no other child ran
            raise RuntimeError("ru_maxrss went down")
        summary = json.loads(done.stdout)
        epoch_seconds = summary["final"]["seconds"]
        peak_mb = peak_kib / 1024
        under = peak_mb < args.limit_mb
        print()
        train_gib = rows * args.features * 4 / 2**30
        print(f"file size      {size / 1e9:.2f} GB ({size / 2**30:.2f} GiB; train x {train_gib:.2f} GiB)")
        print(f"rows           {rows:,} train x {args.features} features, {TEST_ROWS:,} test")
        print(f"seconds        {seconds:.1f} wall (process), {epoch_seconds:.1f} in the training epoch")
        print(f"samples/s      {rows / seconds:,.0f} overall, {rows / epoch_seconds:,.0f} in the epoch")
        print(f"peak RSS       {peak_mb:.1f} MB (MiB)")
        print(f"under {args.limit_mb:g} MB   {'yes' if under else 'NO'}")
        final = summary["final"]
        print(f"train loss {final['train_loss']:.4f}, test error {100 * final['test_error']:.2f}%")
        return 0 if under else 1
    finally:
        if args.keep:
            print(f"kept {path}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
