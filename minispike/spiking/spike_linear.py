"""SpikeLinear as one op: ``S = LIF(LayerNorm(x W^T + b))``, forward and backward side by side.

The same numbers as the three ops applied one after the other (``ops.linear``,
``ops.layer_norm``, ``LIFFunction``): the same functions do the work (``layer_norm_rows``,
``_forward_steps`` and their backwards), in the same order on the same values. The
composition stays in ``SpikeLinear(fused=False)`` as the reference; tests/test_fused_ops.py
compares this op with it (spikes exactly, gradients to 1e-6 in float32, 1e-12 in float64).
What the fusion changes is where the work happens and what is kept:

* memory: the Linear's output ``y`` is never a Tensor of the graph, so it is not kept for the
  backward. Its buffer becomes the LayerNorm's output and then, in place, the membrane ``H``:
  a step keeps ``xhat``, ``H`` and ``S`` of each SpikeLinear, not also ``y`` (a quarter less).
* cache: LayerNorm and LIF run one block of tokens (all T steps of them) after the other, so
  the LIF reads the normalised values while they are still in cache (``minispike.parallel``
  runs the blocks on both cores); backward the same, the LIF's reversed loop then LayerNorm's.

For ``x`` (T, B, L, D_in), or ``x`` (B, L, D_in) with ``steps=T`` (one input repeated over T,
the encoded embedding: Linear and LayerNorm then run once, not T times):

    forward   y = x W^T + b                               (T B L, D_out) one GEMM
              per block of tokens:  X = LN(y)  (in y's buffer);  H, S = LIF(X)  (H in X's buffer)
    backward  per block of tokens:  dX = LIF backward(H, dS);  dy = LN backward(dX)  (in dX's buffer)
              (repeated input: dX summed over T first)
              dx = dy W,   dW = dy^T x,   db = sum_rows dy      two GEMMs

Only for a neuron with fixed tau and V_th (numbers) and no initial membrane: learnable ones
take the composed path, which carries their gradients.
"""
from __future__ import annotations

from .. import backend, parallel
from ..ops.nn import layer_norm_backward_rows, layer_norm_rows
from ..tensor import Context, Function
from .lif import _backward_steps, _forward_steps
from .surrogate import ATan

__all__ = ["SpikeLinearFunction", "spike_linear", "SpikingMLPFunction", "spiking_mlp"]


class SpikeLinearFunction(Function):
    """``S = SpikeLinearFunction.apply(x, W, b, ln_w, ln_b, eps=, steps=, tau=, v_threshold=, ...)``."""

    @staticmethod
    def forward(ctx, x, weight, bias, ln_weight, ln_bias, *, eps=1e-5, steps=None, tau=2.0, v_threshold=1.0,
                v_reset=0.0, surrogate=None, detach_reset=True, decay_input=True, store=None):
        xp = backend.get_array_module(x)
        surrogate = surrogate or ATan()
        hard = v_reset is not None
        vr = float(v_reset) if hard else 0.0
        repeated = steps is not None  # x is one (B, L, D_in) input, the same at every step
        T = steps if repeated else x.shape[0]
        tokens = x.shape[:-1] if repeated else x.shape[1:-1]  # (B, L)
        D = weight.shape[0]
        y = x.reshape(-1, x.shape[-1]) @ weight.T  # (T B L, D_out), or (B L, D_out) repeated: the Linear
        y += bias
        M = y.shape[0] if repeated else y.shape[0] // T  # tokens per step
        xhat, rstd = xp.empty_like(y), xp.empty((y.shape[0], 1), dtype=y.dtype)
        S = xp.empty((T, M, D), dtype=y.dtype)  # (T, M, D) spikes, the output
        lif = (None, tau, v_threshold, surrogate, hard, vr, decay_input, xp)
        if repeated:
            H = xp.empty((T, M, D), dtype=y.dtype)  # the drive is the same at every t, the membrane is not

            def block(r):  # tokens r: LayerNorm once, then the LIF over T on the same rows
                layer_norm_rows(y[r], xhat[r], rstd[r], y[r], ln_weight, ln_bias, eps)
                _forward_steps(xp.broadcast_to(y[r], (T,) + y[r].shape), H[:, r], S[:, r], *lif)
        else:
            H, xhat3, rstd3 = y.reshape(T, M, D), xhat.reshape(T, M, D), rstd.reshape(T, M, 1)

            def block(r):  # tokens r at every t: LayerNorm (into y's buffer), then the LIF (H over it)
                for t in range(T):
                    layer_norm_rows(H[t, r], xhat3[t, r], rstd3[t, r], H[t, r], ln_weight, ln_bias, eps)
                _forward_steps(H[:, r], H[:, r], S[:, r], *lif)

        parallel.for_blocks(block, M, xp, per_row=T * D)
        ctx.save_for_backward(x, weight, xhat, rstd, ln_weight, H)
        # what the LIF's reversed loop reads from its context
        ctx.options = (surrogate, hard, vr, detach_reset, decay_input)
        ctx.tau, ctx.v_threshold, ctx.v0_is_array, ctx.v0 = tau, v_threshold, False, vr
        ctx.repeated, ctx.shape = repeated, (T, *tokens, D)
        out = S.reshape(ctx.shape)  # (T, B, L, D_out)
        if store is not None:
            store["H"], store["S"] = H.reshape(ctx.shape), out
        return out

    @staticmethod
    def backward(ctx, dS):
        x, weight, xhat, rstd, ln_weight, H = ctx.saved
        xp = backend.get_array_module(H)
        T, M, D = H.shape
        dS3 = dS.reshape(T, M, D)
        dX = xp.empty_like(H)  # (T, M, D): dL/dX, then dL/dy in its own buffer
        if ctx.repeated:
            dy = xp.empty_like(xhat)  # (M, D)

            def block(r):
                _backward_steps(ctx, H[:, r], dS3[:, r], dX[:, r], False, False, xp)
                g = dX[:, r].sum(axis=0)  # summed over T: the input was repeated (as Expand's backward does)
                return [layer_norm_backward_rows(g, xhat[r], rstd[r], ln_weight, dy[r])]
        else:
            dy = dX.reshape(T * M, D)
            xhat3, rstd3 = xhat.reshape(T, M, D), rstd.reshape(T, M, 1)

            def block(r):
                _backward_steps(ctx, H[:, r], dS3[:, r], dX[:, r], False, False, xp)
                return [layer_norm_backward_rows(dX[t, r], xhat3[t, r], rstd3[t, r], ln_weight, dX[t, r])
                        for t in range(T)]

        sums = [s for part in parallel.for_blocks(block, M, xp, per_row=T * D) for s in part]
        d_ln_weight, d_ln_bias = sums[0]
        for dw, db in sums[1:]:  # the blocks' sums over rows
            d_ln_weight, d_ln_bias = d_ln_weight + dw, d_ln_bias + db
        # the Linear: dx = dy W, dW = dy^T x, db = sum over rows of dy
        x2 = x.reshape(-1, x.shape[-1])
        dx = (dy @ weight).reshape(x.shape)
        return dx, dy.T @ x2, dy.sum(axis=0), d_ln_weight, d_ln_bias


