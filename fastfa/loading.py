"""``fastfa.load``: a run file as a fitted scikit-learn-style estimator."""

from __future__ import annotations

import numpy as np

from fastfa.runs import load_model, read_outcome


def load(run, model="best"):
    """The model trained in the run file ``run`` as a fitted estimator.

    Parameters
    ----------
    run : str or os.PathLike
        A run file written by ``fastfa train -o`` (or a sweep).
    model : {"best", "last"}
        The best-validation epoch's parameters (the last epoch's when the run has no
        validation data), or the last epoch's.

    Returns
    -------
    MLPClassifier or MLPRegressor
        Fitted: ``predict``, ``predict_proba``, ``score``, ``coefs_``, ``feedback_`` work, and
        its parameters are the run's settings. A run trained with standardised inputs keeps its
        statistics: the estimator standardises ``X`` itself before the network (unlike an
        estimator fitted in Python, which never scales; see docs/models.md). Classes are the
        label indices ``0 .. K-1`` of the dataset; ``class_names_`` holds their names when the
        dataset had them. ``loss_curve_`` is the run's per-epoch training loss.

    Examples
    --------
    >>> clf = fastfa.load("fa.h5")  # doctest: +SKIP
    >>> clf.predict(X_new)  # doctest: +SKIP
    """
    from fastfa.estimators import MLPClassifier, MLPRegressor

    trainer, _meta = load_model(run, model)
    history = read_outcome(run)["history"]
    c = trainer.config
    classification = trainer.task == "classification"
    estimator = (MLPClassifier if classification else MLPRegressor)(
        hidden_layer_sizes=c.hidden if not c.layers else (100,),
        layers=c.layers or None,
        image_shape=c.image_shape or None,
        activation=c.activation,
        rule=c.rule,
        rule_options=dict(c.rule_options),
        solver=c.optimizer,
        alpha=c.weight_decay * c.batch_size,
        batch_size=c.batch_size,
        learning_rate=c.schedule,
        learning_rate_init=c.lr,
        learning_rate_step=c.step_size,
        learning_rate_gamma=c.gamma,
        max_iter=c.epochs,
        shuffle=c.shuffle,
        random_state=c.seed,
        momentum=c.momentum,
        nesterovs_momentum=c.nesterov,
        beta_1=c.beta1,
        beta_2=c.beta2,
        epsilon=c.epsilon,
        init=c.init,
        dtype=c.dtype,
    )
    estimator._trainer = trainer
    estimator.n_features_in_ = trainer.arch.sizes[0]
    estimator.image_shape_ = c.image_shape or None
    losses = [float(v) for v in history.get("train_loss", [])]
    estimator.loss_curve_ = losses
    estimator.loss_ = losses[-1] if losses else None
    estimator.best_loss_ = min(losses) if losses else np.inf
    estimator.n_iter_ = trainer.epoch
    estimator.t_ = 0
    estimator._no_improvement = 0
    if classification:
        estimator.classes_ = np.arange(trainer.arch.sizes[-1])
        estimator.class_names_ = list(trainer.class_names) if trainer.class_names else None
    return estimator
