"""The experiments ``fastfa reproduce`` reruns: settings, published numbers, and what must hold.

Each :class:`Experiment` names its rules, networks and training settings, the
published numbers it is compared with, and its *checks*: the paper's claims as
inequalities on the measured results. ``quick`` settings are small variants that
finish in seconds and check only the direction of each result.

Sources
-------
Liao, Leibo, Poggio (2016). How important is weight symmetry in backpropagation? AAAI.
Lillicrap, Cownden, Tweed, Akerman (2016). Random synaptic feedback weights support error
backpropagation for deep learning. Nature Communications 7, 13276. (arXiv:1411.0247.)
Nøkland (2016). Direct feedback alignment provides learning in deep neural networks. NeurIPS.
Sanfiz and Akrout (2021). Benchmarking the accuracy and robustness of feedback alignment
algorithms. arXiv:2108.13446; BioTorch, github.com/jsalbert/biotorch, Benchmarks.md and
benchmark_configs/ (settings and numbers gathered in ../shared/reference/convnet-benchmarks.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

NOT_PUBLISHED = "not published"


@dataclass(frozen=True)
class Experiment:
    """One reproducible result.

    Attributes
    ----------
    name, title, reference : str
    data : str
        ``"teacher-linear"``, ``"teacher-nonlinear"`` (generated) or ``"mnist"`` (given).
    rules : tuple of str
    nets : dict
        Label -> hidden layer sizes, or a layer list or preset name (:mod:`fastfa.layers`) for a
        network with convolutions, or a dict of TrainConfig settings with ``layers`` (a network
        trained a particular way: with batch norm, another optimiser); one entry when the
        experiment has one network.
    base : dict
        TrainConfig settings shared by every run (the epochs and milestones apart).
    rule_options : dict
        Rule -> its options (e.g. the scale of fa's feedback matrices).
    rule_settings : dict
        Rule, or ``(net label, rule)``, -> TrainConfig settings that replace ``base``'s and the
        network's for that rule in a full run (e.g. a learning rate chosen per rule on validation
        rows); ``--quick`` keeps ``base``'s.
    metric : str
        ``"nse"`` (normalised squared error on the test split) or ``"test_error"``.
    epochs : int
        Epochs of a full run.
    milestones : tuple of float
        Fractions of the epochs after which the ``multistep`` schedule divides the rate
        (``(0.5, 0.75)``: epochs 50 and 75 of 100, 10 and 15 of 20), so that ``--epochs`` and
        ``--quick`` keep the schedule's proportions.
    images : tuple of int
        ``(C, H, W)`` of the inputs the networks need, ``()`` for flat rows; a flat MNIST file is
        padded to it (:func:`fastfa.reproduce.runner.prepare_data`).
    published : dict
        ``(net label, rule)`` -> the published number, as text.
    seeds : int
        Seeds per rule and network in a full run.
    data_rows : tuple
        ``(train, test)`` rows of a generated dataset.
    quick : dict
        Overrides for ``--quick``: ``seeds``, ``epochs``, ``data_rows``, ``base``.
    aliases : dict
        Labels in ``rules`` that run another rule under other options (``{"wm-akrout": "wm"}``):
        the label names the runs and the rows of the results, the rule trains them.
    """

    name: str
    title: str
    reference: str
    data: str
    rules: tuple
    nets: dict
    base: dict
    metric: str
    epochs: int
    published: dict = field(default_factory=dict)
    rule_options: dict = field(default_factory=dict)
    rule_settings: dict = field(default_factory=dict)
    seeds: int = 3
    data_rows: tuple = (0, 0)
    quick: dict = field(default_factory=dict)
    note: str = ""
    milestones: tuple = ()
    images: tuple = ()
    aliases: dict = field(default_factory=dict)


LINEAR_B = {"feedback_init": 0.5}  # B ~ U[-0.5, 0.5] (Lillicrap et al.'s linear and nonlinear tasks)
#: D_l ~ U[-0.2, 0.2] in every hidden layer, whatever its width, so the signal e D_l has the same
#: size in each; 0.2 was chosen on validation rows (benchmarks/nokland_dfa_scale.toml, see nokland-depth)
DFA_D = {"feedback_init": 0.2}

#: What the conv experiments on MNIST share: ReLU, glorot, momentum 0.9, batch 64, the rate divided by
#: 10 at the milestones, 10% of the training rows held out to select the model on
CONV_MNIST_BASE = dict(
    activation="relu", init="glorot", momentum=0.9, batch_size=64, schedule="multistep", gamma=0.1,
    valid_fraction=0.1,
)  # fmt: skip

#: BioTorch's LeNet MNIST test errors in percent (Benchmarks.md; 100 epochs, selected on the reported data)
BIOTORCH_LENET_MNIST = {"bp": 0.91, "fa": 1.7, "dfa": 1.61, "usf": 0.94, "brsf": 0.91, "frsf": 0.97}
#: The initial rate of each rule in biotorch-lenet-mnist, chosen on validation rows (8-epoch pilots,
#: benchmarks/lenet_lr.toml and benchmarks/select_lr.py; see LENET_NOTE)
LENET_LRS = {"bp": 0.1, "fa": 0.01, "dfa": 0.003, "usf": 0.1, "brsf": 0.03, "frsf": 0.03}
LENET_NOTE = (
    "BioTorch's settings: ReLU, Xavier-uniform (glorot) W and B, zero biases, SGD momentum 0.9, weight "
    "decay 1e-3 (on weights; PyTorch also decays biases), batch 64, the rate divided by 10 at 1/2 and 3/4 "
    "of the epochs; MNIST zero-padded to 1x32x32 (two pixels each side). BioTorch does not state its "
    "MNIST learning rates (its CIFAR-10 LeNet SGD configs use 1e-3, dfa 1e-4), so each rule's initial "
    "rate was chosen on validation rows: 8-epoch pilots (seed 0, milestones 4 and 6, 10% of the training "
    "rows held out) at 1e-3, 3e-3, 0.01, 0.03 and 0.1 (benchmarks/lenet_lr.toml, python -m "
    "benchmarks.select_lr) chose bp 0.1, fa 0.01, dfa 3e-3, usf 0.1, brsf 0.03, frsf 0.03, the rate with "
    "the lowest best-validation error; fa diverged at 0.1 and dfa at 0.03 and 0.1. bp's and usf's choice "
    "is the largest rate tried (their pilots at 0.03 were 0.09 and 0.29 points behind). The test split "
    "played no part. 20 epochs (milestones 10 and 15) instead of BioTorch's 100 (50 and 75), to fit a "
    "two-core machine: one epoch of one rule takes about 15 CPU-seconds, so the 18 runs take about 1.5 "
    "CPU-hours at 20 epochs and 7.5 at 100; `--epochs 100` gives theirs, the milestones scale with it. "
    "Selection: 10% of the 60k training rows (drawn from the seed) are held out, the best-validation "
    "epoch's model is kept and the 10k test split is evaluated once, for it; BioTorch selects on the 10k "
    "rows it reports, so its numbers are optimistic. `--quick`: 1 seed, 2 epochs (milestones 1 and 2), "
    "the first 6,000 training and 2,000 test rows, rate 5e-3 for every rule (at 1e-3 only bp moves off "
    "chance in 2 epochs; at 0.01 dfa diverges in epoch 2). Convergence (full run of 2026-12-01): between "
    "the last milestone (epoch 15) and the end the mean validation error of every rule moved by at most "
    "0.19 points (fa's rose by 0.07), and the selected epochs lie between 11 and 20. "
    "An earlier full run with 1e-3 for every rule had not converged at 20 epochs (test errors bp 1.52%, "
    "fa 6.73%, dfa 4.53%, usf 2.67%, brsf 2.64%, frsf 2.20%; bp's training error was still 1.4%)."
)

#: BioTorch's LeNet CIFAR-10 SGD test errors in percent (Benchmarks.md; 250 epochs, best-validation model)
BIOTORCH_LENET_CIFAR10 = {"bp": 14.23, "fa": 46.69, "dfa": 54.21, "usf": 16.22, "brsf": 16.02, "frsf": 16.86}
LENET_CIFAR_NOTE = (
    "BioTorch's LeNet CIFAR-10 SGD configs: conv 3->32 3x3, max-pool 2, conv 32->64 3x3, max-pool 2, "
    "conv 64->128 3x3, global average pool, dense 256 (the lenet-cifar preset), ReLU, Xavier-uniform "
    "(glorot) W and B, SGD momentum 0.9, weight decay 1e-4, batch 128, lr 1e-3 (dfa 1e-4), 250 epochs "
    "with the rate divided by 10 at epochs 100, 150 and 200; training images randomly cropped from a "
    "4-pixel zero padding and flipped left to right, every channel standardised with the training rows' "
    "statistics (BioTorch normalises with CIFAR-10's channel means and deviations). BioTorch holds out 5k "
    "of the 50k training images and reports its best-validation model on the 10k test images; here 10% "
    "of the training rows (drawn from the seed) are held out and the test split is evaluated once, for "
    "the best-validation epoch. Defined for users who have CIFAR-10 (`fastfa data cifar10 "
    "cifar-10-python.tar.gz -o cifar10.h5`): the full run (18 runs of 250 epochs) is days of CPU time "
    "and was not run here. `--quick` (1 seed, 2 epochs, the first 512 training and 256 test rows, rate "
    "0.01) only checks that every rule runs end to end and gives a finite test error, as CI does on a "
    "synthetic CIFAR-shaped file."
)

#: Akrout et al.'s NumPy code (makrout/Deep-Learning-without-Weight-Transport, experiments/*/results.json,
#: one run, seed 1111, 400 epochs): final test error in percent, and the last layer's B-vs-W^T angle
AKROUT_MNIST = {"bp": 1.50, "fa": 2.20, "kp": 1.55, "wm": 1.51}
AKROUT_CIFAR10 = {"bp": 51.82, "fa": 57.04, "kp": 52.43, "wm": 53.80}
AKROUT_ANGLES = {"mnist": {"fa": 40.0, "kp": 3.6, "wm": 3.8}, "cifar10": {"fa": 46.5, "kp": 2.0, "wm": 9.7}}
#: Their settings: logistic hidden and output units with cross-entropy, batch 128, plain SGD on the batch
#: mean, no momentum, no weight decay, the rows in the same order every epoch
AKROUT_BASE = dict(
    activation="logistic", output_activation="logistic", loss="cross_entropy", init="glorot", optimizer="sgd",
    momentum=0.0, batch_size=128, shuffle=False, standardize="off",
)  # fmt: skip
AKROUT_LRS = {"bp": 0.2, "fa": 0.2, "kp": 0.3, "wm": 0.05, "wm-akrout": 0.05}
AKROUT_REFERENCE = (
    "Akrout et al. 2019, NeurIPS 32; their code, makrout/Deep-Learning-without-Weight-Transport"
)
#: Their weight mirror in fastfa's terms: noise U[-0.05, 0.05] (amplitude 0.1, standard deviation
#: 0.05 / sqrt(3)), B += 0.01 xi^T y summed over a 128-row noise batch (0.01 * 128 on fastfa's batch mean),
#: no decay
AKROUT_WM = {"mirror_noise": 0.05 / 3**0.5, "mirror_lr": 1.28, "mirror_decay": 0.0}
#: ... and with their response through the layer above's bias and sigmoid, and their mirror rounds
#: before training (N / 128 of MNIST's 60,000 rows)
AKROUT_WM_VARIANT = {**AKROUT_WM, "mirror_response": "activation", "mirror_rounds": 468}
AKROUT_NOTE = (
    "The authors' NumPy code (makrout/Deep-Learning-without-Weight-Transport; fcnn/*.py, experiments/*): "
    "one hidden layer of logistic (sigmoid) units, sigmoid outputs with cross-entropy, W, b and B drawn "
    "N(0, 1/(n_in + n_out)) (here glorot: uniform, variance 2/(n_in + n_out)), batch 128 in the same order "
    "every epoch (no shuffling; they drop the last partial batch, kept here), plain SGD on the batch mean "
    "with lr bp 0.2, fa 0.2, kp 0.3, wm 0.05, no momentum, no weight decay, 400 epochs, one seed (1111); "
    "they report the last epoch's test accuracy (and the best). kp there: W and B receive the same update "
    "and no decay, which is fastfa's kp with weight decay 0. wm there: before training N/128 mirror "
    "rounds, then one after every batch, each feeding uniform noise of amplitude 0.1 into every layer and "
    "adding 0.01 xi^T sigmoid(W xi + b) to B, without decay. Two wm rows here: `wm` is fastfa's weight "
    "mirror with the authors' noise, rate and no decay (mirror_noise 0.0289, mirror_lr 1.28 on the batch "
    "mean, mirror_decay 0) and its own linear response y = xi W, no rounds before training; `wm-akrout` "
    "is the same rule with the authors' variant on top: the response through the layer above's bias and "
    "sigmoid (mirror_response=activation) and 468 mirror rounds before training (mirror_rounds, N/128 "
    "of MNIST's 60,000 rows). The sigmoid response scales each column of the mean step by sigma'(b_j) "
    "and adds noise. Nothing "
    "is selected (the last epoch's test error is reported), so no validation rows are held out. Angles: "
    "fastfa's feedback angle of the hidden layer is the last layer's B against W^T; its update angle "
    "compares the hidden layer's update with bp's (the authors compare the deltas). `--quick`: 1 seed, 3 "
    "epochs, the first 10,000 training and 2,000 test rows, rate 1.0 for every rule (at the authors' rates "
    "3 epochs barely move the angles; at 1.0 kp and wm reached 23 and 25 degrees against fa's 51 when it "
    "was set up)."
)


def akrout_experiment(data, title, n_in, n_hidden, published, quick, note=""):
    """``akrout-<data>``: bp, fa, kp and wm on ``n_in``-``n_hidden``-10 with Akrout et al.'s settings."""
    net = f"{n_in}-{n_hidden}-10"
    return Experiment(
        name=f"akrout-{data}",
        title=f"{title} {net} logistic: bp, fa, kp and wm with Akrout et al.'s settings",
        reference=AKROUT_REFERENCE,
        data=data,
        rules=("bp", "fa", "kp", "wm", "wm-akrout"),
        aliases={"wm-akrout": "wm"},
        nets={net: (n_hidden,)},
        base=AKROUT_BASE,
        epochs=400,
        metric="test_error",
        published={
            (net, rule): f"{value:.2f}%"
            for rule, value in {**published, "wm-akrout": published["wm"]}.items()
        },
        seeds=3,
        rule_options={"wm": AKROUT_WM, "wm-akrout": AKROUT_WM_VARIANT},
        rule_settings={rule: {"lr": lr} for rule, lr in AKROUT_LRS.items()},
        quick=dict(seeds=1, base=dict(lr=1.0), **quick),
        note=AKROUT_NOTE + note,
    )


