"""General matrix product with BLAS's ``alpha`` and ``beta``, callable from ``@njit`` code.

``np.dot(a, b, out)`` in numba computes ``out = a @ b`` only. Training wants
``C <- alpha op(A) op(B) + beta C``: with it a momentum or plain SGD step
accumulates the weight gradient straight into the velocity or the weights, and
no gradient buffer is written and read back. :func:`gemm` lowers to the same
BLAS entry point numba's own ``np.dot`` uses (``numba_xxgemm``, which calls
scipy's ``?gemm``), so compiled code that uses it is cached on disk as usual.

Operands may be column blocks of C-ordered matrices (``w[:, lo:hi]``): any 2-D
array whose rows are contiguous, with the row stride as BLAS's leading dimension.
That is how the kernels split one product over threads.

Note: numba's cache does not notice edits to this file; after changing it,
clear the ``__pycache__`` folders of :mod:`fastfa.kernels`.
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.linalg import check_blas_return, ensure_blas, get_blas_kind

_CHAR = ir.IntType(8)
_VOIDP = cgutils.voidptr_t


@intrinsic
def gemm(typingctx, alpha, a, trans_a, b, trans_b, beta, c):
    """``c <- alpha op(a) op(b) + beta c`` for 2-D float arrays of one dtype with contiguous rows.

    ``op(x)`` is ``x.T`` when the matching ``trans_*`` flag is true. Shapes and
    strides are not checked: the caller guarantees ``op(a)`` is ``(m, k)``,
    ``op(b)`` is ``(k, n)``, ``c`` is ``(m, n)``, and that each array is C-ordered
    or a block of columns of a C-ordered array (unit stride along a row).
    """
    arrays = (a, b, c)
    if not all(isinstance(x, types.Array) and x.ndim == 2 and x.layout in "CA" for x in arrays):
        return None
    if not (a.dtype == b.dtype == c.dtype) or a.dtype not in (types.float32, types.float64):
        return None
    ensure_blas()
    sig = types.void(alpha, a, trans_a, b, trans_b, beta, c)

    def codegen(context, builder, signature, args):
        alpha_v, a_v, ta_v, b_v, tb_v, beta_v, c_v = args
        alpha_t, a_t, ta_t, b_t, tb_t, beta_t, c_t = signature.args
        dtype = c_t.dtype
        arr_a = context.make_array(a_t)(context, builder, a_v)
        arr_b = context.make_array(b_t)(context, builder, b_v)
        arr_c = context.make_array(c_t)(context, builder, c_v)
        a_rows, a_cols = cgutils.unpack_tuple(builder, arr_a.shape, 2)
        c_rows, c_cols = cgutils.unpack_tuple(builder, arr_c.shape, 2)
        ta = context.cast(builder, ta_v, ta_t, types.boolean)
        tb = context.cast(builder, tb_v, tb_t, types.boolean)
        k = builder.select(ta, a_rows, a_cols)
        itemsize = context.get_constant(types.intp, context.get_abi_sizeof(context.get_data_type(dtype)))
        one = context.get_constant(types.intp, 1)

        def leading_dimension(arr):  # the row stride in elements (at least 1, as BLAS requires)
            stride = builder.sdiv(cgutils.unpack_tuple(builder, arr.strides, 2)[0], itemsize)
            return builder.select(builder.icmp_signed(">", stride, one), stride, one)

        alpha_slot = cgutils.alloca_once_value(builder, context.cast(builder, alpha_v, alpha_t, dtype))
        beta_slot = cgutils.alloca_once_value(builder, context.cast(builder, beta_v, beta_t, dtype))
        trans = ir.Constant(_CHAR, ord("t"))
        notrans = ir.Constant(_CHAR, ord("n"))
        # Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: pass B first.
        fnty = ir.FunctionType(
            ir.IntType(32),
            [_CHAR, _CHAR, _CHAR, cgutils.intp_t, cgutils.intp_t, cgutils.intp_t, _VOIDP, _VOIDP,
             cgutils.intp_t, _VOIDP, cgutils.intp_t, _VOIDP, _VOIDP, cgutils.intp_t],
        )  # fmt: skip
        fn = cgutils.get_or_insert_function(builder.module, fnty, "numba_xxgemm")
        res = builder.call(
            fn,
            (
                ir.Constant(_CHAR, ord(get_blas_kind(dtype))),
                builder.select(tb, trans, notrans),
                builder.select(ta, trans, notrans),
                c_cols,
                c_rows,
                k,
                builder.bitcast(alpha_slot, _VOIDP),
                builder.bitcast(arr_b.data, _VOIDP),
                leading_dimension(arr_b),
                builder.bitcast(arr_a.data, _VOIDP),
                leading_dimension(arr_a),
                builder.bitcast(beta_slot, _VOIDP),
                builder.bitcast(arr_c.data, _VOIDP),
                leading_dimension(arr_c),
            ),
        )
        check_blas_return(context, builder, res)
        return context.get_dummy_value()

    return sig, codegen
