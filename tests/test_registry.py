"""The rule registry: entry points, broken and duplicate plugins, runtime rules, options."""

from __future__ import annotations

import warnings
from importlib.metadata import EntryPoint
from importlib.metadata import entry_points as real_entry_points

import numpy as np
import pytest

import fastfa.rules
from fastfa.rules import PluginWarning, Rule, available_rules, get_rule, register_rule
from tests import naive
from tests.conftest import assert_close, make_data, make_trainer

BUILTINS = {
    # name: (signal, dynamics)
    "bp": ("backprop", "fixed"),
    "fa": ("layerwise", "fixed"),
    "dfa": ("direct", "fixed"),
    "usf": ("layerwise", "sign"),
    "frsf": ("layerwise", "sign"),
    "brsf": ("layerwise", "sign-redraw"),
    "shallow": ("none", "fixed"),
}

# objects the fake entry points below point at (loaded through EntryPoint.load, as a real plugin)
NOT_A_RULE = {"name": "looks-like-a-rule"}
IMPOSTOR_FA = Rule(name="fa", summary="an impostor", reference="-", signal="backprop")
DUP_FIRST = Rule(name="dup", summary="first", reference="-", signal="backprop")
DUP_SECOND = Rule(name="dup", summary="second", reference="-", signal="none")
GOOD_EXTRA = Rule(name="extra", summary="a third-party rule", reference="-", signal="backprop")


def fake(name, target):
    return EntryPoint(name=name, value=target, group=fastfa.rules.ENTRY_POINT_GROUP)


@pytest.fixture
def plugins(monkeypatch):
    """Install extra entry points next to the real ones; the registry reloads lazily."""
    monkeypatch.setattr(fastfa.rules, "_runtime_rules", {})

    def install(*extra, keep_real=True):
        def patched(group):
            assert group == fastfa.rules.ENTRY_POINT_GROUP
            real = list(real_entry_points(group=group)) if keep_real else []
            return real + list(extra)

        monkeypatch.setattr(fastfa.rules, "entry_points", patched)
        monkeypatch.setattr(fastfa.rules, "_entry_point_rules", None)

    return install


def load_with_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rules = available_rules()
    return rules, [w for w in caught if issubclass(w.category, PluginWarning)]


# ----------------------------------------------------------------------- built-ins


def test_builtin_rules_are_registered():
    rules = available_rules()
    assert set(BUILTINS) <= set(rules)
    for name, (signal, dynamics) in BUILTINS.items():
        rule = rules[name]
        assert isinstance(rule, Rule) and rule.name == name
        assert (rule.signal, rule.dynamics) == (signal, dynamics), name
        assert rule.summary and rule.reference
        assert get_rule(name) is rule
        assert get_rule(rule) is rule  # a Rule passes through


def test_builtin_rules_load_without_warnings(plugins):
    plugins()
    rules, caught = load_with_warnings()
    assert caught == []
    assert set(BUILTINS) <= set(rules)


def test_unknown_rule_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown rule 'backprob'") as info:
        get_rule("backprob")
    for name in BUILTINS:
        assert name in str(info.value)
    with pytest.raises(ValueError, match="known rules"):
        make_trainer((3, 4, 2), "no-such-rule")


def test_unknown_rule_with_no_plugins_says_so(plugins):
    plugins(keep_real=False)
    with pytest.raises(ValueError, match="pip install"):
        get_rule("fa")


# ------------------------------------------------------------------ broken plugins


def test_broken_plugin_warns_once_and_the_rest_work(plugins, rng):
    plugins(fake("broken", "fastfa_no_such_module_xyz:rule"), fake("extra", "tests.test_registry:GOOD_EXTRA"))
    rules, caught = load_with_warnings()
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "broken" in message and "fastfa_no_such_module_xyz" in message
    assert "broken" not in rules
    assert set(BUILTINS) | {"extra"} <= set(rules)
    # loaded once: no second warning on the next look-up
    with warnings.catch_warnings():
        warnings.simplefilter("error", PluginWarning)
        assert get_rule("extra") is GOOD_EXTRA
        tr = make_trainer((7, 13, 5), "fa")
        x, y = make_data(rng, 5, (7, 13, 5))
        assert np.all(np.isfinite(tr.gradients(x, y)))


