"""The leaky integrate-and-fire neuron, multi-step, with backpropagation through time by hand.

Inputs are shaped ``(T, ...)``: time first, any number of neurons after it. With membrane
``V[-1] = v0`` (default ``V_reset``, or 0 for soft reset), for ``t = 0 .. T-1``:

    charge  H[t] = V[t-1] + (X[t] - (V[t-1] - V_reset)) / tau      decay_input=True (spikingjelly)
            H[t] = V[t-1] - (V[t-1] - V_reset) / tau + X[t]        decay_input=False
    fire    S[t] = Theta(H[t] - V_th)                               (Theta(0) = 1; a surrogate backward)
    reset   V[t] = H[t] (1 - S[t]) + V_reset S[t]                   hard (v_reset a number)
            V[t] = H[t] - V_th S[t]                                 soft (v_reset=None; V_reset = 0 in charge)

With V_reset = 0 the charge is ``H = V + (X - V) / tau = (1 - 1/tau) V + X / tau`` (leak
factor beta = 1 - 1/tau) or, without decay_input, ``H = (1 - 1/tau) V + X`` (snnTorch's Leaky).
``detach_reset`` treats the S inside the reset as a constant: no gradient flows along
H -> S -> V.

Backward (derived term by term in docs/lif.md) carries ``dH[t] = dL/dH[t]`` in one reversed
loop, where ``dS[t]`` is the gradient arriving at the spikes and ``g'[t] = g'(H[t] - V_th)``:

    dV[T-1] = 0
    for t = T-1 .. 0:
        dH[t] = dS[t] g'[t]                               through the spike (to the layers above)
              + dV[t] dV[t]/dH[t]                         through the reset's kept membrane
                                                            hard: (1 - S[t]),  soft: 1
              + dV[t] dV[t]/dS[t] g'[t]                   through the reset's spike (0 if detach_reset)
                                                            hard: (V_reset - H[t]),  soft: -V_th
        dV[t-1] = dH[t] (1 - 1/tau)                       through the leak
        dX[t]   = dH[t] / tau   (decay_input)  or  dH[t]  through the input
    dv0 = dV[-1]

Only H is saved (one array of the input's shape); S and V are recomputed from it. tau and
V_th may be learnable (0-d Tensors); their gradients are sums over the same loop:

    dtau = sum_t dH[t] dH[t]/dtau,   dH/dtau = -(H[t] - V[t-1]) / tau     (decay_input)
                                             = (V[t-1] - V_reset) / tau^2  (no decay_input)
    dV_th = -sum_t (dS[t] + dV[t] dV[t]/dS[t]) g'[t]   -   sum_t dV[t] S[t]  (the last: soft reset)
"""
from __future__ import annotations

import contextlib
import threading

from .. import backend, parallel
from ..nn import Module, Parameter
from ..tensor import Function
from .surrogate import ATan, Surrogate

__all__ = ["LIFFunction", "lif", "unrolled_lif", "LIF", "record", "Recorder", "name_neurons"]


def _is_number(v):
    return v is None or isinstance(v, (int, float))


