"""Training throughput on the CPU: fastfa next to PyTorch, plain NumPy and the GEMM bound.

Run ``python -m benchmarks.cpu [--quick] [--threads N] [--no-torch]``; ``--optimizers
sgd,decay,nesterov,adam`` prints each optimiser setting next to plain SGD and to PyTorch with
the same optimiser, and ``--busy`` keeps one core busy with another process meanwhile. Everything is
measured in this one process, with the same thread count for every contender (BLAS,
numba, PyTorch), so the ratio lines hold even on a noisy shared machine.

Each contender runs in its own long-lived worker process (``--serve``) and the timings
alternate between them, so their thread pools never spin against each other and a burst
of load on a shared machine hits every contender alike.

- fastfa: :class:`fastfa.Trainer` on MNIST held in memory (whole batches in compiled code).
- PyTorch (optional; skipped with a message when it is not installed): the same network
  written the way peer libraries write it -- a custom ``torch.autograd.Function`` whose
  backward multiplies the error by ``B`` (fa) or ``W`` (bp); dfa with a hook that sends the
  output error to every hidden layer through ``D``; ``torch.optim.SGD``.
- NumPy: a straightforward float32 implementation, one Python iteration per batch.
- GEMM bound: the flops a rule needs per sample (forward ``2 sum n_in n_out``, the same for
  the weight gradients, and ``2 n_src n_l`` for every hidden layer that receives a signal)
  divided into the float32 GEMM speed of NumPy on 2048 x 2048 matrices measured here.

Settings: 784-1000-10 tanh, softmax cross-entropy, SGD with momentum 0.9 (plain SGD at
batch 1, the online setting of the papers), learning rate 0.01, float32. Data: MNIST from
``../shared/data/mnist`` when present (inputs in [0, 1], about 81% zeros), otherwise a
synthetic stand-in with the same sparsity.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples per measurement")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for everyone")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    parser.add_argument("--batches", default="1,32,128,1024")
    parser.add_argument("--rules", default="bp,fa,dfa")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of alternating timings")
    parser.add_argument(
        "--optimizers",
        default="sgd",
        help="comma-separated: sgd, decay (SGD + weight decay 1e-3), nesterov, adam",
    )
    parser.add_argument("--busy", action="store_true", help="keep one core busy with a spinning process")
    parser.add_argument("--serve", choices=["fastfa", "torch", "numpy"], help=argparse.SUPPRESS)
    return parser.parse_args(argv)


ARGS = _parse(sys.argv[1:] if __name__ == "__main__" else [])
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = str(ARGS.threads)  # before numpy, scipy, numba or torch load

import numpy as np  # noqa: E402

from benchmarks.contenders import Contenders, torch_note  # noqa: E402
from benchmarks.torch_rules import make_model  # noqa: E402
from fastfa import TrainConfig, Trainer  # noqa: E402

MNIST_SIZES = (784, 1000, 10)
#: optimiser settings on top of SGD (momentum 0.9, plain SGD at batch 1): weight decay 1e-3 as
#: BioTorch's benchmarks use, Nesterov's momentum, and Adam at its usual rate
OPTIMIZERS = {
    "sgd": {},
    "decay": {"weight_decay": 1e-3},
    "nesterov": {"nesterov": True},
    "adam": {"optimizer": "adam", "lr": 1e-3},
}
DEEP_SIZES = (784, 1000, 1000, 1000, 1000, 10)


# ------------------------------------------------------------------------- data


def load_mnist(n):
    """``n`` MNIST training images (float32 in [0, 1]) and labels, or a synthetic stand-in."""
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
    images, labels = folder / "train-images-idx3-ubyte.gz", folder / "train-labels-idx1-ubyte.gz"
    if images.exists() and labels.exists():
        from fastfa.datasets import read_idx

        x = read_idx(images, 0x00000803).reshape(-1, 784)[:n].astype(np.float32) / 255
        y = read_idx(labels, 0x00000801)[:n].astype(np.int64)
        return x, y, "MNIST"
    rng = np.random.default_rng(0)
    x = (rng.random((n, 784)) < 0.19) * rng.random((n, 784))
    return x.astype(np.float32), rng.integers(0, 10, n), "synthetic (MNIST-like sparsity)"


# ------------------------------------------------------------------------ bound


def gemm_gflops(repeats=5):
    """NumPy float32 GEMM speed on 2048 x 2048 matrices, best of ``repeats``."""
    rng = np.random.default_rng(0)
    a, b = (rng.random((2048, 2048), dtype=np.float32) for _ in range(2))
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * 2048**3 / best / 1e9


def flops_per_sample(sizes, rule):
    """Flops of one training sample: forward, weight gradients, hidden signals."""
    layers = list(zip(sizes[:-1], sizes[1:]))
    forward = sum(2 * a * b for a, b in layers)
    hidden = sizes[1:-1]
    if rule == "dfa":
        signals = sum(2 * sizes[-1] * n for n in hidden)
    else:  # every layer but the first sends a signal down
        signals = sum(2 * a * b for a, b in layers[1:])
    return 2 * forward + signals


def _timed(func):
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


# ------------------------------------------------------------------------ fastfa


def fastfa_rate(sizes, rule, batch, x, y, repeats, opt="sgd"):
    momentum = 0.0 if batch == 1 else 0.9
    settings = {"lr": 0.01, "momentum": momentum, **OPTIMIZERS[opt]}
    config = TrainConfig(hidden=sizes[1:-1], rule=rule, batch_size=batch, **settings)
    trainer = Trainer(config, sizes[0], sizes[-1])
    xs, labels, targets = trainer.prepare(x, y)
    order = np.arange(len(xs))
    trainer.train_rows(xs, labels, targets, order[: 4 * batch])  # compile / warm up
    best = min(_timed(lambda: trainer.train_rows(xs, labels, targets, order)) for _ in range(repeats))
    return len(xs) / best


# ------------------------------------------------------------------------- numpy


def numpy_rate(sizes, rule, batch, x, y, repeats, opt="sgd"):
    rng = np.random.default_rng(0)
    ws = [rng.uniform(-1, 1, (a, b)).astype(np.float32) / np.sqrt(a) for a, b in zip(sizes[:-1], sizes[1:])]
    bs = [np.zeros(b, np.float32) for b in sizes[1:]]
    fb = [rng.uniform(-1, 1, w.shape).astype(np.float32) / np.sqrt(w.shape[0]) for w in ws[1:]]
    if rule == "dfa":
        fb = [rng.uniform(-1, 1, (n, sizes[-1])).astype(np.float32) / np.sqrt(n) for n in sizes[1:-1]]
    vw = [np.zeros_like(w) for w in ws]
    vb = [np.zeros_like(b) for b in bs]
    mu, lr = (0.0 if batch == 1 else 0.9), np.float32(0.01)
    onehot = np.eye(sizes[-1], dtype=np.float32)[y]

    def epoch(n=None):
        for start in range(0, len(x) if n is None else n, batch):
            xb, tb = x[start : start + batch], onehot[start : start + batch]
            hs = [xb]
            for i, (w, b) in enumerate(zip(ws, bs)):
                a = hs[-1] @ w + b
                if i < len(ws) - 1:
                    hs.append(np.tanh(a))
                else:
                    a -= a.max(axis=1, keepdims=True)
                    p = np.exp(a)
                    p /= p.sum(axis=1, keepdims=True)
            e = (p - tb) / len(xb)
            deltas = [e]
            for i in range(len(ws) - 2, -1, -1):
                if rule == "dfa":
                    d = e @ fb[i].T
                else:
                    d = deltas[0] @ (ws[i + 1] if rule == "bp" else fb[i]).T
                deltas.insert(0, d * (1 - hs[i + 1] ** 2))
            for i in range(len(ws)):
                gw, gb = hs[i].T @ deltas[i], deltas[i].sum(axis=0)
                if mu:
                    vw[i] *= mu
                    vw[i] -= lr * gw
                    vb[i] *= mu
                    vb[i] -= lr * gb
                    ws[i] += vw[i]
                    bs[i] += vb[i]
                else:
                    ws[i] -= lr * gw
                    bs[i] -= lr * gb

    epoch(4 * batch)  # warm up, as fastfa_rate does
    best = min(_timed(epoch) for _ in range(repeats))
    return len(x) / best


# ------------------------------------------------------------------------- torch


def torch_rate(sizes, rule, batch, x, y, repeats, opt="sgd"):
    import torch
    import torch.nn.functional as F

    model, params = make_model(sizes, rule)
    momentum = 0.0 if batch == 1 else 0.9
    settings = OPTIMIZERS[opt]
    if opt == "adam":
        optimizer = torch.optim.Adam(params, lr=settings["lr"])
    else:  # torch refuses Nesterov without momentum, which is plain SGD anyway
        optimizer = torch.optim.SGD(
            params, lr=0.01, momentum=momentum, weight_decay=settings.get("weight_decay", 0.0),
            nesterov=settings.get("nesterov", False) and momentum > 0,
        )  # fmt: skip
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def epoch(n=None):
        for start in range(0, len(xt) if n is None else n, batch):
            xb, yb = xt[start : start + batch], yt[start : start + batch]
            loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    epoch(4 * batch)  # warm up, as fastfa_rate does
    best = min(_timed(epoch) for _ in range(repeats))
    return len(xt) / best


# -------------------------------------------------------------------------- main


def samples_for(batch, quick):
    if batch == 1:
        return 2000 if quick else 10000
    return (4096 if quick else 16384) if batch < 1024 else (8192 if quick else 32768)


EPOCHS_PER_ASK = 2  # every contender runs faster on its second pass over the same model


def serve(who):
    """Worker loop: read ``net rule batch samples`` lines, answer samples/s.

    Each answer is the best of :data:`EPOCHS_PER_ASK` timed passes on one freshly built model.
    """
    if who == "torch":
        import torch

        torch.set_num_threads(ARGS.threads)
    rate = {"fastfa": fastfa_rate, "torch": torch_rate, "numpy": numpy_rate}[who]
    x_all, y_all, _ = load_mnist(60000)
    print("ready", flush=True)
    for line in sys.stdin:
        net, rule, batch, samples, *opt = line.split()
        x, y = x_all[: int(samples)], y_all[: int(samples)]
        sizes = {"mnist": MNIST_SIZES, "deep": DEEP_SIZES}[net]
        print(rate(sizes, rule, int(batch), x, y, EPOCHS_PER_ASK, *opt), flush=True)


def busy_core():
    """A process that keeps one core busy (``--busy``): another user's job on a shared machine."""
    import subprocess

    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def optimizer_table(pool, names, batches, rules, optimizers, args):
    """Each optimiser setting next to plain SGD (fastfa) and to PyTorch with the same optimiser."""
    head = f"{'rule':<6}{'batch':>6}{'optimizer':>10}{'fastfa':>10}{'torch':>10}"
    print(head + f"{'vs sgd':>8}{'fastfa/torch':>14}")
    for batch in batches:
        n = samples_for(batch, args.quick) // (4 if batch == 1 else 1)
        for rule in rules:
            plain = None
            for opt in ["sgd", *[o for o in optimizers if o != "sgd"]]:
                rates = pool.best(names, "mnist", rule, batch, n, opt, repeats=args.repeats)
                ours, theirs = rates["fastfa"], rates.get("torch", float("nan"))
                plain = plain or ours
                print(
                    f"{rule:<6}{batch:>6}{opt:>10}{ours:>10,.0f}{theirs:>10,.0f}{ours / plain:>7.2f}x"
                    f"{ours / theirs:>13.2f}x",
                    flush=True,
                )