def test_plugin_that_is_not_a_rule_warns(plugins):
    plugins(fake("notarule", "tests.test_registry:NOT_A_RULE"))
    rules, caught = load_with_warnings()
    assert len(caught) == 1
    assert "notarule" in str(caught[0].message) and "not a fastfa.Rule" in str(caught[0].message)
    assert "notarule" not in rules and "looks-like-a-rule" not in rules
    assert set(BUILTINS) <= set(rules)


def test_duplicate_of_a_builtin_warns_and_the_builtin_is_kept(plugins):
    builtin_fa = get_rule("fa")
    plugins(fake("aaa-fa", "tests.test_registry:IMPOSTOR_FA"))  # sorts before "fa" by name
    rules, caught = load_with_warnings()
    assert len(caught) == 1 and "duplicates" in str(caught[0].message)
    assert rules["fa"] is builtin_fa
    assert rules["fa"].signal == "layerwise"


def test_duplicate_third_party_rules_keep_the_first(plugins):
    plugins(
        fake("zzz-dup", "tests.test_registry:DUP_SECOND"),
        fake("aaa-dup", "tests.test_registry:DUP_FIRST"),
    )
    rules, caught = load_with_warnings()
    assert len(caught) == 1 and "'dup'" in str(caught[0].message)
    assert rules["dup"] is DUP_FIRST


# ------------------------------------------------------------------ runtime rules


def target_feedback(rng, shape, *, fan_in, fan_out, init, options):
    return rng.uniform(-1.0, 1.0, size=shape) * options["scale"]


def test_register_rule_at_run_time(plugins, rng):
    plugins()
    rule = Rule(
        name="test-target",
        summary="target projection",
        reference="-",
        signal="target",
        init_feedback=target_feedback,
        options={"scale": 0.5},
    )
    assert register_rule(rule) is rule
    assert get_rule("test-target") is rule and "test-target" in available_rules()
    with pytest.raises(ValueError, match="already registered"):
        register_rule(rule)
    with pytest.raises(ValueError, match="already registered"):
        register_rule(Rule(name="fa", summary="-", reference="-", signal="backprop"))
    replacement = Rule(name="test-target", summary="v2", reference="-", signal="none")
    assert register_rule(replacement, replace=True) is replacement
    assert get_rule("test-target") is replacement
    register_rule(rule, replace=True)

    # the runtime rule trains through the same engine: delta_l = (-t D_l) * f'(a_l)
    sizes = (7, 13, 11, 5)
    tr = make_trainer(sizes, "test-target", rule_options={"scale": 2.0})
    assert [b.shape for b in tr.feedback_matrices] == [(5, 13), (5, 11)]
    assert max(np.abs(b).max() for b in tr.feedback_matrices) > 1.0  # scale 2 was applied
    x, y = make_data(rng, 9, sizes)
    weights, biases = naive.split_params(tr.params, sizes)
    net = naive.Net(sizes, weights, biases, signal="target", feedback=tr.feedback_matrices)
    dws, _, _, _ = net.gradients(x, naive.one_hot(y, 5))
    for got, want in zip(tr.arch.weights(tr.gradients(x, y)), dws, strict=True):
        assert_close(got, want, "float64")
    before = tr.params.copy()
    tr.train_epoch(x, y)
    assert not np.array_equal(before, tr.params)


def test_register_rule_rejects_non_rules(plugins):
    plugins()
    with pytest.raises(TypeError, match="fastfa.Rule"):
        register_rule({"name": "x", "signal": "backprop"})


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(signal="sideways"), "unknown signal"),
        (dict(signal="layerwise", init_feedback=target_feedback, dynamics="wobbly"), "unknown dynamics"),
        (dict(signal="direct", init_feedback=target_feedback, dynamics="sign"), "layerwise"),
        (dict(signal="layerwise"), "init_feedback"),
        (dict(signal="target"), "init_feedback"),
    ],
)
def test_bad_rules_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Rule(name="bad", summary="-", reference="-", **kwargs)


