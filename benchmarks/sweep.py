"""Sweep throughput: 16 runs on a local pool of 2 workers x 1 thread against the same runs one by one.

Run ``python -m benchmarks.sweep [--epochs 100] [--hidden 512] [--workers 2]``. The grid is
rules bp and fa x 8 seeds on the bundled digits. Measured in this one process:

- sequential: the 16 runs one after another in this process, with 1 thread (numba and BLAS),
  through the same function the sweep workers call;
- sweep: ``fastfa sweep``'s local pool with ``--workers`` processes x 1 thread, start-up of
  the worker processes included.

It prints both wall times and their ratio (the target on a 2-core machine: at most 0.6), and
checks that both produced the same final metrics.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from fastfa.datasets import default_dataset_path
from fastfa.sweep import load_spec, run_sweep
from fastfa.sweep.summary import METRICS
from fastfa.sweep.worker import run_task
from fastfa.threads import use_threads

SPEC = """
dataset = "{dataset}"
[base]
hidden = [{hidden}]
epochs = {epochs}
lr = 0.05
[axes]
rule = ["bp", "fa"]
seed = [0, 1, 2, 3, 4, 5, 6, 7]
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        spec_path = tmp / "grid.toml"
        text = SPEC.format(dataset=default_dataset_path(), hidden=args.hidden, epochs=args.epochs)
        spec_path.write_text(text)
        spec = load_spec(spec_path)
        use_threads(1)
        warm = spec.tasks(tmp / "warm", 1)[0]
        (tmp / "warm").mkdir()
        run_task(warm)  # kernels compiled and cached before anything is timed

        tasks = spec.tasks(tmp / "sequential", 1)
        (tmp / "sequential").mkdir()
        start = time.perf_counter()
        sequential = {t.name: run_task(t)["final"] for t in tasks}
        t_seq = time.perf_counter() - start

        start = time.perf_counter()
        outcomes = run_sweep(spec, tmp / "sweep", workers=args.workers, threads=1, display=False)
        t_sweep = time.perf_counter() - start

    same = len(outcomes) == len(tasks) and all(
        o["final"][key] == sequential[o["name"]][key] for o in outcomes for key in METRICS
    )
    print(f"{len(tasks)} runs (bp, fa x 8 seeds), digits, hidden {args.hidden}, {args.epochs} epochs")
    print(f"one after another, 1 thread:            {t_seq:7.1f} s")
    print(f"sweep, {args.workers} workers x 1 thread (local pool): {t_sweep:7.1f} s")
    print(f"sweep / sequential: {t_sweep / t_seq:.2f}   (target <= 0.6 on 2 cores)")
    print(f"same final metrics: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
