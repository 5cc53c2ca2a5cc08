"""The training engine: one network, one rule, its optimiser state and workspaces.

:class:`Trainer` owns every array a run needs, allocated once; the compiled
kernels fill them in place. Both faces of fastfa -- the command line and the
scikit-learn style estimators -- train through this class.

A run is bitwise repeatable: parameters, feedback and every epoch's shuffle come
from one ``numpy.random.Generator`` seeded with ``config.seed``; per-batch
random draws of the compiled kernels (brsf) come from a counter-based
generator keyed by the seed and the update count.
"""

from __future__ import annotations

import weakref

import numpy as np

from fastfa import compiled_rules, standardize
from fastfa.augment import Augmentation, pad_values
from fastfa.config import TrainConfig
from fastfa.cuda_engine import DeviceRows
from fastfa.kernels import codes, layer_epoch
from fastfa.kernels import cpu as kernels
from fastfa.network import Architecture, LayerNetwork
from fastfa.optim import float_config, learning_rate
from fastfa.rules import DIRECT_SIGNALS, get_rule
from fastfa.threads import kernel_threads
from fastfa.trainer_feedback import FeedbackMatrices
from fastfa.trainer_inference import Inference
from fastfa.trainer_options import (
    check_augmentation,
    check_batch_norm,
    check_mirror_variant,
    keep_probabilities,
)
from fastfa.workspace import Workspace, sparse_marker, with_threads

TASKS = ("classification", "regression")
#: Keeps the noise of the weight mirror's rounds before training apart from its per-batch noise
MIRROR_ROUNDS_STREAM = 0x726F756E6473