# ----------------------------------------------------------------------------------------
# The op: forward loop and hand-written reversed loop
# ----------------------------------------------------------------------------------------
class LIFFunction(Function):
    """Multi-step LIF: ``S = LIFFunction.apply(X, v0, tau, v_threshold, v_reset=..., ...)``.

    ``X`` is ``(T, ...)``. ``v0`` (initial membrane: None, a number or an array broadcastable
    to ``X.shape[1:]``), ``tau`` and ``v_threshold`` (numbers or 0-d Tensors) are positional so
    that each may carry a gradient. ``store``: a dict that receives ``H`` (membrane before
    firing) and ``S`` (spikes) for traces.
    """

    @staticmethod
    def forward(ctx, x, v0=None, tau=2.0, v_threshold=1.0, *, v_reset=0.0, surrogate=None,
                detach_reset=True, decay_input=True, store=None, overwrite_input=False):
        xp = backend.get_array_module(x)
        surrogate = surrogate or ATan()
        hard = v_reset is not None
        vr = float(v_reset) if hard else 0.0
        # H: (T, ...) membrane after charging, before firing: all that backward needs. With
        # overwrite_input (the caller's promise that nothing else reads x), H[t] replaces X[t]
        # in x's own buffer: X[t] is dead once H[t] is computed, and one (T, ...) array is saved.
        H = x if overwrite_input and _writable(x) else xp.empty_like(x)
        S = xp.empty_like(x)  # (T, ...) spikes, the output
        T = x.shape[0]
        x2, H2, S2 = x.reshape(T, -1), H.reshape(T, -1), S.reshape(T, -1)  # (T, N) views: neurons side by side
        args = (v0, tau, v_threshold, surrogate, hard, vr, decay_input, xp)
        if _is_number(v0):  # neurons are independent: blocks of them on both cores (minispike.parallel)
            parallel.for_blocks(lambda n: _forward_steps(x2[:, n], H2[:, n], S2[:, n], *args), H2.shape[1], xp, T)
        else:  # an array v0 broadcasts over x.shape[1:]: one block
            _forward_steps(x, H, S, *args)
        ctx.save_for_backward(H)
        ctx.options = (surrogate, hard, vr, detach_reset, decay_input)
        ctx.v0_is_array = not _is_number(v0)
        ctx.v0 = v0 if ctx.v0_is_array else (vr if v0 is None else float(v0))
        ctx.tau, ctx.v_threshold = tau, v_threshold
        if store is not None:
            store["H"], store["S"] = H, S
        return S

    @staticmethod
    def backward(ctx, dS):
        (H,) = ctx.saved
        xp = backend.get_array_module(H)
        T = H.shape[0]
        dH = xp.empty_like(H)  # (T, ...) becomes dX in place
        want_tau, want_vth = not _is_number(ctx.tau), not _is_number(ctx.v_threshold)
        if ctx.v0_is_array:  # dv0 has v0's shape: one block
            dtau, dvth, dv0 = _backward_steps(ctx, H, dS, dH, want_tau, want_vth, xp)
        else:  # neurons are independent: blocks of them on both cores; the sums add up over blocks
            H2, dS2, dH2 = H.reshape(T, -1), dS.reshape(T, -1), dH.reshape(T, -1)  # (T, N)
            parts = parallel.for_blocks(lambda n: _backward_steps(ctx, H2[:, n], dS2[:, n], dH2[:, n], want_tau,
                                                                  want_vth, xp), H2.shape[1], xp, T)
            dtau, dvth = sum(p[0] for p in parts), sum(p[1] for p in parts)
            dv0 = None
        tau, v_th = ctx.tau, ctx.v_threshold
        return (dH, dv0,
                xp.asarray(dtau, dtype=H.dtype).reshape(tau.shape) if want_tau else None,
                xp.asarray(dvth, dtype=H.dtype).reshape(v_th.shape) if want_vth else None)


def _forward_steps(x, H, S, v0, tau, v_threshold, surrogate, hard, vr, decay_input, xp):
    """The forward loop over t on (T, ...) arrays (or a block of their neurons): fills H and S."""
    v = vr if v0 is None else v0  # V[-1]
    for t in range(x.shape[0]):
        h = H[t]
        # charge
        if decay_input:  # H = V + (X - (V - V_reset)) / tau
            if t == 0 and v0 is None and vr == 0.0:
                xp.divide(x[0], tau, out=h)  # V = 0: the same numbers, one pass
            else:
                xp.subtract(x[t], v if vr == 0.0 else v - vr, out=h)
                h /= tau
                h += v
        else:  # H = V - (V - V_reset) / tau + X
            h[...] = v - (v if vr == 0.0 else v - vr) / tau + x[t]
        # fire
        if surrogate.spiking:
            fired = h >= v_threshold  # == Theta(h - V_th) exactly in IEEE arithmetic
            S[t] = fired
        else:
            S[t] = surrogate.primitive(h - v_threshold)
        s = S[t]
        # reset
        if hard:
            if surrogate.spiking:  # H (1 - S) + V_reset S, exactly, for S in {0, 1} and a finite H
                v = h * ~fired  # a product with the booleans: ~15x faster than xp.where on random spikes
                if vr != 0.0:
                    v += vr * fired
            else:
                v = h * (1.0 - s) + vr * s
        else:
            v = h - v_threshold * s


