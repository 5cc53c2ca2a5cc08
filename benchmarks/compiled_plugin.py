"""A compiled rule plugin against the built-in rule and against a Python ``after_batch`` hook.

Run ``python -m benchmarks.compiled_plugin [--rows N] [--epochs K]``. Kolen-Pollack three ways, on
MNIST 784-1000-10 (20,000 training rows by default; a synthetic stand-in without the data) with
SGD, momentum 0.9 and weight decay 1e-3, at batch 32 and 128:

- ``kp``: the built-in rule (the engine's own Kolen-Pollack dynamics);
- ``kp-compiled``: examples/compiled_kp.py, a one-file plugin whose hidden signal and feedback
  step are numba functions the epoch loop calls (:mod:`fastfa.compiled_rules`);
- ``kp-hook``: the same rule with its feedback step in a Python ``after_batch`` hook, so the
  epoch runs batch by batch from Python (the only way to write such a rule before).

Each contender trains ``--epochs`` epochs after one untimed epoch (compilation), the contenders
taking turns epoch by epoch so that a noisy machine slows them alike; the best epoch counts.
Prints samples/s and each one's ratio to the built-in rule.

``--startup`` instead times ``fastfa train --epochs 1 --weight-decay 1e-3`` on the bundled
digits with a cold numba cache and warm (:func:`benchmarks.timing.cold_and_warm_seconds`), for
the one-file plugin (``--plugin examples/compiled_kp.py --rule kp-compiled``) and the built-in
``kp``, in turn.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks.cpu import load_mnist
from fastfa.config import TrainConfig
from fastfa.rules import RANDOM_FEEDBACK_OPTIONS, Rule, load_plugin_file, random_feedback
from fastfa.train import Trainer

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "compiled_kp.py"


def kp_hook(trainer):
    """Kolen-Pollack's feedback step from Python after each update: ``B^T <- (1 - lr wd)(B^T -
    W_old) + W_new``, with ``W_old`` kept from the previous call (the same arithmetic as the
    built-in rule's two passes)."""
    keep = 1.0 - trainer.learning_rate() * trainer.config.weight_decay
    weights = trainer.arch.weights(trainer.params)[1:]
    previous = trainer.__dict__.setdefault("_kp_previous", [w.copy() for w in weights])
    for b, w, w_old in zip(trainer.feedback_views(trainer.feedback), weights, previous):
        b_t = b.T  # B^T, W's shape
        b_t -= w_old
        b_t *= keep
        b_t += w
        w_old[...] = w


HOOK_RULE = Rule(
    name="kp-hook",
    summary="Kolen-Pollack with its feedback step in a Python hook",
    reference="Akrout et al. 2019",
    signal="layerwise",
    init_feedback=random_feedback,
    options=RANDOM_FEEDBACK_OPTIONS,
    after_batch=kp_hook,
)


def contender(rule, batch, n_in):
    config = TrainConfig(
        hidden=(1000,), rule=rule, batch_size=batch, lr=0.01, momentum=0.9, weight_decay=1e-3, seed=0
    )
    return Trainer(config, n_in, 10)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batches", default="32,128")
    parser.add_argument("--startup", action="store_true", help="time a run's cold and warm start instead")
    args = parser.parse_args(argv)
    if args.startup:
        startup()
        return
    x, y, source = load_mnist(args.rows)
    (compiled,) = load_plugin_file(EXAMPLE)
    print(f"Kolen-Pollack on {source}, 784-1000-10, {len(x)} rows, SGD momentum 0.9, weight decay 1e-3")
    print(f"{'batch':>5}  {'contender':<12} {'samples/s':>10}  vs built-in")
    for batch in (int(b) for b in args.batches.split(",")):
        trainers = {name: contender(rule, batch, x.shape[1]) for name, rule in
                    (("kp", "kp"), ("kp-compiled", compiled), ("kp-hook", HOOK_RULE))}  # fmt: skip
        rows = {name: t.training_rows(x, y) for name, t in trainers.items()}
        best = dict.fromkeys(trainers, np.inf)
        for epoch in range(args.epochs + 1):
            for name, trainer in trainers.items():
                start = time.perf_counter()
                trainer.train_epoch_on(rows[name])
                if epoch:  # the first epoch compiles
                    best[name] = min(best[name], time.perf_counter() - start)
        for name, seconds in best.items():
            print(f"{batch:>5}  {name:<12} {len(x) / seconds:>10,.0f}  {best['kp'] / seconds:.3f}x")
        spread = np.abs(trainers["kp"].params - trainers["kp-compiled"].params).max()
        print(f"       largest |difference| of kp and kp-compiled's weights: {spread:.3g}")


def startup(rounds=2):
    """Cold and warm wall seconds of one epoch on the digits: the one-file plugin and built-in kp."""
    import sys

    from benchmarks.timing import cold_and_warm_seconds

    base = [sys.executable, "-m", "fastfa", "train", "--epochs", "1", "--weight-decay", "1e-3", "-q"]
    commands = {
        "kp-compiled (--plugin file)": ["--plugin", str(EXAMPLE), "--rule", "kp-compiled"],
        "kp (built-in)": ["--rule", "kp"],
    }
    import tempfile

    with tempfile.TemporaryDirectory() as out:
        for _ in range(rounds):
            for name, extra in commands.items():
                cold, warm = cold_and_warm_seconds(base + extra + ["-o", f"{out}/run.h5", "--overwrite"])
                print(f"{name:<28} cold {cold:6.1f} s   warm {warm:5.2f} s")


if __name__ == "__main__":
    main()
