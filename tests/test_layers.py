"""Layer lists: parsing, canonical text, shape chaining, presets and bad inputs (fastfa.layers)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastfa.layers import (
    PRESET_INPUTS,
    PRESETS,
    Layer,
    LayerError,
    dense_layers,
    dense_sizes,
    layers_text,
    parse_image_shape,
    parse_layers,
    plan_network,
)

layer_strategy = st.one_of(
    st.builds(
        Layer,
        st.just("conv"),
        st.integers(1, 64),
        st.integers(1, 7),
        st.integers(1, 3),
        st.integers(0, 3),
    ),
    st.builds(
        lambda kind, k, s: Layer(kind, 0, k, s),
        st.sampled_from(["maxpool", "avgpool"]),
        st.integers(1, 4),
        st.integers(1, 4),
    ),  # fmt: skip
    st.builds(Layer, st.just("dense"), st.integers(1, 1000)),
    st.just(Layer("gap")),
    st.just(Layer("flatten")),
)


@given(st.lists(layer_strategy, min_size=1, max_size=6))
def test_text_round_trip(layers):
    text = layers_text(layers)
    assert parse_layers(text) == tuple(layers)
    assert layers_text(parse_layers(text)) == text


def test_defaults_and_aliases():
    assert parse_layers("conv:6:5") == (Layer("conv", 6, 5, 1, 0),)
    assert parse_layers("maxpool:2") == (Layer("maxpool", 0, 2, 2),)
    assert parse_layers("avgpool:3:1") == (Layer("avgpool", 0, 3, 1),)
    assert parse_layers(" avgpool:global , Dense:84 ") == (Layer("gap"), Layer("dense", 84))
    assert parse_layers("conv:8:3:1:1")[0].text() == "conv:8:3:1:1"
    assert parse_layers("conv:8:3:2")[0].text() == "conv:8:3:2"


def naive_side(n, k, stride, padding=0):
    """The output side counted window by window, as the definition reads."""
    return sum(1 for start in range(-padding, n + padding - k + 1) if (start + padding) % stride == 0)


@given(
    st.integers(1, 40),
    st.integers(1, 40),
    st.integers(1, 6),
    st.integers(1, 3),
    st.integers(0, 2),
    st.integers(1, 5),
)
def test_conv_and_pool_shapes_count_the_windows(h, w, k, stride, padding, channels):
    conv = Layer("conv", channels, k, stride, padding)
    if k > min(h, w) + 2 * padding:
        with pytest.raises(LayerError, match="larger than its input"):
            conv.output_shape((2, h, w))
    else:
        assert conv.output_shape((2, h, w)) == (
            channels,
            naive_side(h, k, stride, padding),
            naive_side(w, k, stride, padding),
        )
    pool = Layer("maxpool", 0, k, stride)
    if k > min(h, w):
        with pytest.raises(LayerError):
            pool.output_shape((3, h, w))
    else:
        assert pool.output_shape((3, h, w)) == (3, naive_side(h, k, stride), naive_side(w, k, stride))


def test_lenet_presets_match_the_reference_networks():
    mnist = plan_network(parse_layers("lenet-mnist"), 1024, 10, PRESET_INPUTS["lenet-mnist"])
    assert [s for s in mnist.shapes] == [
        (1, 32, 32), (6, 28, 28), (6, 14, 14), (16, 10, 10), (16, 5, 5), (120, 1, 1), (120,), (84,), (10,)
    ]  # fmt: skip
    assert mnist.n_params == 61_706  # LeNet-5 as BioTorch defines it
    cifar = plan_network(parse_layers("lenet-cifar"), 3072, 10, PRESET_INPUTS["lenet-cifar"])
    assert cifar.shapes[-4:] == ((128, 1, 1), (128,), (256,), (10,))
    assert cifar.n_params == 896 + 18_496 + 73_856 + 33_024 + 2_570
    assert set(PRESETS) == set(PRESET_INPUTS)
    assert len(mnist.describe().splitlines()) == len(mnist.layers) + 1


def test_dense_lists_are_hidden_sizes():
    assert dense_layers((800, 800)) == parse_layers("dense:800,dense:800")
    assert dense_sizes(parse_layers("dense:800,dense:10")) == (800, 10)
    assert dense_sizes(parse_layers("flatten,dense:3")) is None
    plan = plan_network(dense_layers((20,)), 30, 10)
    assert plan.shapes == ((30,), (20,), (10,))
    assert plan.n_params == 30 * 20 + 20 + 20 * 10 + 10


def test_flatten_is_implied_once():
    plan = plan_network(parse_layers("conv:2:3,flatten,dense:5"), 64, 3, (1, 8, 8))
    assert [layer.kind for layer in plan.layers] == ["conv", "flatten", "dense", "dense"]
    plan = plan_network(parse_layers("conv:2:3"), 64, 3, (1, 8, 8))
    assert [layer.kind for layer in plan.layers] == ["conv", "flatten", "dense"]
    plan = plan_network(parse_layers("flatten,dense:4"), 64, 3)
    assert [layer.kind for layer in plan.layers] == ["dense", "dense"]


def test_image_shapes():
    assert parse_image_shape("1x28x28") == (1, 28, 28)
    assert parse_image_shape("28X28") == (1, 28, 28)
    for bad in ("28", "0x28x28", "1x2x3x4", "axb"):
        with pytest.raises(LayerError, match="image shape"):
            parse_image_shape(bad)


@pytest.mark.parametrize(
    "text, image, message",
    [
        (
            "conv:6:5,maxpool:2,conv:16:5,maxpool:2,conv:120:6",
            (1, 32, 32),
            "layer 5: conv:120:6 has a 6x6 window",
        ),
        ("maxpool:40", (1, 32, 32), "layer 1: maxpool:40 has a 40x40 window over a 32x32 input"),
        ("dense:10,conv:3:3", (1, 32, 32), "layer 2: conv:3:3 needs an image"),
        ("conv:6:5", None, "conv:6:5 needs image inputs, but the data are flat"),
        ("conv:6:5", (1, 28, 28), "image shape 1x28x28 has 784 values, but the data have 1024 features"),
        ("conv:0:5", (1, 32, 32), "channels must be a positive integer"),
        ("dense:-3", (1, 32, 32), "units must be a positive integer"),
        ("conv:3:3:0", (1, 32, 32), "stride must be a positive integer"),
        ("conv:3:3:1:-1", (1, 32, 32), "padding must be a non-negative integer"),
        ("pool:2", (1, 32, 32), "unknown layer kind 'pool'"),
        ("conv:3", (1, 32, 32), r"does not read as conv:CHANNELS:KERNEL\[:STRIDE\[:PADDING\]\]"),
        ("dense:3,,dense:4", (1, 32, 32), "empty layer"),
        ("", (1, 32, 32), "empty layer"),
    ],
)
def test_bad_layer_lists_say_which_and_why(text, image, message):
    with pytest.raises(LayerError, match=message) as info:
        plan_network(parse_layers(text), 1024, 10, image)
    assert "\n" not in str(info.value)