def _backward_steps(ctx, H, dS, dH, want_tau, want_vth, xp):
    """The reversed loop on (T, ...) arrays (or a block of their neurons): fills dH with dX;
    returns this block's (dtau, dV_th) sums and dv0."""
    surrogate, hard, vr, detach_reset, decay_input = ctx.options
    tau, v_th = ctx.tau, ctx.v_threshold
    T = H.shape[0]
    if surrogate.spiking:
        S = H >= v_th  # (T, ...) bool, recomputed from H
    else:
        S = surrogate.primitive(H - v_th)
    xp.subtract(H, v_th, out=dH)  # H - V_th, in dH's buffer (no third (T, ...) array)
    sg = surrogate.derivative(dH)  # (T, ...) g'[t] = dS[t]/dH[t], for all t at once
    xp.multiply(dS, sg, out=dH)  # (T, ...) "through the spike"; the loop adds the rest in place
    dtau = 0.0
    dvth = -(dH.sum()) if want_vth else 0.0
    beta = 1.0 - 1.0 / tau
    dV = None  # dL/dV[t]; zero after the last step
    for t in range(T - 1, -1, -1):
        if dV is not None:
            s = S[t]
            h = dH[t]
            # through the reset's spike: dV[t] * dV[t]/dS[t] * g'[t]   (cut by detach_reset)
            if not detach_reset:
                g_t = surrogate.derivative(H[t] - v_th)
                dV_dS = (vr - H[t]) if hard else -v_th
                through_reset = dV * dV_dS * g_t
                if want_vth:
                    dvth = dvth - through_reset.sum()
                h += through_reset
            # through the reset's kept membrane: dV[t] * dV[t]/dH[t]
            if hard:
                if surrogate.spiking:  # (1 - S[t]) on {0, 1}: zero dV where the neuron fired
                    dV *= ~s  # a product with the booleans: ~15x faster than copyto(where=) on random spikes
                    h += dV
                else:
                    h += dV * (1.0 - s)
            else:
                h += dV
            if want_vth and not hard:  # soft reset V = H - V_th S: dV/dV_th = -S
                dvth = dvth - (dV * s).sum()
        if want_tau:
            v_prev = _membrane_before(t, H, S, ctx, hard, vr, v_th, xp)
            if decay_input:  # dH/dtau = -(X - (V - V_reset)) / tau^2 = -(H - V) / tau
                dtau = dtau - (dH[t] * (H[t] - v_prev)).sum() / tau
            else:  # dH/dtau = (V - V_reset) / tau^2
                dtau = dtau + (dH[t] * (v_prev - vr)).sum() / (tau * tau)
        # through the leak: dV[t-1] = dH[t] * (1 - 1/tau)
        if t > 0 or ctx.v0_is_array:
            dV = dH[t] * beta
    # through the input: dX[t] = dH[t] * dH[t]/dX[t]
    if decay_input:
        dH /= tau
    return dtau, dvth, (dV if ctx.v0_is_array else None)


def _writable(x):
    flags = getattr(x, "flags", None)
    return flags is not None and flags.c_contiguous and getattr(flags, "writeable", True)


def _membrane_before(t, H, S, ctx, hard, vr, v_th, xp):
    """V[t-1], recomputed from H[t-1] and S[t-1] (or v0 at t = 0)."""
    if t == 0:
        return ctx.v0
    h, s = H[t - 1], S[t - 1]
    s = s.astype(H.dtype) if s.dtype != H.dtype else s
    if hard:
        return h * (1.0 - s) + vr * s
    return h - v_th * s


def lif(x, tau=2.0, v_threshold=1.0, v_reset=0.0, surrogate: Surrogate | None = None,
        detach_reset=True, decay_input=True, v0=None, store=None):
    """Functional multi-step LIF on a ``(T, ...)`` Tensor (explicit BPTT)."""
    return LIFFunction.apply(x, v0, tau, v_threshold, v_reset=v_reset, surrogate=surrogate or ATan(),
                             detach_reset=detach_reset, decay_input=decay_input, store=store)


def unrolled_lif(x, tau=2.0, v_threshold=1.0, v_reset=0.0, surrogate: Surrogate | None = None,
                 detach_reset=True, decay_input=True, v0=None):
    """The same neuron built from primitive autograd ops: one small graph per time step.

    The teaching contrast to ``LIFFunction`` (and its cross-check): the engine's generic
    backward walks ~10 nodes per step and keeps every intermediate alive.
    """
    from ..ops import stack
    surrogate = surrogate or ATan()
    hard = v_reset is not None
    vr = float(v_reset) if hard else 0.0
    v = vr if v0 is None else v0
    spikes = []
    for t in range(x.shape[0]):
        if decay_input:
            h = v + (x[t] - (v - vr)) / tau
        else:
            h = v - (v - vr) / tau + x[t]
        s = surrogate(h - v_threshold)
        s_r = s.detach() if detach_reset else s
        v = h * (1.0 - s_r) + vr * s_r if hard else h - v_threshold * s_r
        spikes.append(s)
    return stack(spikes, axis=0)


