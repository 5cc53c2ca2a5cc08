"""MNIST 784-1000-10 with feedback alignment and backprop (Lillicrap et al. 2016's setting).

Converts the MNIST IDX files to HDF5 (once), trains each rule with the command line
(`fastfa train ... --json`), and prints a table of final test errors next to the
published ones. The exact commands are printed too, so any row can be rerun alone.

Usage::

    python -m benchmarks.mnist [--mnist DIR] [--rules fa,bp] [--epochs 20] [--seed 0] [--out DIR]

Settings (documented in README.md): tanh hidden layer of 1000 units, softmax output with
cross-entropy, inputs scaled to [0, 1], uniform +-1/sqrt(fan_in) initialisation, SGD with
momentum 0.9, batch 32, learning rate 0.05 annealed to 0 with a cosine schedule over the
run, no weight decay; fa's feedback matrix drawn like the forward weights it replaces.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

PUBLISHED = {"bp": 2.4, "fa": 2.1, "shallow": 7.2}  # Lillicrap et al. 2016, test error %
SETTINGS = [
    "--hidden",
    "1000",
    "--activation",
    "tanh",
    "--batch-size",
    "32",
    "--lr",
    "0.05",
    "--momentum",
    "0.9",
    "--schedule",
    "cosine",
]


def default_mnist_dir():
    return Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


def run(cmd):
    print("$ " + " ".join(cmd), flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"command failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, default=default_mnist_dir(), help="folder with the IDX files")
    parser.add_argument("--rules", default="fa,bp")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/mnist"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / "mnist.h5"
    fastfa = [sys.executable, "-m", "fastfa"]
    if not data.exists():
        run(fastfa + ["data", "mnist", str(args.mnist), "-o", str(data)])
    rows = []
    for rule in args.rules.split(","):
        run_file = args.out / f"{rule}-seed{args.seed}.h5"
        cmd = fastfa + [
            "train",
            str(data),
            "--rule",
            rule,
            *SETTINGS,
            "--epochs",
            str(args.epochs),
            "--seed",
            str(args.seed),
            "-o",
            str(run_file),
            "--overwrite",
            "--json",
            "--quiet",
        ]
        result = json.loads(run(cmd))
        history = result["history"]
        rows.append(
            (
                rule,
                100 * history["test_error"][-1],
                100 * min(history["test_error"]),
                sum(history["seconds"]) / len(history["seconds"]),
            )
        )
    print()
    print(f"MNIST 784-1000-10 tanh, {args.epochs} epochs, seed {args.seed}")
    print(f"{'rule':<8} {'final test error':>17} {'best epoch':>11} {'published':>10} {'s/epoch':>8}")
    for rule, final, best, seconds in rows:
        published = f"{PUBLISHED[rule]:.1f}%" if rule in PUBLISHED else "n/a"
        print(f"{rule:<8} {final:>16.2f}% {best:>10.2f}% {published:>10} {seconds:>8.1f}")


if __name__ == "__main__":
    main()