def spike_linear(x, weight, bias, ln_weight, ln_bias, eps=1e-5, steps=None, **lif):
    """Functional ``LIF(LayerNorm(Linear(x)))`` on a (T, ..., D_in) Tensor (or (..., D_in) with ``steps``)."""
    return SpikeLinearFunction.apply(x, weight, bias, ln_weight, ln_bias, eps=eps, steps=steps, **lif)


class SpikingMLPFunction(Function):
    """``S = down(up(x))``, two SpikeLinear units as one op: the hidden spikes kept as 1 byte each.

    ``SpikingMLPFunction.apply(x, *up_params, *down_params, eps=, lif=, stores=)`` with each
    unit's ``(W, b, ln_w, ln_b)``. The two halves are ``SpikeLinearFunction``'s forward and
    backward, run one after the other on contexts of their own. The hidden layer's spikes
    (T, B, L, 4D) are the largest array of a block; as the output of a separate op they would
    be a float Tensor of the graph, kept for ``down``'s weight gradient ``dW = dy^T S_hidden``.
    Inside one op they are kept as booleans (exact: they are 0 or 1) and turned back into
    floats only for that product: a quarter of the memory. With ``spiking=False`` the hidden
    values are real numbers and are kept as they are.
    """

    @staticmethod
    def forward(ctx, x, w1, b1, lw1, lb1, w2, b2, lw2, lb2, *, eps=1e-5, lif=None, stores=(None, None)):
        lif = lif or {}
        ctx.up, ctx.down = Context(), Context()
        hidden = SpikeLinearFunction.forward(ctx.up, x, w1, b1, lw1, lb1, eps=eps, store=stores[0], **lif)
        out = SpikeLinearFunction.forward(ctx.down, hidden, w2, b2, lw2, lb2, eps=eps, store=stores[1], **lif)
        ctx.dtype, ctx.compact = hidden.dtype, (lif.get("surrogate") or ATan()).spiking
        if ctx.compact:  # (T, B, L, 4D) spikes, 1 byte each
            ctx.down.saved = (hidden.astype(bool),) + ctx.down.saved[1:]
        return out

    @staticmethod
    def backward(ctx, dS):
        kept = ctx.down.saved
        if ctx.compact:  # the hidden spikes as floats again, for dW
            ctx.down.saved = (kept[0].astype(ctx.dtype),) + kept[1:]
        d_hidden, *down_grads = SpikeLinearFunction.backward(ctx.down, dS)
        ctx.down.saved = kept  # the booleans again (a graph kept by retain_graph may be walked again)
        dx, *up_grads = SpikeLinearFunction.backward(ctx.up, d_hidden)
        return (dx, *up_grads, *down_grads)


def spiking_mlp(x, up, down, eps=1e-5, stores=(None, None), **lif):
    """Functional ``down(up(x))``; ``up`` and ``down`` are ``(W, b, ln_w, ln_b)`` Tensors each."""
    return SpikingMLPFunction.apply(x, *up, *down, eps=eps, lif=lif, stores=stores)