def main():
    args = ARGS
    if args.serve:
        serve(args.serve)
        return
    spinner = busy_core() if args.busy else None
    try:
        run(args)
    finally:
        if spinner is not None:
            spinner.kill()


def run(args):
    batches = [int(b) for b in args.batches.split(",")]
    rules = args.rules.split(",")
    has_torch, note = torch_note(args.no_torch)
    _, _, source = load_mnist(1)
    gflops = gemm_gflops()
    print(f"fastfa CPU benchmark: data {source}; {args.threads} threads for every contender")
    print(f"NumPy float32 GEMM 2048x2048: {gflops:.0f} GFLOP/s; {note}")
    print(
        "784-1000-10 tanh, SGD momentum 0.9 (batch 1: plain SGD); samples/s, "
        f"best of {args.repeats} rounds x {EPOCHS_PER_ASK} passes"
    )
    print()
    if args.busy:
        print("--busy: one core kept busy by another process throughout")
    names = ["fastfa", "torch"] if has_torch else ["fastfa"]
    pool = Contenders("benchmarks.cpu", names + ["numpy"], args.threads)
    optimizers = args.optimizers.split(",")
    if optimizers != ["sgd"]:
        try:
            optimizer_table(pool, names, batches, rules, optimizers, args)
        finally:
            pool.close()
        return
    print(f"{'rule':<6}{'batch':>6}{'fastfa':>10}{'torch':>10}{'numpy':>10}{'bound':>10}"
          f"{'fastfa/torch':>14}{'fastfa/bound':>14}")  # fmt: skip
    try:
        for batch in batches:
            n = samples_for(batch, args.quick)
            for rule in rules:
                bound = gflops * 1e9 / flops_per_sample(MNIST_SIZES, rule)
                rates = pool.best(names, "mnist", rule, batch, n, repeats=args.repeats)
                plain = pool.ask("numpy", "mnist", rule, batch, min(n, 4096))
                ours, theirs = rates["fastfa"], rates.get("torch", float("nan"))
                print(
                    f"{rule:<6}{batch:>6}{ours:>10,.0f}{theirs:>10,.0f}{plain:>10,.0f}{bound:>10,.0f}"
                    f"{ours / theirs:>13.2f}x{ours / bound:>13.0%}",
                    flush=True,
                )
        print("(bound: dense flops; fastfa skips zero inputs, so on MNIST it can pass 100%)")
        print()
        n = samples_for(128, args.quick) // 2
        for batch in (32, 128):
            fa = pool.best(["fastfa"], "deep", "fa", batch, n, repeats=args.repeats)["fastfa"]
            dfa = pool.best(["fastfa"], "deep", "dfa", batch, n, repeats=args.repeats)["fastfa"]
            print(f"784-1000x4-10 batch {batch}: fa {fa:,.0f}/s, dfa {dfa:,.0f}/s, dfa/fa {dfa / fa:.2f}x")
    finally:
        pool.close()


def startup():
    """Wall time of ``fastfa train --epochs 1`` on the bundled digits, cold and warm kernel cache.

    The whole command (start-up, data, one epoch of 1,258 rows, evaluation) bounds the time
    to the first batch from above; the cold run's extra time is the kernels' compile time.
    """
    from benchmarks.timing import cold_and_warm_seconds

    cold, warm = cold_and_warm_seconds([sys.executable, "-m", "fastfa", "train", "--epochs", "1", "--quiet"])
    print(
        f"fastfa train --epochs 1 (bundled digits), whole command: warm cache {warm:.2f} s, "
        f"cold cache {cold:.2f} s (compile about {cold - warm:.1f} s)"
    )


if __name__ == "__main__":
    main()
    if not ARGS.serve and ARGS.optimizers == "sgd" and not ARGS.busy:
        print()
        startup()