# ----------------------------------------------------------------------------------------
# Traces: what the neurons did (opt-in)
# ----------------------------------------------------------------------------------------
_rec_state = threading.local()


class Recorder:
    """Spikes and membranes of every LIF that runs inside ``with record() as rec:``.

    ``rec.traces[name]``: a list, one entry per call, of ``{"spikes": S, "membrane": H}``
    (``(T, ...)`` arrays, no copies; membrane = H, the potential before firing/reset).
    ``rec.counts[name] = [spikes, neurons x steps]`` accumulates over calls (restricted to real
    tokens when ``rec.token_mask`` (B, L) is set and the trace is shaped (T, B, L, ...)).
    ``keep=False`` keeps only the counts (for firing rates over a whole data set).
    """

    def __init__(self, keep: bool = True, membrane: bool = True):
        self.keep, self.membrane = keep, membrane
        self.traces: dict[str, list] = {}
        self.counts: dict[str, list] = {}
        self.token_mask = None

    def add(self, name, S, H):
        if self.keep:
            entry = {"spikes": S}
            if self.membrane:
                entry["membrane"] = H
            self.traces.setdefault(name, []).append(entry)
        n_spikes, n_total = _count(S, self.token_mask)
        c = self.counts.setdefault(name, [0.0, 0])
        c[0] += n_spikes
        c[1] += n_total

    def __getitem__(self, name):
        """The last trace of neuron ``name``."""
        return self.traces[name][-1]

    def names(self):
        return list(self.counts)

    def firing_rates(self) -> dict:
        """Spikes per neuron per time step, for each named LIF (over real tokens when masked)."""
        return {k: (c[0] / c[1] if c[1] else 0.0) for k, c in self.counts.items()}


def _count(S, mask):
    xp = backend.get_array_module(S)
    if mask is not None and S.ndim >= 3 and tuple(S.shape[1:3]) == tuple(mask.shape):
        m = xp.asarray(mask).astype(S.dtype)  # (B, L)
        per_token = S.reshape(S.shape[0], S.shape[1], S.shape[2], -1).sum(axis=(0, 3))  # (B, L)
        n_neurons = S.size // (S.shape[1] * S.shape[2])  # T x (neurons per token)
        return float((per_token * m).sum()), int(float(m.sum()) * n_neurons)
    return float(S.sum()), int(S.size)


def _active_recorders():
    return getattr(_rec_state, "stack", [])


@contextlib.contextmanager
def record(keep: bool = True, membrane: bool = True):
    """``with record() as rec: model(ids)`` then ``rec.firing_rates()``, ``rec["blocks.0.mlp.lif1"]``."""
    rec = Recorder(keep=keep, membrane=membrane)
    stack = list(_active_recorders())
    _rec_state.stack = stack + [rec]
    try:
        yield rec
    finally:
        _rec_state.stack = stack


def recording() -> bool:
    return bool(_active_recorders())


def set_token_mask(mask):
    """Tell active recorders which tokens are real (``(B, L)``), for masked firing rates."""
    for rec in _active_recorders():
        rec.token_mask = mask