#: Liao et al.'s comparison on MNIST: a plain ReLU network six conv layers deep (3x3, padding 1, two
#: max-pools, global average pooling), trained four ways
LIAO_LAYERS = (
    "conv:4:3:1:1,conv:4:3:1:1,maxpool:2,conv:8:3:1:1,conv:8:3:1:1,maxpool:2,conv:16:3:1:1,conv:16:3:1:1,gap"
)
LIAO_SGD = {"optimizer": "sgd", "lr": 0.05}  # the rates of --quick; full runs: LIAO_LRS
LIAO_MANHATTAN = {"optimizer": "manhattan", "lr": 3e-4}
#: Each variant's and rule's initial rate, chosen on validation rows by 2-epoch pilots
#: (benchmarks/liao_lr_sgd.toml, benchmarks/liao_lr_manhattan.toml; python -m benchmarks.select_lr)
LIAO_LRS = {
    "sgd": {"bp": 0.03, "usf": 0.3, "frsf": 0.1, "brsf": 0.03},
    "bn": {"bp": 0.3, "usf": 0.3, "frsf": 0.3, "brsf": 0.3},
    "manhattan": {"bp": 1e-3, "usf": 3e-4, "frsf": 3e-4, "brsf": 3e-4},
    "bn+manhattan": {"bp": 3e-3, "usf": 1e-3, "frsf": 1e-3, "brsf": 1e-3},
}
LIAO_VARIANTS = {
    "sgd": {"layers": LIAO_LAYERS, **LIAO_SGD},
    "bn": {"layers": LIAO_LAYERS, "batch_norm": True, **LIAO_SGD},
    "manhattan": {"layers": LIAO_LAYERS, **LIAO_MANHATTAN},
    "bn+manhattan": {"layers": LIAO_LAYERS, "batch_norm": True, **LIAO_MANHATTAN},
}
LIAO_NOTE = (
    "Liao, Leibo and Poggio (2016) report that asymmetric, sign-concordant feedback trains deep "
    "convolutional networks only with batch normalisation and/or Batch Manhattan updates, and then comes "
    "close to bp. Network here (not theirs: chosen to be deep yet trainable on two CPU cores): six 3x3 "
    "convolutions with padding 1 (4, 4, 8, 8, 16, 16 channels), max-pools after the second and fourth, "
    "global average pooling, the dense output; ReLU, glorot W and B, on 1x28x28 MNIST (`fastfa data mnist"
    " --images`). Four ways to train it, for bp, usf, frsf and brsf alike: `sgd` (SGD, momentum 0.9), "
    "`bn` (the same with batch norm on every conv layer's pre-activation, +bn), `manhattan` (Batch "
    "Manhattan: each parameter moves by lr times its momentum-averaged gradient sign, momentum 0.9) and "
    "`bn+manhattan`. Batch 64, weight decay 1e-4 on the weights, the rate divided by 10 at 1/2 and 3/4 of"
    " the epochs; 10% of the training rows (drawn from the seed) held out, the best-validation epoch's "
    "model kept and the 10k test split evaluated once, for it. Each variant's and rule's initial rate was"
    " chosen on validation rows: 2-epoch pilots (seed 0, the rate divided by 10 after the first epoch) at"
    " 0.01, 0.03, 0.1 and 0.3 (SGD) and 1e-4, 3e-4, 1e-3 and 3e-3 (Batch Manhattan), with and without "
    "batch norm (benchmarks/liao_lr_sgd.toml, benchmarks/liao_lr_manhattan.toml; python -m "
    "benchmarks.select_lr), the rate with the lowest validation error: sgd bp 0.03, usf 0.3, frsf 0.1, "
    "brsf 0.03; bn 0.3 for every rule; manhattan bp 1e-3, usf, frsf and brsf 3e-4; bn+manhattan bp 3e-3, "
    "usf, frsf and brsf 1e-3. Six choices are the largest rate tried (bn's four, sgd's usf, "
    "bn+manhattan's bp), 0.07 to 0.50 points of validation error ahead of the next rate down; bp without "
    "batch norm diverged at 0.3, and without batch norm the sign-concordant rules' Batch Manhattan runs "
    "at 1e-3 and 3e-3 ended at 41-89% validation error (frsf diverged at 3e-3). The test split played no "
    "part. `--quick`: 1 seed, 2 epochs, the first 3,000 training and 1,000 test rows, one rate per "
    "optimiser (SGD 0.05, Batch Manhattan 3e-4, chosen when the experiment was set up from the quick "
    "runs' errors); it checks that all 16 runs finish and that with batch norm every rule is ahead of "
    "plain SGD after 2 epochs (the full run asks for more: see the claims)."
)

