"""BioTorch's LeNet in PyTorch with bp, fa, usf and dfa, written the way peer libraries write them
(for the benchmarks only; PyTorch is imported when :func:`make_lenet` is called, never by fastfa).

- bp: ``torch.nn.functional.conv2d`` and ``linear`` under autograd (``nn.Conv2d``'s own path).
- fa, usf: a custom ``torch.autograd.Function`` per layer whose backward sends the error down
  through a feedback kernel ``B`` (``torch.nn.grad.conv2d_input``) and takes the weight gradient
  with ``torch.nn.grad.conv2d_weight``; usf's ``B = s * sign(W)`` is made in every forward pass,
  as BioTorch's layers do.
- dfa: a hook after each hidden layer's activation replaces the incoming gradient by the output
  error sent through a fixed matrix ``D_l`` to the layer's whole output.
"""

from __future__ import annotations

from benchmarks.torch_rules import autograd_functions

LENET_MNIST = ((1, 6, 5), (6, 16, 5), (16, 120, 5))  # (C_in, C_out, k); pools after the first two
DENSE = ((120, 84), (84, 10))


def make_lenet(rule, seed=0, dropout=0.0, batch_norm=False):
    """``(model, parameters)`` of LeNet-MNIST (1x32x32 inputs, ReLU) trained by ``rule``, with
    ``nn.functional.dropout`` of rate ``dropout`` after every hidden activation when it is > 0,
    and with ``batch_norm`` an ``nn.BatchNorm2d`` (conv) or ``nn.BatchNorm1d`` (the hidden dense
    layer) before every hidden activation, in training mode.

    ``model(x)`` takes ``N x 1 x 32 x 32`` and returns the logits.
    """
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)

    class ConvFeedback(torch.autograd.Function):
        @staticmethod
        def forward(ctx, inp, weight, bias, feedback):
            ctx.save_for_backward(inp, weight, feedback)
            return F.conv2d(inp, weight, bias)

        @staticmethod
        def backward(ctx, grad_out):
            inp, weight, feedback = ctx.saved_tensors
            grad_in = None
            if ctx.needs_input_grad[0]:
                grad_in = torch.nn.grad.conv2d_input(inp.shape, feedback, grad_out)
            grad_w = torch.nn.grad.conv2d_weight(inp, weight.shape, grad_out)
            return grad_in, grad_w, grad_out.sum((0, 2, 3)), None

    LinearFeedback, DirectFeedback = autograd_functions()

    def xavier(*shape):
        fan_in = shape[1] * (shape[2] * shape[3] if len(shape) == 4 else 1)
        fan_out = shape[0] * (shape[2] * shape[3] if len(shape) == 4 else 1)
        bound = (6.0 / (fan_in + fan_out)) ** 0.5
        return torch.empty(*shape).uniform_(-bound, bound)

    conv_w = [torch.nn.Parameter(xavier(c_out, c_in, k, k)) for c_in, c_out, k in LENET_MNIST]
    conv_b = [torch.nn.Parameter(torch.zeros(c_out)) for _, c_out, _ in LENET_MNIST]
    dense_w = [torch.nn.Parameter(xavier(n_out, n_in)) for n_in, n_out in DENSE]
    dense_b = [torch.nn.Parameter(torch.zeros(n_out)) for _, n_out in DENSE]
    conv_fb = [xavier(*w.shape) for w in conv_w]
    dense_fb = [xavier(*w.shape) for w in dense_w]
    scales = [float(xavier(*w.shape).std()) for w in conv_w + dense_w]  # usf: s = std of W's init
    sizes = (6 * 28 * 28, 16 * 10 * 10, 120, 84)  # the hidden layers' outputs
    direct = [xavier(10, n) for n in sizes]
    store = {}

    def feedback(i, w, fixed):
        if rule == "bp":
            return w.detach()
        if rule == "usf":
            return scales[i] * torch.sign(w.detach())
        return fixed

    norms = [torch.nn.BatchNorm2d(c_out) for _, c_out, _ in LENET_MNIST] + [torch.nn.BatchNorm1d(DENSE[0][1])]

    def hidden_out(h, i):
        if batch_norm:
            h = norms[i](h.flatten(1) if i == len(norms) - 1 else h)
        h = torch.relu(h)
        if dropout:
            h = F.dropout(h, dropout, training=True)
        return DirectFeedback.apply(h, direct[i], store) if rule == "dfa" else h

    def model(x):
        h = x
        for i, (w, b) in enumerate(zip(conv_w, conv_b)):
            if rule == "bp":
                h = F.conv2d(h, w, b)
            else:
                h = ConvFeedback.apply(h, w, b, feedback(i, w, conv_fb[i]))
            h = hidden_out(h, i)
            if i < 2:
                h = F.max_pool2d(h, 2)
        h = h.flatten(1)
        for j, (w, b) in enumerate(zip(dense_w, dense_b)):
            i = len(conv_w) + j
            h = (
                F.linear(h, w, b)
                if rule == "bp"
                else LinearFeedback.apply(h, w, b, feedback(i, w, dense_fb[j]))
            )
            if j == 0:
                h = hidden_out(h, i)
        if rule == "dfa":
            h.register_hook(lambda g: store.__setitem__("e", g))
        return h

    norm_params = [p for norm in norms for p in norm.parameters()] if batch_norm else []
    return model, conv_w + conv_b + dense_w + dense_b + norm_params
