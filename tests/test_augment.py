"""Training-time augmentation (fastfa.augment): random crops with zero padding and horizontal flips,
seeded per batch, exact on resume and when streaming, never at evaluation."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from fastfa.augment import Augmentation
from fastfa.config import TrainConfig
from fastfa.train import Trainer
from tests.test_cli import cli, ok
from tests.test_cli_data import assert_one_line_error

SHAPE = (2, 5, 4)


def naive_augment(image, dy, dx, flipped, padding, pad_value=0.0):
    """One ``(C, H, W)`` image padded, cropped at ``(dy, dx)`` and maybe mirrored, by loops."""
    c, h, w = image.shape
    out = np.empty_like(image)
    for k in range(c):
        for i in range(h):
            for j in range(w):
                jj = (w - 1 - j) if flipped else j
                r, s = i + dy - padding, jj + dx - padding
                inside = 0 <= r < h and 0 <= s < w
                out[k, i, j] = image[k, r, s] if inside else pad_value[k] if np.ndim(pad_value) else pad_value
    return out


@pytest.mark.parametrize("padding, flip", [(0, False), (2, False), (0, True), (3, True)])
def test_crops_and_flips_match_a_naive_reference(padding, flip):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(11, int(np.prod(SHAPE))))
    aug = Augmentation(SHAPE, padding, flip, pad_values=[0.5, -1.0])
    out = aug.apply(x, first_step=7, batch=4, seed=3)
    dy, dx, flipped = aug.offsets(11, 7, 4, 3)
    assert flipped.any() == flip and (dy.max() <= 2 * padding)
    for i in range(11):
        want = naive_augment(x[i].reshape(SHAPE), dy[i], dx[i], flipped[i], padding, np.array([0.5, -1.0]))
        np.testing.assert_array_equal(out[i].reshape(SHAPE), want)
    if not padding and not flip:
        np.testing.assert_array_equal(out, x)  # nothing to do: the identity


def test_draws_depend_on_the_seed_and_the_batch_only():
    aug = Augmentation(SHAPE, 2, True)
    a = aug.offsets(12, first_step=5, batch=4, seed=1)
    # the same batches met in two calls (rows 4.. start with batch 6) draw the same
    b = aug.offsets(8, first_step=6, batch=4, seed=1)
    for whole, part in zip(a, b, strict=True):
        np.testing.assert_array_equal(whole[4:], part)
    other = aug.offsets(12, first_step=5, batch=4, seed=2)
    assert any(not np.array_equal(u, v) for u, v in zip(a, other, strict=True))


def test_a_trainer_augments_training_rows_and_not_evaluation(rng):
    x, y = rng.uniform(0, 1, (16, 40)), rng.integers(0, 3, 16)
    common = dict(hidden=(6,), image_shape=(1, 5, 8), batch_size=4, seed=2, dtype="float64")
    plain = Trainer(TrainConfig(**common), 40, 3)
    augmented = Trainer(TrainConfig(**common, crop_padding=2, flip=True), 40, 3)
    np.testing.assert_array_equal(plain.params, augmented.params)
    assert plain.evaluate(x, y) == augmented.evaluate(x, y)  # evaluation sees the images as they are
    np.testing.assert_array_equal(plain.gradients(x, y), augmented.gradients(x, y))
    plain.train_epoch(x, y)
    augmented.train_epoch(x, y)
    assert not np.array_equal(plain.params, augmented.params)  # training saw other images
    for field, value in (("image_shape", ()), ("image_shape", (1, 5, 9))):
        with pytest.raises(ValueError, match="image shape|no image shape"):
            Trainer(TrainConfig(**{**common, field: value}, flip=True), 40, 3)
    with pytest.raises(ValueError, match="crop padding must be a whole number of pixels >= 0"):
        TrainConfig(crop_padding=-1)


def digits_run(tmp_path, name, *extra):
    out = tmp_path / name
    args = ("train", "--image-shape", "1x8x8", "--hidden", "16", "--crop-padding", "2", "--flip", "-q")
    ok(cli(*args, "-o", out, "--overwrite", *extra))
    with h5py.File(out, "r") as f:
        return {k: f[f"model/{k}"][()] for k in ("W0", "W1", "b0", "b1")}


def test_augmented_runs_resume_and_stream_bit_for_bit(tmp_path):
    """Two epochs in one go against one then a resumed second, and streaming small chunks from the
    file against reading them into memory: the same weights to the bit (the draws follow the
    update count)."""
    whole = digits_run(tmp_path, "whole.h5", "--epochs", "2", "--in-memory")
    digits_run(tmp_path, "part.h5", "--epochs", "1", "--in-memory")
    ok(cli("train", "--resume", "-o", tmp_path / "part.h5", "--epochs", "2", "-q", "--in-memory"))
    with h5py.File(tmp_path / "part.h5", "r") as f:
        resumed = {k: f[f"model/{k}"][()] for k in whole}
    streamed = digits_run(tmp_path, "streamed.h5", "--epochs", "2", "--chunk-rows", "96")
    in_memory = digits_run(tmp_path, "memory.h5", "--epochs", "2", "--chunk-rows", "96", "--in-memory")
    plain = digits_run(tmp_path, "plain.h5", "--epochs", "2", "--crop-padding", "0", "--no-flip")
    for key in whole:
        np.testing.assert_array_equal(resumed[key], whole[key])
        np.testing.assert_array_equal(streamed[key], in_memory[key])
    assert not np.array_equal(plain["W0"], whole["W0"])


def test_augmentation_without_images_is_one_line(tmp_path):
    result = cli("train", "--hidden", "8", "--epochs", "1", "--flip", "-o", tmp_path / "r.h5")
    assert_one_line_error(result, "no image shape")
    assert_one_line_error(cli("train", "--crop-padding", "-2", "-o", tmp_path / "r.h5"), "crop padding")
    assert not (tmp_path / "r.h5").exists()


@pytest.mark.cuda
def test_augmented_training_on_cuda_matches_the_cpu(rng):
    from fastfa.kernels import cuda as cuda_kernels
    from tests.conftest import assert_close

    if not cuda_kernels.available():
        pytest.skip("no CUDA GPU or simulator")
    x, y = rng.uniform(0, 1, (10, 20)).astype(np.float32), rng.integers(0, 3, 10)
    config = TrainConfig(hidden=(6,), image_shape=(1, 4, 5), batch_size=4, crop_padding=1, flip=True)
    cpu_trainer, cuda_trainer = Trainer(config, 20, 3), Trainer(config, 20, 3)
    cuda_trainer.use_device("cuda")
    for trainer in (cpu_trainer, cuda_trainer):
        trainer.train_epoch_on(trainer.training_rows(x, y))
    assert_close(cuda_trainer.params, cpu_trainer.params.astype(np.float64), "float32")