# ----------------------------------------------------------------------------------------
# The layer
# ----------------------------------------------------------------------------------------
class LIF(Module):
    """Multi-step LIF neurons on ``(T, ...)`` inputs (spikingjelly ``LIFNode(step_mode='m')``).

    ``v_reset=None`` is the soft reset (subtract V_th). ``learnable_tau`` / ``learnable_threshold``
    make tau / V_th scalar Parameters (``tau`` / ``v_threshold`` in the state dict).
    ``trace=True`` keeps the last ``{"spikes", "membrane"}`` in ``self.last_trace``; inside
    ``record()`` every LIF reports under ``self.name`` (set to its module path by
    ``name_neurons(model)``). ``overwrite_input=True`` lets the neuron keep its membrane in
    the input's buffer: only for inputs that nothing else reads (SpikeLinear's LayerNorm output).
    ``surrogate_function=`` (spikingjelly's keyword) is another name for ``surrogate=``.

    Identical spikes in other libraries (same input, float64; checked with spikingjelly 2.0.0
    and snnTorch 1.0.0 on 320,000 random inputs, docs/lif.md):

    * spikingjelly ``LIFNode(tau=, v_threshold=, v_reset=, decay_input=, detach_reset=,
      surrogate_function=surrogate.ATan(), step_mode='m')`` equals ``LIF`` with the same
      settings, for hard reset (``v_reset`` a number) and soft (``None``), with or without
      ``decay_input``: the same operation order and ``Theta(0) = 1``, so bit for bit.
    * snnTorch ``Leaky(beta=1 - 1/tau, threshold=V_th, reset_mechanism="zero")`` (either
      ``reset_delay``) equals ``LIF(tau, V_th, v_reset=0.0, decay_input=False)``: both compute
      ``H = beta V + X`` and zero the membrane after a spike. Two caveats: snnTorch fires on
      ``H > V_th`` where minispike (and spikingjelly) fire on ``H >= V_th``, and it multiplies by
      ``beta`` where minispike subtracts ``V / tau`` (the same number for tau a power of two;
      otherwise a last-bit rounding can flip a spike that sits on the threshold). snnTorch's
      default ``reset_mechanism="subtract"`` has no equal: it subtracts ``V_th`` after the
      leak, minispike's soft reset before it (about 10% of the spikes differ).
    """

    def __init__(self, tau=2.0, v_threshold=1.0, v_reset=0.0, surrogate: Surrogate | None = None,
                 detach_reset=True, decay_input=True, learnable_tau=False, learnable_threshold=False,
                 trace=False, name="lif", overwrite_input=False, *, surrogate_function: Surrogate | None = None):
        super().__init__()
        if surrogate_function is not None:
            if surrogate is not None:
                raise TypeError("LIF: give surrogate= or surrogate_function= (spikingjelly's name for it), not both")
            surrogate = surrogate_function
        if float(tau) < 1.0:
            raise ValueError(f"LIF tau must be >= 1 (got {tau}): the leak factor is 1 - 1/tau")
        dtype = backend.default_dtype()
        self.tau = Parameter(backend.current().asarray(float(tau), dtype=dtype)) if learnable_tau else float(tau)
        self.v_threshold = (Parameter(backend.current().asarray(float(v_threshold), dtype=dtype))
                            if learnable_threshold else float(v_threshold))
        self.v_reset = None if v_reset is None else float(v_reset)
        self.surrogate = surrogate if surrogate is not None else ATan()
        self.detach_reset = bool(detach_reset)
        self.decay_input = bool(decay_input)
        self.trace = bool(trace)
        self.last_trace = None
        self.name = name
        self.overwrite_input = bool(overwrite_input)

    def forward(self, x, v0=None):
        store = self.trace_store()
        out = LIFFunction.apply(x, v0, self.tau, self.v_threshold, v_reset=self.v_reset,
                                surrogate=self.surrogate, detach_reset=self.detach_reset,
                                decay_input=self.decay_input, store=store, overwrite_input=self.overwrite_input)
        self.report(store)
        return out

    def options(self) -> dict:
        """The neuron's settings as ``LIFFunction`` takes them (keywords), tau and V_th included."""
        return dict(tau=self.tau, v_threshold=self.v_threshold, v_reset=self.v_reset, surrogate=self.surrogate,
                    detach_reset=self.detach_reset, decay_input=self.decay_input)

    def trace_store(self):
        """A dict for the op to fill with ``H`` and ``S`` when traced or recorded, else None."""
        return {} if (self.trace or _active_recorders()) else None

    def report(self, store):
        """Hand what the op stored to ``last_trace`` and to the active recorders."""
        if store is None:
            return
        if self.trace:
            self.last_trace = {"spikes": store["S"], "membrane": store["H"]}
        for rec in _active_recorders():
            rec.add(self.name, store["S"], store["H"])

    def extra_repr(self):
        tau = self.tau if isinstance(self.tau, float) else "learnable"
        vth = self.v_threshold if isinstance(self.v_threshold, float) else "learnable"
        reset = "soft" if self.v_reset is None else f"hard to {self.v_reset:g}"
        return (f"tau={tau}, v_threshold={vth}, reset={reset}, surrogate={self.surrogate!r}, "
                f"detach_reset={self.detach_reset}, decay_input={self.decay_input}")


def name_neurons(model, prefix=""):
    """Give every LIF (and spike encoder) inside ``model`` its module path as ``.name``."""
    for path, m in model.named_modules(prefix):
        if isinstance(m, LIF) or getattr(m, "_is_neuron", False):
            m.name = path or "lif"
    return model
