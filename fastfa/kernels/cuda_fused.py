"""The fused CUDA kernel of the dense engine: every batch of a chunk in one cooperative launch.

:func:`fused_chunk_kernel` (compiled per configuration of rule, optimiser and output) runs the
forward products, the output error, the hidden signals, the updates and the feedback dynamics
of every batch, phases separated by grid-wide barriers (:func:`launch_cooperative`); its
products are :func:`tile_product` calls with the bias, activation, derivative or optimiser step
in their epilogues, and forward products with few output tiles split their depth
(:func:`split_count`). It shares its arithmetic with the per-kernel path through the device
functions of :mod:`~fastfa.kernels.cuda_elementwise`, :mod:`~fastfa.kernels.cuda_optimisers`
and :mod:`~fastfa.kernels.cuda_feedback`.
"""

from __future__ import annotations

import functools

from numba import config, cuda, float32

from fastfa.kernels.codes import (
    DYNAMICS_KOLEN_POLLACK,
    DYNAMICS_MIRROR,
    DYNAMICS_SIGN,
    DYNAMICS_SIGN_REDRAW,
    SIGNAL_BACKPROP,
    SIGNAL_DIRECT_SIGN,
    SIGNAL_LAYERWISE,
    SIGNAL_NONE,
    SIGNAL_TARGET,
)
from fastfa.kernels.cuda_base import TILE, TILE_ROW, _greater, _lesser
from fastfa.kernels.cuda_elementwise import _activate, _derivative, _output_row, _sign
from fastfa.kernels.cuda_feedback import _mirror_noise, _sign_feedback
from fastfa.kernels.cuda_optimisers import _adam, _adam_rate, _sgd

# --------------------------------------------------------------------------- fused chunk
#
# One cooperative launch trains on a whole chunk of rows: every block loops over the
# batches, and the phases of a batch (forward per layer, output error, hidden signals,
# updates) are separated by grid-wide barriers. A batch then costs a handful of barriers
# instead of a dozen kernel launches from Python, which is what limits small batches.

#: Forward products with fewer output tiles than this split their depth (split-K) ...
SPLIT_TILES = 1 << 20 if config.ENABLE_CUDASIM else 512
#: ... into slices of this many terms, summed in a fixed order after a barrier.
SPLIT_DEPTH = 2 * TILE if config.ENABLE_CUDASIM else 8 * TILE


def split_count(tiles, depth):
    """Slices of the depth a forward product of ``tiles`` output tiles is split into.

    Few tiles would leave most blocks idle while each walks the whole depth: at batch 32,
    784-1000-10's first product is 126 tiles 784 deep and its logits 2 tiles 1000 deep,
    where a GPU holds several hundred blocks at once. The split depends on the shapes
    alone, so results do not depend on the GPU's size.
    """
    if tiles < SPLIT_TILES and depth > SPLIT_DEPTH:
        return (depth + SPLIT_DEPTH - 1) // SPLIT_DEPTH
    return 1


_split_count = cuda.jit(device=True)(split_count)


@cuda.jit(device=True)
def tile_product(
    tile_a, tile_b,
    a, a0, a_row, a_k, ones_row, sign_a,
    b, b0, b_k, b_col,
    rows, cols, k_lo, k_hi, r0, c0,
):  # fmt: skip
    """This thread's entry ``(r0 + ty, c0 + tx)`` of ``sum_{k_lo <= k < k_hi} A(i, k) B(k, j)``.

    ``A(i, k) = a[a0 + i a_row + k a_k]`` (read as 1 on row ``ones_row``, as its sign when
    ``sign_a``) and ``B(k, j) = b[b0 + k b_k + j b_col]``, both flat; the strides express
    the transposes. Loads run along whichever index has unit stride, so they coalesce.
    Every thread of the block must call it (it synchronises the block).
    """
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    acc = float32(0.0)
    for k0 in range(k_lo, k_hi, TILE):
        # tile_a[i, k] = A(r0 + i, k0 + k); the thread loading it depends on the layout
        i, k = (tx, ty) if a_row == 1 else (ty, tx)
        row, kk = r0 + i, k0 + k
        v = float32(0.0)
        if row < rows and kk < k_hi:
            v = float32(1.0) if row == ones_row else a[a0 + row * a_row + kk * a_k]
            if sign_a:
                v = _sign(v)
        tile_a[i, k] = v
        # tile_b[k, j] = B(k0 + k, c0 + j)
        k, j = (tx, ty) if b_k == 1 else (ty, tx)
        kk, col = k0 + k, c0 + j
        tile_b[k, j] = b[b0 + kk * b_k + col * b_col] if (kk < k_hi and col < cols) else float32(0.0)
        cuda.syncthreads()
        for k in range(TILE):
            acc += tile_a[ty, k] * tile_b[k, tx]
        cuda.syncthreads()
    return acc


