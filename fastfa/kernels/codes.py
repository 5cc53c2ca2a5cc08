"""Integer codes shared by the Python side and the compiled kernels.

Kernels are specialised by branching on these small integers outside their inner
loops, so one compiled function serves every activation, loss, rule and optimiser
(a jitted function passed as an argument would cost microseconds per call and
defeat numba's on-disk cache; see DESIGN.md section 4).
"""

# activations (hidden and output)
IDENTITY = 0
TANH = 1
LOGISTIC = 2
RELU = 3
SOFTMAX = 4

ACTIVATIONS = {"identity": IDENTITY, "tanh": TANH, "logistic": LOGISTIC, "relu": RELU}
OUTPUT_ACTIVATIONS = dict(ACTIVATIONS, softmax=SOFTMAX)

# losses
CROSS_ENTROPY = 0
SQUARED_ERROR = 1

LOSSES = {"cross_entropy": CROSS_ENTROPY, "squared_error": SQUARED_ERROR}

# where a hidden layer's learning signal comes from
SIGNAL_BACKPROP = 0  # delta_{l+1} through W_{l+1}^T
SIGNAL_LAYERWISE = 1  # delta_{l+1} through a feedback matrix B_{l+1}
SIGNAL_DIRECT = 2  # output error e through a feedback matrix D_l
SIGNAL_TARGET = 3  # the (negated) target t through a feedback matrix D_l
SIGNAL_NONE = 4  # hidden layers receive nothing
SIGNAL_DIRECT_SIGN = 5  # the sign of the output error through a feedback matrix D_l

SIGNALS = {
    "backprop": SIGNAL_BACKPROP,
    "layerwise": SIGNAL_LAYERWISE,
    "direct": SIGNAL_DIRECT,
    "target": SIGNAL_TARGET,
    "none": SIGNAL_NONE,
    "direct-sign": SIGNAL_DIRECT_SIGN,
}

# how the feedback matrices change during training
DYNAMICS_FIXED = 0  # never
DYNAMICS_SIGN = 1  # B = |B0| * sign(W^T), refreshed before every batch
DYNAMICS_SIGN_REDRAW = 2  # B = U * |B0| * sign(W^T), U ~ U[0, 1) redrawn every batch
DYNAMICS_KOLEN_POLLACK = 3  # B receives W's update; B - W^T shrinks by (1 - lr wd) every step
DYNAMICS_MIRROR = 4  # B learns W^T from noise injected into its layer (weight mirror)

DYNAMICS = {
    "fixed": DYNAMICS_FIXED,
    "sign": DYNAMICS_SIGN,
    "sign-redraw": DYNAMICS_SIGN_REDRAW,
    "kolen-pollack": DYNAMICS_KOLEN_POLLACK,
    "mirror": DYNAMICS_MIRROR,
}

# optimisers
SGD = 0
ADAM = 1
MANHATTAN = 2  # Batch Manhattan: SGD on the sign of each entry of the batch gradient

OPTIMIZERS = {"sgd": SGD, "adam": ADAM, "manhattan": MANHATTAN}

# layout of the integer configuration vector passed to the kernels
I_SIGNAL = 0
I_LOSS = 1
I_DYNAMICS = 2
I_OPTIMIZER = 3
I_NESTEROV = 4
I_FIRST_TRAINABLE = 5
I_CLASSIFICATION = 6
I_SEED = 7
I_THREADS = 8  # threads the kernels may split work over (set per call)
N_ICFG = 9

# layout of the float configuration vector passed to the kernels
F_LR = 0
F_MOMENTUM = 1
F_WEIGHT_DECAY = 2
F_BETA1 = 3
F_BETA2 = 4
F_EPSILON = 5
F_MIRROR_LR = 6  # weight mirror: learning rate of the feedback
F_MIRROR_DECAY = 7  # weight mirror: decay of the feedback
F_MIRROR_NOISE = 8  # weight mirror: standard deviation of the injected noise
F_MIRROR_RESPONSE = 9  # weight mirror: 1 for the layer's bias and activation on the response, 0 linear
N_FCFG = 10

# layer kinds of a layer table (fastfa.kernels.layers); flatten is no layer there: an
# N x C x H x W block of activations is already its N x (C H W) matrix
KIND_DENSE = 0
KIND_CONV = 1
KIND_MAXPOOL = 2
KIND_AVGPOOL = 3  # global average pooling is the window that covers the map

KINDS = {"dense": KIND_DENSE, "conv": KIND_CONV, "maxpool": KIND_MAXPOOL, "avgpool": KIND_AVGPOOL}

# columns of a layer table: one row per layer, in forward order
L_KIND = 0
L_ACT = 1  # activation code (IDENTITY for pooling)
L_C_IN = 2  # input channels, height, width (dense: 1 x 1 x n_in)
L_H_IN = 3
L_W_IN = 4
L_C_OUT = 5  # output channels, height, width (dense: n_out x 1 x 1)
L_H_OUT = 6
L_W_OUT = 7
L_KERNEL = 8  # kernel or window side
L_STRIDE = 9
L_PAD = 10
L_IN_SIZE = 11  # values per sample at the input and at the output
L_OUT_SIZE = 12
L_OUT_OFF = 13  # per-sample offset of the output in the activation buffers (times the batch size)
L_W_OFF = 14  # offset of the weights in the parameter buffer (-1: no parameters)
L_B_OFF = 15  # offset of the biases
L_FB_OFF = 16  # offset of this layer's feedback matrix or kernel (-1: none)
L_ARG_OFF = 17  # per-sample offset of a max-pool's argmax in the index buffer (times the batch size)
L_NORM_OFF = 18  # batch norm: offset of the layer's block in the batch-norm scratch (4 C entries; -1: none)
L_G_OFF = 19  # batch norm: offset of the layer's gamma, running mean and variance (3 C) in the parameters
N_LFIELDS = 20