EXPERIMENTS = {
    e.name: e
    for e in (
        Experiment(
            name="lillicrap-linear",
            title="A linear 30-20-10 network learning a random linear map (Lillicrap et al. Fig. 2a)",
            reference="Lillicrap et al. 2016, Nat. Commun. 7:13276, Fig. 2a-b",
            data="teacher-linear",
            rules=("bp", "fa", "shallow"),
            nets={"30-20-10": (20,)},
            base=dict(
                activation="identity",
                init=0.01,
                lr=2e-4,
                momentum=0.0,
                batch_size=1,
                standardize="off",
            ),
            epochs=100,
            rule_options={"fa": LINEAR_B},
            metric="nse",
            seeds=5,
            data_rows=(200, 1000),
            quick=dict(seeds=1),
            note="x ~ N(0, I), W ~ U[-0.01, 0.01], B ~ U[-0.5, 0.5]; online SGD, 200 training points "
            "shown 100 times (20,000 examples); NSE on 1,000 held-out points. The paper gives "
            "curves, not a final number.",
        ),
        Experiment(
            name="lillicrap-nonlinear",
            title="tanh students 30-20-10 and 30-20-10-10 on a 30-20-10-10 teacher (Lillicrap et al.)",
            reference="Lillicrap et al. 2016, Nat. Commun. 7:13276, Fig. 3",
            data="teacher-nonlinear",
            rules=("bp", "fa"),
            nets={"30-20-10": (20,), "30-20-10-10": (20, 10)},
            base=dict(activation="tanh", lr=5e-3, momentum=0.0, batch_size=1, standardize="off"),
            epochs=100,
            rule_options={"fa": LINEAR_B},
            metric="nse",
            seeds=10,
            data_rows=(5000, 2000),
            quick=dict(seeds=2),
            published={},
            note="Published finding: the 4-layer student ends with a lower error than the 3-layer one, "
            "for bp and for fa (curves, no final numbers).",
        ),
        Experiment(
            name="lillicrap-mnist",
            title="MNIST 784-1000-10 tanh (Lillicrap et al.)",
            reference="Lillicrap et al. 2016, Nat. Commun. 7:13276, Fig. 2c-d",
            data="mnist",
            rules=("bp", "fa", "shallow"),
            nets={"784-1000-10": (1000,)},
            base=dict(activation="tanh", lr=0.05, momentum=0.9, batch_size=32, schedule="cosine"),
            epochs=20,
            metric="test_error",
            published={
                ("784-1000-10", "bp"): "2.4%",
                ("784-1000-10", "fa"): "2.1%",
                ("784-1000-10", "shallow"): "~7.2%",
            },  # fmt: skip
            seeds=3,
            quick=dict(seeds=1, epochs=4, data_rows=(10000, 2000), base=dict(lr=0.01)),
            note="Settings as benchmarks/mnist.py: SGD momentum 0.9, batch 32, lr 0.05 with a cosine "
            "schedule, uniform +-1/sqrt(fan_in) initialisation, fa's B drawn like the weights.",
        ),
        Experiment(
            name="nokland-depth",
            title="bp, fa and dfa on MNIST with deeper tanh networks (Nøkland 2016, Table 1 networks)",
            reference="Nøkland 2016, NeurIPS, Table 1",
            data="mnist",
            rules=("bp", "fa", "dfa"),
            nets={
                "784-800-10": (800,),
                "784-800x2-10": (800, 800),
                "784-800x4-10": (800, 800, 800, 800),
                "784-240x7-10": (240,) * 7,
            },
            base=dict(activation="tanh", lr=0.05, momentum=0.9, batch_size=32, schedule="cosine"),
            epochs=40,
            rule_options={"dfa": DFA_D},
            metric="test_error",
            seeds=3,
            quick=dict(seeds=1, epochs=1, data_rows=(6000, 2000)),
            note="Every rule: SGD momentum 0.9, batch 32, lr 0.05 with a cosine schedule over 40 epochs "
            "(fa and dfa were still improving at 20, where bp had settled); the test error is the last "
            "epoch's, nothing is selected on it. dfa's feedback matrices are drawn D_l ~ U[-0.2, 0.2] in "
            "every layer. Nøkland's code (github.com/anokland/dfa-torch, Models/ErrorFeedback.lua) draws "
            "U[-1/sqrt(n_l), 1/sqrt(n_l)] and trains with RMSprop by default, which divides the size of a "
            "gradient out; under SGD that size is the hidden layers' learning rate, and with 1/sqrt(n_l) "
            "the signal e D_l shrinks as a layer widens. The scale was chosen on validation data: "
            "20-epoch pilots (seed 0) on 784-800x2-10 and 784-240x7-10 with 10% of the training rows "
            "held out (benchmarks/nokland_dfa_scale.toml, python -m benchmarks.select_scale) gave best "
            "validation errors, 800x2 / 240x7: 1/sqrt(n_l) 2.47% / 2.63%, s = 0.05 2.18% / 2.65%, "
            "0.1 2.18% / 2.47%, 0.2 2.12% / 2.42%, 1/sqrt(10) 2.15% / 2.53%, 0.6 2.23% / 2.53%; "
            "0.2 has the lowest sum. An earlier version of this experiment used 1/sqrt(10), chosen from "
            "pilots that looked at test error; with it the same 40-epoch runs gave dfa 1.74%, 1.96%, 2.08% "
            "and 2.26% on the four networks (3 seeds each), against 1.82%, 1.90%, 2.05% and 2.32% with the "
            "scale chosen on validation rows (below): every claim holds either way, and bp's and fa's runs, "
            "trained again, gave the same numbers to the printed digits. Nøkland reports dfa close to bp "
            "on all of these networks; "
            "his Table 1 could not be checked against the paper here, so no number is quoted.",
        ),
        Experiment(
            name="biotorch-lenet-mnist",
            title="LeNet on 1x32x32 MNIST, BioTorch's rules and settings",
            reference="Sanfiz and Akrout 2021, arXiv:2108.13446; BioTorch Benchmarks.md, LeNet MNIST",
            data="mnist",
            rules=("bp", "fa", "dfa", "usf", "brsf", "frsf"),
            nets={"lenet-mnist": "lenet-mnist"},
            base=dict(CONV_MNIST_BASE, optimizer="sgd", weight_decay=1e-3),
            epochs=20,
            milestones=(0.5, 0.75),
            images=(1, 32, 32),
            metric="test_error",
            published={("lenet-mnist", rule): f"{value}%" for rule, value in BIOTORCH_LENET_MNIST.items()},
            seeds=3,
            rule_settings={rule: {"lr": lr} for rule, lr in LENET_LRS.items()},
            quick=dict(seeds=1, epochs=2, data_rows=(6000, 2000), base=dict(lr=5e-3)),
            note=LENET_NOTE,
        ),
        Experiment(
            name="biotorch-lenet-cifar10",
            title="LeNet on CIFAR-10, BioTorch's rules and settings",
            reference="Sanfiz and Akrout 2021, arXiv:2108.13446; BioTorch Benchmarks.md, LeNet CIFAR-10 SGD",
            data="cifar10",
            rules=("bp", "fa", "dfa", "usf", "brsf", "frsf"),
            nets={"lenet-cifar": "lenet-cifar"},
            base=dict(
                activation="relu",
                init="glorot",
                optimizer="sgd",
                lr=1e-3,
                momentum=0.9,
                weight_decay=1e-4,
                batch_size=128,
                schedule="multistep",
                gamma=0.1,
                valid_fraction=0.1,
                standardize="channel",
                crop_padding=4,
                flip=True,
            ),
            epochs=250,
            milestones=(0.4, 0.6, 0.8),
            images=(3, 32, 32),
            metric="test_error",
            published={("lenet-cifar", rule): f"{value}%" for rule, value in BIOTORCH_LENET_CIFAR10.items()},
            seeds=3,
            rule_settings={"dfa": {"lr": 1e-4}},
            quick=dict(seeds=1, epochs=2, data_rows=(512, 256), base=dict(lr=0.01)),
            note=LENET_CIFAR_NOTE,
        ),
        Experiment(
            name="liao-normalisation",
            title="A six-conv-layer ReLU net on MNIST: bp and sign-concordant feedback with and without "
            "batch norm and Batch Manhattan",
            reference="Liao, Leibo and Poggio 2016, AAAI: how important is weight symmetry in backprop?",
            data="mnist",
            rules=("bp", "usf", "frsf", "brsf"),
            nets=LIAO_VARIANTS,
            base=dict(CONV_MNIST_BASE, weight_decay=1e-4),
            epochs=10,
            milestones=(0.5, 0.75),
            images=(1, 28, 28),
            metric="test_error",
            seeds=3,
            rule_settings={(net, r): {"lr": lr} for net, lrs in LIAO_LRS.items() for r, lr in lrs.items()},
            quick=dict(seeds=1, epochs=2, data_rows=(3000, 1000)),
            note=LIAO_NOTE,
        ),
        akrout_experiment(
            "mnist", "MNIST", 784, 500, AKROUT_MNIST, quick=dict(epochs=3, data_rows=(10000, 2000))
        ),
        akrout_experiment(
            "cifar10",
            "CIFAR-10",
            3072,
            1000,
            AKROUT_CIFAR10,
            quick=dict(epochs=2, data_rows=(512, 256)),
            note=" CIFAR-10's images are flattened to 3072 inputs scaled to [0, 1] (`fastfa data cifar10`); "
            "defined for users who have it, not run here.",
        ),  # fmt: skip
    )
}