@cuda.jit(device=True, inline=True)
def _tiles(rows, cols):
    """Output tiles of a ``rows x cols`` product."""
    return ((rows + TILE - 1) // TILE) * ((cols + TILE - 1) // TILE)


@cuda.jit(device=True, inline=True)
def _tile_origin(tile, cols):
    """``(r0, c0)``: the first entry of output tile ``tile`` of a product ``cols`` wide (tiles
    numbered along the rows of tiles)."""
    col_tiles = (cols + TILE - 1) // TILE
    return (tile // col_tiles) * TILE, (tile % col_tiles) * TILE


@cuda.jit(device=True, inline=True)
def _thread_in_grid():
    """``(this thread's index, threads in the grid)`` over a grid of 2-D blocks."""
    per_block = cuda.blockDim.x * cuda.blockDim.y
    return (
        cuda.blockIdx.x * per_block + cuda.threadIdx.y * cuda.blockDim.x + cuda.threadIdx.x,
        cuda.gridDim.x * per_block,
    )


@cuda.jit(device=True)
def _output_error(
    hidden, deltas, t, start, m, c, z0, loss_rows, error_rows, scale, act, loss, classification
):
    """Rows ``start..start+m``: the outputs from ``a_L`` at ``hidden[z0:]`` in place, their errors
    into ``deltas[z0:]``, loss and misclassification per row (:func:`_output_row`)."""
    tid, threads = _thread_in_grid()
    for i in range(tid, m, threads):
        z, tr = z0 + i * c, (start + i) * c
        value, wrong = _output_row(
            hidden[z : z + c], t[tr : tr + c], deltas[z : z + c], scale, act, loss, classification
        )
        loss_rows[start + i] = value
        error_rows[start + i] = 1 if wrong else 0


@functools.cache
def fused_chunk_kernel(signal, dynamics, adam, out_act, loss):
    """The fused kernel for one configuration: ``signal``, feedback ``dynamics`` (their codes),
    whether the optimiser is Adam, the output activation and the loss code.

    They are compile-time constants of the kernel it returns (numba freezes a closure's
    variables), so the branches of other configurations compile away: fewer registers per
    thread, hence more resident blocks (ptxas, sm_90: see docs/engine.md). Each configuration
    compiles once per process.
    """

    @cuda.jit
    def kernel(
        x, t, params, feedback, state, hidden, deltas, partial, sizes, w_off, b_off, f_off, h_off, acts,
        loss_rows, error_rows, batch, first, lr, mu, decay, nesterov,
        second, beta1, beta2, eps, step, magnitude, seed, classification,
        mirror_lr, mirror_decay, mirror_half_width,
    ):  # fmt: skip
        """Train on every row of the chunk ``x`` (flat, ``n x sizes[0]``) in batches of ``batch``.

        The same step as the per-kernel path: forward ``h_l = f(h_{l-1} W_l + b_l)``, output
        error ``e = dLoss/da_L / m`` (:func:`_output_row`), hidden signals ``delta_l = (s M^T) *
        f'(a_l)`` (``s, M`` by ``signal``), then SGD or Adam on layers ``first..L-1`` with the
        gradient ``[h_{l-1}, 1]^T delta_l``
        (the bias as a row of ones). ``W_j`` is updated once nothing later in the batch reads
        it: in the phase that computes ``delta_{j-2}``, or at the end. Forward products with few
        output tiles are split along their depth (:func:`split_count`) into ``partial``. With
        Kolen-Pollack ``dynamics`` the layerwise feedback ``F_{j-1}`` receives ``W_j``'s update with
        its own decay, ``F <- (1 - lr decay) (F - W) + W_new``, in the same epilogue (Akrout et al.
        2019); with sign-concordant ``dynamics`` every batch first sets ``F_l`` from ``magnitude`` and
        the signs of ``W_{l+1}`` (:func:`_sign_feedback`; the forward phases give the barrier it needs);
        with the weight mirror's, three more phases end a batch: noise ``xi_l`` into ``hidden``, its
        response ``y = xi_l W_{l+1}`` into ``deltas``, then ``F_l <- (1 - eta lam) F_l + (eta / m)
        xi_l^T y`` (Akrout et al. 2019).
        With ``adam`` the update is Adam's, ``state`` and ``second`` its moments and ``step`` the
        updates made before the call. Launch cooperatively with ``(TILE, TILE)`` blocks; per-row
        loss and error go to ``loss_rows`` and ``error_rows``.
        """
        grid = cuda.cg.this_grid()
        tile_a = cuda.shared.array((TILE, TILE_ROW), float32)
        tile_b = cuda.shared.array((TILE, TILE_ROW), float32)
        n_layers = sizes.shape[0] - 1
        n_in, c = sizes[0], sizes[n_layers]
        n = x.shape[0] // n_in
        ty, tx = cuda.threadIdx.y, cuda.threadIdx.x
        block, blocks = cuda.blockIdx.x, cuda.gridDim.x
        tid, threads = _thread_in_grid()
        for start in range(0, n, batch):
            m = _lesser(batch, n - start)
            update = step + start // batch + 1  # this batch's update, counted from 1
            rate = _adam_rate(lr, beta1, beta2, update) if adam else lr
            if dynamics == DYNAMICS_SIGN or dynamics == DYNAMICS_SIGN_REDRAW:
                for layer in range(n_layers - 1):  # read by the hidden signals, after the forward barriers
                    entries = sizes[layer + 1] * sizes[layer + 2]
                    for i in range(tid, entries, threads):
                        w_at, f_at = w_off[layer + 1] + i, f_off[layer] + i
                        _sign_feedback(params, feedback, magnitude, w_at, f_at, dynamics, seed, update)
            # forward: h_l = f(h_{l-1} W_l + b_l); the last layer keeps its logits
            for layer in range(n_layers):
                k, cols = sizes[layer], sizes[layer + 1]
                src, s0 = (x, start * k) if layer == 0 else (hidden, h_off[layer - 1])
                tiles = _tiles(m, cols)
                splits = _split_count(tiles, k)
                act = acts[layer] if layer < n_layers - 1 else -1
                for item in range(block, tiles * splits, blocks):
                    tile, part = item % tiles, item // tiles
                    r0, c0 = _tile_origin(tile, cols)
                    k_lo = part * SPLIT_DEPTH if splits > 1 else 0
                    k_hi = _lesser(k, k_lo + SPLIT_DEPTH) if splits > 1 else k
                    acc = tile_product(
                        tile_a, tile_b,
                        src, s0, k, 1, -1, False,  # A = h_{l-1}
                        params, w_off[layer], cols, 1,  # B = W_l
                        m, cols, k_lo, k_hi, r0, c0,
                    )  # fmt: skip
                    row, col = r0 + ty, c0 + tx
                    if row < m and col < cols:
                        if splits > 1:
                            partial[(part * m + row) * cols + col] = acc
                        else:
                            v = acc + params[b_off[layer] + col]
                            hidden[h_off[layer] + row * cols + col] = _activate(v, act) if act >= 0 else v
                grid.sync()
                if splits > 1:  # the slices' sums, in a fixed order
                    for i in range(tid, m * cols, threads):
                        v = params[b_off[layer] + i % cols]
                        for part in range(splits):
                            v += partial[part * m * cols + i]
                        hidden[h_off[layer] + i] = _activate(v, act) if act >= 0 else v
                    grid.sync()
            z0 = h_off[n_layers - 1]
            _output_error(
                hidden, deltas, t, start, m, c, z0, loss_rows, error_rows, float32(1.0) / m,
                out_act, loss, classification,
            )  # fmt: skip
            grid.sync()
            # hidden signals, newest layer first; W_{l+2} is free to change once delta_l is known
            for phase in range(n_layers - 1, -1, -1):
                layer = phase - 1  # the hidden layer whose signal this phase computes (-1: none)
                if layer >= 0 and signal != SIGNAL_NONE:
                    rows = sizes[layer + 1]
                    if signal == SIGNAL_BACKPROP:
                        k, mat, m0 = sizes[layer + 2], params, w_off[layer + 1]
                        src, s0, alpha = deltas, h_off[layer + 1], float32(1.0)
                    elif signal == SIGNAL_LAYERWISE:
                        k, mat, m0 = sizes[layer + 2], feedback, f_off[layer]
                        src, s0, alpha = deltas, h_off[layer + 1], float32(1.0)
                    elif signal == SIGNAL_TARGET:
                        k, mat, m0 = c, feedback, f_off[layer]
                        src, s0, alpha = t, start * c, float32(-1.0) / m
                    else:  # direct, direct-sign
                        k, mat, m0 = c, feedback, f_off[layer]
                        src, s0 = deltas, h_off[n_layers - 1]
                        alpha = float32(1.0) / m if signal == SIGNAL_DIRECT_SIGN else float32(1.0)
                    for tile in range(block, _tiles(m, rows), blocks):
                        r0, c0 = _tile_origin(tile, rows)
                        sign = signal == SIGNAL_DIRECT_SIGN
                        acc = tile_product(
                            tile_a, tile_b,
                            src, s0, k, 1, -1, sign,  # A = s
                            mat, m0, 1, k,  # B = M^T
                            m, rows, 0, k, r0, c0,
                        )  # fmt: skip
                        row, col = r0 + ty, c0 + tx
                        if row < m and col < rows:
                            at = h_off[layer] + row * rows + col
                            deltas[at] = alpha * acc * _derivative(hidden[at], acts[layer])
                # updates: W_{layer+2} here, and at the last phase every layer still pending
                lo = layer + 2 if phase > 0 else first
                hi = layer + 3 if phase > 0 else _lesser(2, n_layers)
                for j in range(_greater(lo, first), _lesser(hi, n_layers)):
                    k, cols = sizes[j], sizes[j + 1]
                    src, s0 = (x, start * k) if j == 0 else (hidden, h_off[j - 1])
                    for tile in range(block, _tiles(k + 1, cols), blocks):
                        r0, c0 = _tile_origin(tile, cols)
                        grad = tile_product(
                            tile_a, tile_b,
                            src, s0, 1, k, k, False,  # A = [h_{j-1}, 1]^T
                            deltas, h_off[j], cols, 1,  # B = delta_j
                            k + 1, cols, 0, m, r0, c0,
                        )  # fmt: skip
                        row, col = r0 + ty, c0 + tx
                        if row < k + 1 and col < cols:
                            at = w_off[j] + row * cols + col if row < k else b_off[j] + col
                            w_old = params[at]
                            grad += decay * w_old if row < k else float32(0.0)
                            if adam:
                                _adam(params, state, second, at, grad, rate, beta1, beta2, eps)
                            else:
                                _sgd(params, state, at, grad, lr, mu, nesterov)
                            if dynamics == DYNAMICS_KOLEN_POLLACK and j > 0 and row < k:
                                f_at = f_off[j - 1] + row * cols + col
                                feedback[f_at] = (1.0 - lr * decay) * (feedback[f_at] - w_old) + params[at]
                grid.sync()
            if dynamics == DYNAMICS_MIRROR:
                _mirror_phases(
                    tile_a, tile_b, params, feedback, hidden, deltas, sizes, w_off, f_off, h_off, m,
                    seed, update, mirror_lr, mirror_decay, mirror_half_width,
                )  # fmt: skip

    return kernel


@cuda.jit(device=True)
def _mirror_phases(
    tile_a, tile_b, params, feedback, hidden, deltas, sizes, w_off, f_off, h_off, m,
    seed, step, eta, lam, half_width,
):  # fmt: skip
    """The weight mirror after update ``step`` of an ``m``-row batch, for every hidden layer ``l``
    at once: noise ``xi_l`` (``m x n_l``) into ``hidden``, then ``y_l = xi_l W_{l+1}`` into the
    rows of ``deltas`` one layer up, then ``F_l <- (1 - eta lam) F_l + (eta / m) xi_l^T y_l``,
    a grid-wide barrier after each (the CPU engine's ``mirror_feedback``)."""
    grid = cuda.cg.this_grid()
    tid, threads = _thread_in_grid()
    block, blocks = cuda.blockIdx.x, cuda.gridDim.x
    ty, tx = cuda.threadIdx.y, cuda.threadIdx.x
    n_hidden = sizes.shape[0] - 2
    base = 0
    for layer in range(n_hidden):
        entries = m * sizes[layer + 1]
        for i in range(tid, entries, threads):
            hidden[h_off[layer] + i] = _mirror_noise(seed, step, base + i, half_width)
        base += entries
    grid.sync()
    for layer in range(n_hidden):  # y_l = xi_l W_{l+1}, m x n_{l+1}
        k, cols = sizes[layer + 1], sizes[layer + 2]
        for tile in range(block, _tiles(m, cols), blocks):
            r0, c0 = _tile_origin(tile, cols)
            acc = tile_product(
                tile_a, tile_b,
                hidden, h_off[layer], k, 1, -1, False,  # A = xi_l
                params, w_off[layer + 1], cols, 1,  # B = W_{l+1}
                m, cols, 0, k, r0, c0,
            )  # fmt: skip
            if r0 + ty < m and c0 + tx < cols:
                deltas[h_off[layer + 1] + (r0 + ty) * cols + c0 + tx] = acc
    grid.sync()
    for layer in range(n_hidden):  # F_l, n_l x n_{l+1}
        rows, cols = sizes[layer + 1], sizes[layer + 2]
        for tile in range(block, _tiles(rows, cols), blocks):
            r0, c0 = _tile_origin(tile, cols)
            acc = tile_product(
                tile_a, tile_b,
                hidden, h_off[layer], 1, rows, -1, False,  # A = xi_l^T
                deltas, h_off[layer + 1], cols, 1,  # B = y_l
                rows, cols, 0, m, r0, c0,
            )  # fmt: skip
            if r0 + ty < rows and c0 + tx < cols:
                at = f_off[layer] + (r0 + ty) * cols + c0 + tx
                feedback[at] = (1.0 - eta * lam) * feedback[at] + eta / m * acc
    grid.sync()


def launch_cooperative(kernel, args, tiles):
    """Launch ``kernel(*args)`` cooperatively with ``(TILE, TILE)`` blocks: as many blocks as
    can be resident at once (a grid-wide barrier needs them all resident), at most ``tiles``."""
    threads = (TILE, TILE)
    if config.ENABLE_CUDASIM:
        resident = 1  # the simulator has no barrier across blocks
    else:
        from numba import typeof

        compiled = kernel.compile(tuple(typeof(a) for a in args))
        resident = compiled.max_cooperative_grid_blocks(threads)
    kernel[max(1, min(resident, tiles)), threads](*args)
