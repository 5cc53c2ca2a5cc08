"""Long-lived worker processes, one per contender, timed in turn (shared by the CPU benchmarks).

A benchmark module runs itself as ``python -m MODULE --threads N --serve NAME`` for each
contender; the worker prints ``ready`` once loaded, then answers one line (samples/s) per
request line. Repeats alternate between the contenders, so a burst of load on a shared machine
hits them alike, and each contender's thread pools sit idle in their own process while another
one runs.
"""

from __future__ import annotations

import subprocess
import sys
import time

IDLE_SECONDS = 0.5  # OpenBLAS threads spin ~2^28 cycles after their last call before sleeping


class Contenders:
    """One worker per name, started as ``python -m module --threads threads --serve name``."""

    def __init__(self, module, names, threads):
        self.workers = {
            name: subprocess.Popen(
                [sys.executable, "-m", module, "--threads", str(threads), "--serve", name],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )
            for name in names
        }  # fmt: skip
        for name, worker in self.workers.items():  # start timing only once every worker has loaded
            if worker.stdout.readline().strip() != "ready":
                raise RuntimeError(f"the {name} worker failed to start")

    def ask(self, name, *request):
        """Send ``request`` (space-separated) to the worker ``name``; its answer as a float."""
        time.sleep(IDLE_SECONDS)  # let the last worker's BLAS/OpenMP threads stop spinning
        worker = self.workers[name]
        worker.stdin.write(" ".join(map(str, request)) + "\n")
        worker.stdin.flush()
        answer = worker.stdout.readline()
        if not answer:
            raise RuntimeError(f"the {name} worker died on {' '.join(map(str, request))}")
        return float(answer)

    def best(self, names, *request, repeats):
        """Best answer of each contender over ``repeats`` alternating requests."""
        rates = {name: 0.0 for name in names}
        for _ in range(repeats):
            for name in names:
                rates[name] = max(rates[name], self.ask(name, *request))
        return rates

    def close(self):
        for worker in self.workers.values():
            worker.stdin.close()
            worker.wait()


def torch_note(disabled):
    """``(available, note)`` about PyTorch for the report's header."""
    if disabled:
        return False, "PyTorch disabled with --no-torch"
    try:
        import torch
    except ImportError:
        return False, "PyTorch is not installed (pip install torch): its columns are skipped"
    return True, f"PyTorch {torch.__version__}"
