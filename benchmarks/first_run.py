"""The first run on a fresh kernel cache, with and without the compile helper (fastfa/first_run.py).

Run ``python -m benchmarks.first_run [--rounds 3] [-- fastfa train arguments]``. Each round runs
the command twice in turn, each time in a new process with an empty ``NUMBA_CACHE_DIR``: once with
``FASTFA_COMPILE_HELPER=0`` and once with the helper, and prints both wall-clock times and their
ratio (the machine's load changes slowly, so the pairs compare like with like). Then one warm run
(the cache the helper filled) for the start-up a later run pays. The default command is the
manifest's, ``fastfa train --epochs 1 -q`` on the bundled digits.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time


def timed(command, cache, helper):
    env = {**os.environ, "NUMBA_CACHE_DIR": cache, "FASTFA_COMPILE_HELPER": "1" if helper else "0"}
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    ours, _, train = (
        (argv[: argv.index("--")], None, argv[argv.index("--") + 1 :]) if "--" in argv else (argv, None, [])
    )
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(ours)
    command = [sys.executable, "-m", "fastfa", *(train or ["train", "--epochs", "1", "-q"])]
    print(f"cold start of: fastfa {' '.join(command[3:])}  ({os.cpu_count()} cores)")
    print(f"{'round':>5}  {'without helper':>15}  {'with helper':>12}  {'ratio':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(1, args.rounds + 1):
            plain = timed(command, os.path.join(tmp, f"plain{round_}"), helper=False)
            helped = timed(command, os.path.join(tmp, f"helped{round_}"), helper=True)
            print(f"{round_:>5}  {plain:>14.1f}s  {helped:>11.1f}s  {helped / plain:>5.2f}x", flush=True)
        warm = timed(command, os.path.join(tmp, f"helped{args.rounds}"), helper=True)
        print(f"warm start afterwards (the cache the helper filled): {warm:.1f}s")


if __name__ == "__main__":
    main()