@pytest.mark.parametrize(
    "returns,match",
    [
        (lambda shape: np.zeros((shape[0] + 1, shape[1])), "bad feedback"),
        (lambda shape: np.full(shape, np.nan), "bad feedback"),
    ],
    ids=["wrong-shape", "nan"],
)
def test_bad_feedback_from_a_rule_is_an_error(plugins, returns, match):
    plugins()
    register_rule(
        Rule(
            name="test-bad-feedback",
            summary="-",
            reference="-",
            signal="layerwise",
            init_feedback=lambda rng, shape, **_: returns(shape),
        )
    )
    with pytest.raises(ValueError, match=match):
        make_trainer((4, 3, 2), "test-bad-feedback")


# ------------------------------------------------------------------------ options


def test_rule_options_defaults_and_conversion():
    fa = get_rule("fa")
    assert fa.resolve_options() == {"feedback_init": "same", "feedback_scale": 1.0}
    resolved = fa.resolve_options({"feedback_scale": "2.5", "feedback_init": "glorot"})
    assert resolved == {"feedback_init": "glorot", "feedback_scale": 2.5}
    assert isinstance(resolved["feedback_scale"], float)
    assert fa.options["feedback_scale"] == 1.0  # defaults untouched


@pytest.mark.parametrize(
    "rule,options,match",
    [
        ("fa", {"feedback_scael": 2.0}, "no option 'feedback_scael'.*feedback_scale"),
        ("bp", {"feedback_scale": 2.0}, r"options: none"),
        ("fa", {"feedback_scale": "large"}, "must be a float"),
        ("usf", {"feedback_scale": [1.0, 2.0]}, "must be a float"),
        ("brsf", {"feedback_scale": None}, "must be a float"),
    ],
)
def test_rule_options_are_validated(rule, options, match):
    with pytest.raises(ValueError, match=match):
        get_rule(rule).resolve_options(options)
    with pytest.raises(ValueError, match=match):
        make_trainer((4, 3, 2), rule, rule_options=options)


def test_feedback_init_option(rng):
    sizes = (7, 13, 11, 5)
    tr = make_trainer(sizes, "fa", rule_options={"feedback_init": "0.03"})  # a number: U[-s, s]
    assert all(np.abs(b).max() <= 0.03 for b in tr.feedback_matrices)
    assert all(np.abs(b).max() > 0.02 for b in tr.feedback_matrices)
    glorot = make_trainer(sizes, "dfa", rule_options={"feedback_init": "glorot"})
    for b in glorot.feedback_matrices:
        n_src, n_l = b.shape
        assert np.abs(b).max() <= np.sqrt(6.0 / (n_l + n_src))
    with pytest.raises(ValueError, match="unknown init"):
        make_trainer(sizes, "fa", rule_options={"feedback_init": "bogus"})
    with pytest.raises(ValueError, match="no feedback"):
        make_trainer(sizes, "fa", rule_options={"feedback_init": "zeros"})


def test_boolean_rule_option_from_text():
    """The CLI passes ``--rule-opt KEY=VALUE`` values as text; "false" must not become True."""
    rule = Rule(name="flagged", summary="-", reference="-", signal="backprop", options={"flag": True})
    assert rule.resolve_options({"flag": "false"})["flag"] is False


def test_integer_rule_option_rejects_fractions():
    rule = Rule(name="counted", summary="-", reference="-", signal="backprop", options={"count": 3})
    assert rule.resolve_options({"count": "4"})["count"] == 4
    with pytest.raises(ValueError, match="count"):
        rule.resolve_options({"count": "2.7"})
    with pytest.raises(ValueError, match="flag"):
        Rule(
            name="f", summary="-", reference="-", signal="backprop", options={"flag": False}
        ).resolve_options({"flag": "maybe"})
