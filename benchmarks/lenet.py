"""LeNet-MNIST training throughput on the CPU: fastfa next to PyTorch and the exact-flop GEMM bound.

Run ``python -m benchmarks.lenet [--quick] [--threads N] [--no-torch]``. Each contender runs in
its own long-lived worker process and the timings alternate between them
(:mod:`benchmarks.contenders`), with the same thread count for everyone, so the ratios hold on
a noisy shared machine.

- fastfa: :class:`fastfa.Trainer` with ``--model lenet-mnist`` (BioTorch's LeNet, ReLU) on
  1x32x32 images held in memory, SGD momentum 0.9, learning rate 0.01, float32.
- PyTorch (optional; skipped with a message when it is not installed): the same network as the
  peers write it (:mod:`benchmarks.torch_conv`): ``F.conv2d`` under autograd for bp, a custom
  autograd Function whose backward uses ``B`` for fa and usf, a hook that sends the output error
  through ``D`` for dfa; ``torch.optim.SGD``.
- Bound: the exact flops a rule needs per sample (forward ``2 C_out H_out W_out C_in k^2`` per
  conv layer and ``2 n_in n_out`` per dense layer, the same for the weight gradients, the same
  again for every layer that sends a signal down -- all but the first for bp, fa and usf; dfa's
  ``2 n_out size_l`` per hidden layer) divided into NumPy's float32 GEMM speed on 2048 x 2048
  matrices measured here.

``--dropout P`` times every rule twice, as asked and with dropout of rate ``P`` on every hidden
layer (fastfa's ``--dropout``, PyTorch's ``F.dropout`` after each hidden activation; rows
``fa+dropP``), so the table shows what dropout costs each of them; ``--batch-norm`` does the same
with batch norm before every hidden activation (fastfa's ``--batch-norm``, PyTorch's
``nn.BatchNorm2d`` and ``nn.BatchNorm1d``; rows ``fa+bn``).

Data: MNIST from ``../shared/data/mnist`` padded to 32x32 when present, otherwise a synthetic
stand-in with the same sparsity. Afterwards: the start-up of a LeNet run (cold and warm kernel
cache) and the peak resident memory of ``fastfa train --model lenet-mnist`` at batch 128
streaming an MNIST file.
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
    parser.add_argument("--batches", default="64,128")
    parser.add_argument("--rules", default="bp,fa,usf,dfa")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of alternating timings")
    parser.add_argument("--skip-startup", action="store_true", help="only the throughput table")
    parser.add_argument(
        "--dropout",
        type=float,
        default=0.0,
        help="also time each rule with this dropout rate on every hidden layer",
    )
    parser.add_argument(
        "--batch-norm",
        action="store_true",
        help="also time each rule with batch norm before every hidden activation (nn.BatchNorm2d/1d)",
    )
    parser.add_argument("--serve", choices=["fastfa", "torch"], help=argparse.SUPPRESS)
    return parser.parse_args(argv)


ARGS = _parse(sys.argv[1:] if __name__ == "__main__" else [])
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = str(ARGS.threads)  # before numpy, scipy, numba or torch load

import numpy as np  # noqa: E402

from benchmarks.contenders import Contenders, torch_note  # noqa: E402
from benchmarks.cpu import gemm_gflops  # noqa: E402

#: LeNet-MNIST as (kind, C_in, C_out, k, H_out) for conv and (kind, n_in, n_out) for dense
LENET = (
    ("conv", 1, 6, 5, 28),
    ("conv", 6, 16, 5, 10),
    ("conv", 16, 120, 5, 1),
    ("dense", 120, 84),
    ("dense", 84, 10),
)
EPOCHS_PER_ASK = 2
#: runs the command in argv and prints its peak resident set size (KiB, Linux)
PEAK_OF_CHILD = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def load_images(n):
    """``n`` MNIST training images padded to 1x32x32 (float32 in [0, 1], flat) and labels, or a stand-in."""
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
    images, labels = folder / "train-images-idx3-ubyte.gz", folder / "train-labels-idx1-ubyte.gz"
    if images.exists() and labels.exists():
        from fastfa.datasets import read_idx

        x = read_idx(images, 0x00000803)[:n].astype(np.float32) / 255
        x = np.pad(x, ((0, 0), (2, 2), (2, 2))).reshape(len(x), -1)
        return x, read_idx(labels, 0x00000801)[:n].astype(np.int64), "MNIST padded to 32x32"
    rng = np.random.default_rng(0)
    x = (rng.random((n, 1024)) < 0.15) * rng.random((n, 1024))
    return x.astype(np.float32), rng.integers(0, 10, n), "synthetic (MNIST-like sparsity)"


def flops_per_sample(rule):
    """Exact flops of one LeNet training sample (module notes)."""
    per_layer, outputs = [], []
    for layer in LENET:
        if layer[0] == "conv":
            _, c_in, c_out, k, h_out = layer
            per_layer.append(2 * c_out * h_out * h_out * c_in * k * k)
            outputs.append(c_out * h_out * h_out)
        else:
            per_layer.append(2 * layer[1] * layer[2])
            outputs.append(layer[2])
    signals = sum(2 * 10 * n for n in outputs[:-1]) if rule == "dfa" else sum(per_layer[1:])
    return 2 * sum(per_layer) + signals


def with_dropout(rule):
    """``"fa+drop0.5"`` -> ``("fa", 0.5, False)``, ``"fa+bn"`` -> ``("fa", 0.0, True)``: a rule as the
    workers are asked for it, its dropout rate and whether it batch-normalises."""
    name, bn, _ = rule.partition("+bn")
    name, _, rate = name.partition("+drop")
    return name, float(rate or 0.0), bool(bn)


def fastfa_rate(rule, batch, x, y, repeats):
    from fastfa import TrainConfig, Trainer

    rule, rate, bn = with_dropout(rule)
    config = TrainConfig(
        dropout=(rate,) if rate else (),
        batch_norm=bn,
        layers="lenet-mnist",
        image_shape=(1, 32, 32),
        rule=rule,
        activation="relu",
        batch_size=batch,
        lr=0.01,
        momentum=0.9,
        init="glorot",
    )
    trainer = Trainer(config, 1024, 10)
    xs, labels, targets = trainer.prepare(x, y)
    order = np.arange(len(xs))
    trainer.train_rows(xs, labels, targets, order[: 4 * batch])  # compile / warm up
    best = min(_timed(lambda: trainer.train_rows(xs, labels, targets, order)) for _ in range(repeats))
    return len(xs) / best


def torch_rate(rule, batch, x, y, repeats):
    import torch
    import torch.nn.functional as F

    from benchmarks.torch_conv import make_lenet

    rule, rate, bn = with_dropout(rule)
    model, params = make_lenet(rule, dropout=rate, batch_norm=bn)
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    xt, yt = torch.from_numpy(x).reshape(-1, 1, 32, 32), torch.from_numpy(y)

    def epoch(n=None):
        for start in range(0, len(xt) if n is None else n, batch):
            loss = F.cross_entropy(model(xt[start : start + batch]), yt[start : start + batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    epoch(4 * batch)  # warm up, as fastfa_rate does
    return len(xt) / min(_timed(epoch) for _ in range(repeats))


def _timed(func):
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def serve(who):
    """Worker loop: read ``rule batch samples`` lines, answer samples/s."""
    if who == "torch":
        import torch

        torch.set_num_threads(ARGS.threads)
    rate = {"fastfa": fastfa_rate, "torch": torch_rate}[who]
    x_all, y_all, _ = load_images(20000)
    print("ready", flush=True)
    for line in sys.stdin:
        rule, batch, samples = line.split()
        n = int(samples)
        print(rate(rule, int(batch), x_all[:n], y_all[:n], EPOCHS_PER_ASK), flush=True)


def lenet_command(data, batch):
    """``fastfa train DATA --model lenet-mnist`` for one epoch at ``batch``, as a subprocess command."""
    return [
        sys.executable,
        "-m",
        "fastfa",
        "train",
        str(data),
        "--model",
        "lenet-mnist",
        "--activation",
        "relu",
        "--epochs",
        "1",
        "--batch-size",
        str(batch),
        "--quiet",
    ]


def write_images(path, n_train, n_test):
    """The first ``n_train + n_test`` images of :func:`load_images` as a 1x32x32 uint8 dataset file."""
    from fastfa.datasets import write_dataset

    x, y, source = load_images(n_train + n_test)
    images = np.round(x * 255).astype(np.uint8).reshape(-1, 1, 32, 32)
    splits = {"train": (images[:n_train], y[:n_train]), "test": (images[n_train:], y[n_train:])}
    write_dataset(path, splits, name="mnist32", task="classification", n_classes=10, x_scale=1 / 255)
    return source


def startup():
    """Wall time of a one-epoch LeNet run on 2,000 images: cold kernel cache, then warm."""
    import tempfile
    from pathlib import Path

    from benchmarks.timing import cold_and_warm_seconds

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "lenet.h5"
        write_images(data, 2000, 500)
        cold, warm = cold_and_warm_seconds(lenet_command(data, 64))
    print(
        f"fastfa train --model lenet-mnist --epochs 1 (2,000 images): warm cache {warm:.2f} s, "
        f"cold cache {cold:.2f} s (compiling everything a LeNet run needs: about {cold - warm:.1f} s)"
    )


def peak_memory():
    """Peak RSS of ``fastfa train --model lenet-mnist -b 128`` streaming a 55,000-image file."""
    import subprocess
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "mnist32.h5"
        source = write_images(data, 55000, 5000)
        start = time.perf_counter()
        # a fresh parent, so that the peak is this command's alone (not the benchmark workers')
        report = subprocess.run(
            [sys.executable, "-c", PEAK_OF_CHILD, *lenet_command(data, 128)],
            check=True,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - start
    peak = float(report.stdout.split()[-1]) / 1024
    print(
        f"peak RSS of fastfa train --model lenet-mnist -b 128, one epoch over 55,000 images ({source}) "
        f"streamed from an HDF5 file: {peak:.0f} MiB ({seconds:.0f} s)"
    )


def main():
    args = ARGS
    if args.serve:
        serve(args.serve)
        return
    has_torch, note = torch_note(args.no_torch)
    _, _, source = load_images(1)
    gflops = gemm_gflops()
    n = 2048 if args.quick else 8192
    print(f"LeNet-MNIST CPU benchmark: data {source}; {args.threads} threads for every contender")
    print(f"NumPy float32 GEMM 2048x2048: {gflops:.0f} GFLOP/s; {note}")
    print(
        f"LeNet-MNIST (1x32x32, ReLU), SGD momentum 0.9; samples/s, best of {args.repeats} rounds x "
        f"{EPOCHS_PER_ASK} passes over {n} samples"
    )
    print()
    print(
        f"{'rule':<14}{'batch':>6}{'fastfa':>10}{'torch':>10}{'bound':>10}{'fastfa/torch':>14}{'fastfa/bound':>14}"
    )
    names = ["fastfa", "torch"] if has_torch else ["fastfa"]
    pool = Contenders("benchmarks.lenet", names, args.threads)
    try:
        asked = args.rules.split(",")
        if args.dropout:  # each rule plain and with dropout, in turn
            asked = [r for rule in asked for r in (rule, f"{rule}+drop{args.dropout:g}")]
        if args.batch_norm:  # ... and with batch norm
            asked = [r for rule in asked for r in ((rule, f"{rule}+bn") if "+drop" not in rule else (rule,))]
        for batch in (int(b) for b in args.batches.split(",")):
            for rule in asked:
                bound = gflops * 1e9 / flops_per_sample(with_dropout(rule)[0])
                rates = pool.best(names, rule, batch, n, repeats=args.repeats)
                ours, theirs = rates["fastfa"], rates.get("torch")
                torch_rate, ratio = (f"{theirs:>10,.0f}", f"{ours / theirs:>13.2f}x") if theirs else (
                    f"{'-':>10}", f"{'-':>14}")  # fmt: skip
                row = f"{rule:<14}{batch:>6}{ours:>10,.0f}{torch_rate}{bound:>10,.0f}{ratio}"
                print(f"{row}{ours / bound:>13.0%}", flush=True)
    finally:
        pool.close()
    if not args.skip_startup:
        print()
        startup()
        peak_memory()


if __name__ == "__main__":
    main()
