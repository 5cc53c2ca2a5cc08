"""bp, fa and dfa in PyTorch, written the way peer libraries write them (for the benchmarks only).

A custom ``torch.autograd.Function`` whose backward multiplies the error by ``B`` (fa) or
``W`` (bp); dfa adds a hook that sends the output error to every hidden layer through a
fixed ``D``. PyTorch is imported when :func:`make_model` is called, never by fastfa.
"""

from __future__ import annotations


def autograd_functions():
    """``(LinearFeedback, DirectFeedback)``: the two ``torch.autograd.Function`` s peers write.

    ``LinearFeedback.apply(x, W, b, B)`` is ``x W^T + b`` whose backward sends ``grad_out B``
    down (``B = W`` for bp, fixed random for fa); ``DirectFeedback.apply(h, D, store)`` is the
    identity whose backward replaces the incoming gradient by ``store["e"] D`` (dfa), shaped
    like ``h``.
    """
    import torch

    class LinearFeedback(torch.autograd.Function):
        """y = x W^T + b; backward sends grad_out @ B down (B = W for bp, fixed random for fa)."""

        @staticmethod
        def forward(ctx, inp, weight, bias, feedback):
            ctx.save_for_backward(inp, feedback)
            return inp @ weight.t() + bias

        @staticmethod
        def backward(ctx, grad_out):
            inp, feedback = ctx.saved_tensors
            grad_in = grad_out @ feedback if ctx.needs_input_grad[0] else None
            return grad_in, grad_out.t() @ inp, grad_out.sum(0), None

    class DirectFeedback(torch.autograd.Function):
        """Identity forward; backward replaces the incoming gradient by e D (the output error)."""

        @staticmethod
        def forward(ctx, h, projection, store):
            ctx.projection, ctx.store = projection, store
            return h.view_as(h)

        @staticmethod
        def backward(ctx, grad):
            return (ctx.store["e"] @ ctx.projection).view_as(grad), None, None

    return LinearFeedback, DirectFeedback


def make_model(sizes, rule, device="cpu"):
    """``(model, parameters)`` of a tanh network ``sizes`` trained by ``rule`` (bp, fa or dfa).

    Weights and feedback are drawn U[-1/sqrt(fan_in), 1/sqrt(fan_in)] with seed 0;
    ``model(x)`` returns the output pre-activations (logits).
    """
    import torch

    torch.manual_seed(0)

    LinearFeedback, DirectFeedback = autograd_functions()

    def uniform(rows, cols):
        return (torch.empty(rows, cols).uniform_(-1, 1) / cols**0.5).to(device)

    layers = list(zip(sizes[:-1], sizes[1:]))
    weights = [torch.nn.Parameter(uniform(b, a)) for a, b in layers]
    biases = [torch.nn.Parameter(torch.zeros(b, device=device)) for a, b in layers]
    feedback = [uniform(b, a) for a, b in layers]
    direct = [uniform(sizes[-1], n) for n in sizes[1:-1]]
    store = {}

    def model(inp):
        h = inp
        for i, (w, b) in enumerate(zip(weights, biases)):
            fb = w.detach() if rule == "bp" else feedback[i]
            if rule == "dfa" and i > 0:
                h = DirectFeedback.apply(h, direct[i - 1], store)
            h = LinearFeedback.apply(h, w, b, fb)
            if i < len(weights) - 1:
                h = torch.tanh(h)
        if rule == "dfa":
            h.register_hook(lambda g: store.__setitem__("e", g))
        return h

    return model, weights + biases