class Trainer(FeedbackMatrices, Inference):
    """Train a network (dense, or a layer list with conv and pooling layers) with one learning rule.

    Parameters
    ----------
    config : TrainConfig
    n_inputs, n_outputs : int
        Input width; number of classes (classification) or targets (regression).
    task : {"classification", "regression"}

    Attributes
    ----------
    params : ndarray
        Flat parameter buffer; :attr:`weights` and :attr:`biases` are views.
    feedback : ndarray
        Flat feedback buffer (empty for bp and shallow); :attr:`feedback_matrices`
        gives the paper-orientation views ``B``.
    step, epoch : int
        Updates and epochs done so far.
    """

    def __init__(self, config: TrainConfig, n_inputs, n_outputs, task="classification"):
        if task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
        self.config = config
        self.task = task
        self.rule = get_rule(config.rule)
        self.rule_options = self.rule.resolve_options(config.rule_options)
        classification = task == "classification"
        out_act = config.output_activation or ("softmax" if classification else "identity")
        loss = config.loss or ("cross_entropy" if classification else "squared_error")
        if config.layers:
            self.arch = LayerNetwork(
                config.layers, config.image_shape, n_inputs, n_outputs, config.activation, out_act, loss,
                self.rule.signal,
            )  # fmt: skip
        else:
            self.arch = Architecture((n_inputs, *config.hidden, n_outputs), config.activation, out_act, loss)
        compiled = self.rule.hidden_signal is not None or self.rule.feedback_step is not None
        if compiled and not self.arch.is_dense and self.rule.signal not in DIRECT_SIGNALS:
            raise ValueError(
                f"rule {self.rule.name!r}: compiled plugin code on a layer list needs a direct signal "
                f"({', '.join(DIRECT_SIGNALS)}), not {self.rule.signal!r}: that signal goes down through "
                "transposed convolutions and pooling, which the engine owns"
            )
        if config.augments:
            check_augmentation(config, n_inputs)
        self.dropout = keep_probabilities(config, self.arch)
        check_batch_norm(config, self.arch)
        check_mirror_variant(self.rule, self.rule_options, self.arch)
        self.dtype = np.dtype(config.dtype)
        self.plugin_signal = compiled_rules.compiled_signal(self.rule, self.dtype)
        self.plugin_feedback_step = compiled_rules.compiled_feedback_step(self.rule, self.dtype)
        self.sizes = np.array(self.arch.sizes, dtype=np.int64)
        self.acts = self.arch.codes()
        self.icfg = self._int_config()
        self.rng = np.random.default_rng(config.seed)
        self.params = self.arch.init_params(self.rng, config.init, self.dtype)
        self.feedback, self.magnitude = self._init_feedback()
        if compiled:  # a dry run; with NUMBA_BOUNDSCHECK=1 also of the plugin's indexing
            compiled_rules.check_plugin(self.rule, self.plugin_layers(), self.dtype)
        self.grads = np.zeros_like(self.params)
        self.state = np.zeros((2, self.params.size), dtype=self.dtype)
        self.step = 0
        self.epoch = 0
        self._train_ws = Workspace(self.arch, config.batch_size, self.dtype)
        self._eval_ws = {}
        self.device = "cpu"
        self._cuda = None
        self.standardization = None  # (mean, std) of the training rows' features, float64
        self.class_names = None  # tuple of str, when the dataset names its classes

    def use_device(self, device):
        """Train on ``"cpu"`` or ``"cuda"`` (:mod:`fastfa.cuda_engine`; layer lists with conv and
        pooling layers: :mod:`fastfa.cuda_layers`) from now on.

        Raises ``ValueError`` when CUDA is missing or cannot train this rule and
        configuration. Evaluation and the alignment metrics stay on the CPU.
        """
        if device == "cuda" and self.arch.is_dense:
            from fastfa.cuda_engine import CudaEngine

            self._cuda = CudaEngine(self)
        elif device == "cuda":  # conv, pooling and dense layers
            from fastfa.cuda_layers import CudaLayerEngine

            self._cuda = CudaLayerEngine(self)
        elif device != "cpu":
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        else:
            self._cuda = None
        self.device = device

    def device_description(self):
        """``"cpu"``, or ``"cuda (MODE)"`` with the CUDA engine's way of running the batches."""
        return "cpu" if self._cuda is None else f"cuda ({self._cuda.mode})"

    def __getstate__(self):
        state = self.__dict__.copy()  # workspaces are scratch memory: not pickled
        state["_train_ws"], state["_eval_ws"] = None, {}
        state["device"], state["_cuda"] = "cpu", None  # device buffers stay with the process
        state["_sparse_memo"] = None  # a weak reference to the last rows
        # compiled code: compiled again (or loaded from numba's cache) where unpickled
        state["plugin_signal"] = state["plugin_feedback_step"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._train_ws = Workspace(self.arch, self.config.batch_size, self.dtype)
        self.plugin_signal = compiled_rules.compiled_signal(self.rule, self.dtype)
        self.plugin_feedback_step = compiled_rules.compiled_feedback_step(self.rule, self.dtype)

    # ------------------------------------------------------------------ set-up

    def _int_config(self):
        icfg = np.zeros(codes.N_ICFG, dtype=np.int64)
        icfg[codes.I_SIGNAL] = codes.SIGNALS[self.rule.signal]
        icfg[codes.I_LOSS] = codes.LOSSES[self.arch.loss]
        icfg[codes.I_DYNAMICS] = codes.DYNAMICS[self.rule.dynamics]
        icfg[codes.I_OPTIMIZER] = codes.OPTIMIZERS[self.config.optimizer]
        icfg[codes.I_NESTEROV] = int(self.config.nesterov)
        icfg[codes.I_FIRST_TRAINABLE] = self.arch.n_layers - 1 if self.rule.signal == "none" else 0
        icfg[codes.I_CLASSIFICATION] = int(self.task == "classification")
        icfg[codes.I_SEED] = self.config.seed
        return icfg

    # ------------------------------------------------------------------- views

    def scale_inputs(self, x, dtype=None):
        """``x`` standardised with :attr:`standardization` (``(x - mean) / std`` in ``dtype``), or
        ``x`` as a contiguous ``dtype`` array when the model has none (:mod:`fastfa.standardize`)."""
        dtype = self.dtype if dtype is None else np.dtype(dtype)
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.arch.sizes[0]:
            raise ValueError(f"x must have shape (n, {self.arch.sizes[0]}), got {x.shape}")
        if self.standardization is None:
            return np.ascontiguousarray(x, dtype=dtype)
        return standardize.apply(x, *self.standardization, dtype)

    @property
    def weights(self):
        """Forward weights ``W_l``, shape ``(n_l, n_{l+1})`` (views)."""
        return self.arch.weights(self.params)

    @property
    def biases(self):
        """Biases ``b_l`` (views)."""
        return self.arch.biases(self.params)

    # -------------------------------------------------------------------- data

    def prepare(self, x, y=None):
        """Convert ``x`` (and ``y``) to what the kernels take.

        Returns ``(x, labels, targets)``: labels are int64 class indices for
        classification, targets a float matrix for regression; the unused one
        is empty.
        """
        x = self.scale_inputs(x)
        if not x.flags.writeable:  # read-only arrays would compile a second set of kernels
            x = x.copy()
        labels = np.zeros(0, dtype=np.int64)
        targets = np.zeros((0, self.arch.sizes[-1]), dtype=self.dtype)
        if y is None:
            return x, labels, targets
        y = np.asarray(y)
        if len(y) != len(x):
            raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
        if self.task == "classification":
            labels = np.ascontiguousarray(y, dtype=np.int64).reshape(-1)
            if labels.size != len(x):
                raise ValueError("classification labels must be one integer per row")
            if labels.size and (labels.min() < 0 or labels.max() >= self.arch.sizes[-1]):
                raise ValueError(f"class labels must lie in 0..{self.arch.sizes[-1] - 1}")
        else:
            targets = np.ascontiguousarray(y, dtype=self.dtype).reshape(len(x), -1)
            if targets.shape[1] != self.arch.sizes[-1]:
                raise ValueError(f"y must have {self.arch.sizes[-1]} target columns, got {targets.shape[1]}")
        return x, labels, targets

    # ---------------------------------------------------------------- training

    def learning_rate(self, epoch=None):
        """Learning rate the schedule gives for ``epoch`` (default: the next one)."""
        c = self.config
        epoch = self.epoch if epoch is None else epoch
        return learning_rate(
            c.schedule, c.lr, epoch, epochs=c.epochs, step_size=c.step_size, gamma=c.gamma,
            lr_min=c.lr_min, milestones=c.milestones,
        )  # fmt: skip

    def _fcfg(self):
        c = self.config
        return float_config(
            lr=self.learning_rate(),
            momentum=c.momentum,
            weight_decay=c.weight_decay,
            beta1=c.beta1,
            beta2=c.beta2,
            epsilon=c.epsilon,
            mirror=(
                *(
                    float(self.rule_options.get(k, 0.0))
                    for k in ("mirror_lr", "mirror_decay", "mirror_noise")
                ),
                1.0 if self.rule_options.get("mirror_response") == "activation" else 0.0,
            ),
        )

    def epoch_order(self, n):
        """Row order of the next epoch: a fresh permutation, or ``arange`` without shuffling."""
        return self.rng.permutation(n) if self.config.shuffle else np.arange(n)

    def train_epoch(self, x, y):
        """One pass over ``(x, y)`` in shuffled batches. Returns mean loss and error rate.

        The whole epoch runs in compiled code unless the rule has a Python
        ``after_batch`` hook, in which case the same compiled step is called
        batch by batch. For several epochs over the same data, :meth:`training_rows`
        once and :meth:`train_epoch_on` each epoch skip the repeated conversion (and, on
        cuda, the repeated copy to the device).
        """
        return self.train_epoch_on(self.training_rows(x, y))

    def training_rows(self, x, y):
        """``(x, y)`` as :meth:`train_epoch_on` takes them: :meth:`prepare` d, and on cuda
        copied to the device once (:class:`~fastfa.cuda_engine.DeviceRows`)."""
        rows = self.prepare(x, y)
        # each epoch's order is gathered on the device; augmented rows change every epoch instead
        if self._cuda is not None and len(rows[0]) and not self.config.augments:
            rows = self._cuda.stage(*rows)
        return rows

    def train_epoch_on(self, rows):
        """:meth:`train_epoch` on rows from :meth:`training_rows` (made with the device in use)."""
        x, labels, targets = rows
        loss, errors = self.train_rows(x, labels, targets, self.epoch_order(len(x)))
        self.epoch += 1
        n = max(len(x), 1)
        return loss / n, errors / n

    def read_chunk(self, split, start, stop):
        """Rows ``start:stop`` of a dataset split, prepared for :meth:`train_rows`.

        On the CPU this reads and :meth:`prepare` s them. On cuda the rows come as
        :class:`~fastfa.cuda_engine.DeviceRows`, read from the split and copied only when the
        device does not hold them from an earlier epoch (:meth:`CudaEngine.chunk
        <fastfa.cuda_engine.CudaEngine.chunk>`).
        """

        def read():
            return self.prepare(*split.read(start, stop, dtype=self.dtype))

        if self._cuda is None or self.config.augments:  # augmented rows change every epoch
            return read()
        return self._cuda.chunk(split, start, stop, read)

    def train_rows(self, x, labels, targets, order):
        """Train on ``x[order]`` (prepared arrays) without ending the epoch.

        For data that arrive in chunks: call once per chunk, then count the
        epoch. Returns the summed loss and error count.
        """
        if isinstance(x, DeviceRows) and self._cuda is None:
            raise ValueError("these rows are on the GPU but the trainer now uses the cpu; make them again")
        batch = self.config.batch_size
        if self.config.augments:
            x, labels, targets, order = self._augmented(x, labels, targets, order)
        sparse = None if self._cuda is not None else self._sparse_marker(x)
        if self.rule.after_batch is None:
            return self._train_batches(x, labels, targets, order, batch, sparse)
        loss, errors = 0.0, 0
        for start in range(0, len(order), batch):
            rows = order[start : start + batch]
            batch_loss, batch_errors = self._train_batches(x, labels, targets, rows, batch, sparse)
            loss, errors = loss + batch_loss, errors + batch_errors
            self.rule.after_batch(self)
        return loss, errors

    def _augmented(self, x, labels, targets, order):
        """The rows of ``order`` in that order, each training image cropped and flipped by the
        draws of the batch it falls in (:mod:`fastfa.augment`), and the order that walks them."""
        if isinstance(x, DeviceRows):
            raise ValueError("augmented training rows must come from the host (Trainer.training_rows)")
        augmentation = Augmentation(
            self.config.image_shape, self.config.crop_padding, self.config.flip, pad_values(self)
        )
        rows = augmentation.apply(x[order], self.step + 1, self.config.batch_size, self.config.seed)
        labels = labels[order] if labels.size else labels
        targets = targets[order] if targets.size else targets
        return rows, labels, targets, np.arange(len(order))

    def _mirror_rounds(self, rounds):
        """Weight-mirror rounds before the first update (``mirror_rounds``, as Akrout et al.'s code
        mirrors before training): each feeds a batch of noise through every layer and lets the
        feedback learn from it, the noise keyed by ``(seed ^ MIRROR_ROUNDS_STREAM, round)``."""
        ws = self._train_ws
        seed = int(self.config.seed) ^ MIRROR_ROUNDS_STREAM
        with kernel_threads() as threads:
            for k in range(1, rounds + 1):
                kernels.mirror_feedback(
                    self.params, self.feedback, self.sizes, self.acts, self._fcfg(), seed, k,
                    self.config.batch_size, ws.hidden, ws.deltas, threads,
                )  # fmt: skip

    def optional_buffers(self):
        """``(magnitude, learning, grads)`` as the epoch kernels take them: None where this run
        cannot use them, so that numba compiles only the paths it takes (docs/engine.md, "The first
        run"). ``magnitude`` (``|B0|``) serves sign-concordant feedback, ``learning`` (the feedback
        again) feedback that learns (kp, wm), ``grads`` every step but the dense engine's fused SGD.
        """
        magnitude = self.magnitude if self.magnitude.size else None
        learning = self.feedback if self.rule.dynamics in ("kolen-pollack", "mirror") else None
        fused = self.arch.is_dense and kernels.uses_fused_sgd(self.icfg, self._fcfg())
        return magnitude, learning, None if fused else self.grads

    def _sparse_marker(self, x):
        """:func:`~fastfa.workspace.sparse_marker` of ``x``, remembered for the same array: the
        epoch loop of a file hands each chunk over in slices (:func:`fastfa.fitting.train_epoch`),
        and the marker reads all of the chunk."""
        memo = self.__dict__.get("_sparse_memo")
        if memo is not None and memo[0]() is x:
            return memo[1]
        marker = sparse_marker(x)
        self._sparse_memo = (weakref.ref(x), marker)
        return marker

    def _train_batches(self, x, labels, targets, order, batch, sparse):
        """The compiled loop over the batches of ``order``; advances :attr:`step`. ``sparse``: the
        rows' :func:`~fastfa.workspace.sparse_marker`."""
        if self._cuda is not None:
            loss, errors = self._cuda.train_rows(x, labels, targets, order, batch)
            self.step += -(-len(order) // batch)
            return loss, errors
        ws = self._train_ws
        magnitude, learning, grads = self.optional_buffers()
        if self.step == 0 and self.rule_options.get("mirror_rounds", 0):
            self._mirror_rounds(int(self.rule_options["mirror_rounds"]))
        if not self.arch.is_dense:
            with kernel_threads() as threads:
                loss, errors = layer_epoch.train_epoch_layers(
                    x, labels, targets, order, batch, self.params, self.feedback, magnitude, learning,
                    self.grads, self.state, self.arch.table.ltab, with_threads(self.icfg, threads),
                    self._fcfg(), self.plugin_signal, self.plugin_feedback_step, self.dropout,
                    ws.norm(self.arch, True), *ws.layer_buffers(sparse), ws.x, ws.t, self.step,
                )  # fmt: skip
            self.step += -(-len(order) // batch)
            return loss, errors
        with kernel_threads() as threads:
            loss, errors = kernels.train_epoch(
                x, labels, targets, order, batch, self.params, self.feedback, magnitude, learning, grads,
                sparse, self.plugin_signal, self.plugin_feedback_step, self.dropout, self.state, self.sizes,
                self.acts, with_threads(self.icfg, threads), self._fcfg(), ws.hidden, ws.deltas, ws.x, ws.t,
                ws.decayed, self.step,
            )  # fmt: skip
        self.step += -(-len(order) // batch)
        return loss, errors

    # ------------------------------------------------------------------ state

    def state_dict(self):
        """Everything needed to continue this run bit for bit (arrays are copies)."""
        return {
            "config": self.config.to_json(),
            "task": self.task,
            "sizes": self.sizes.copy(),
            "params": self.params.copy(),
            "feedback": self.feedback.copy(),
            "magnitude": self.magnitude.copy(),
            "optimizer_state": self.state.copy(),
            "step": self.step,
            "epoch": self.epoch,
            "rng_state": self.rng.bit_generator.state,
        }
