"""The optional compiled kernels (minispike.compiled, numba) against the NumPy code they stand in for.

* GELU: the same values as the NumPy op (A&S 7.1.26) to 1e-6 relative, within
  2.5e-7 x max(1, |a|) of the exact float64 GELU on a dense grid of [-8, 8], the same answer
  for inf, -inf, NaN, +-0 and huge inputs; the accuracy check catches a planted coefficient error.
* LayerNorm for inference: the NumPy op's values to 1e-6 of the output's scale for widths 1
  to 384 and constant rows; on rows far from zero (mean 1000), where float32 itself is that
  far off, no further from the float64 answer than the NumPy op (the kernel sums a row in
  float64); the comparison catches a planted mistake (the variance over D - 1).
* BERT attention's masked softmax: the NumPy op's probabilities and outputs to
  1e-6 (relative to the output's scale), with and without a key mask, a fully masked row
  (uniform, as HF), NaN scores (a NaN row); its exponential (Taylor series of e^(x/256),
  squared 8 times) within 1e-7 relative of e^x on [-100, 0], which a series cut short fails.
* Where they run: forward passes on float32 host arrays (GELU and the softmax in training
  too, with the same outputs and gradients as the NumPy ops; LayerNorm only under
  ``no_grad``); never on float64, the strict backend or a strided view.
* The switch: ``MINISPIKE_COMPILED=0`` / ``use(False)`` / ``scope(False)``, and ``state()``
  naming why the kernels are off (numba missing included).
* A BERT's inference with and without the kernels: the same logits and hidden states to 1e-5.

The kernel tests skip where numba is not installed (the README's test command); CI's
``compiled`` stage installs it and sets MINISPIKE_COMPILED_REQUIRED=1, which turns those skips
into failures.
"""
import os
import sys
import types

import numpy as np
import pytest
from scipy.special import erf

from minispike import backend, compiled, no_grad, ops
from minispike.models.bert import BertConfig, BertForSequenceClassification
from minispike.tensor import Tensor


@pytest.fixture
def kernels():
    if not compiled.enabled():
        why = compiled.state()
        if os.environ.get("MINISPIKE_COMPILED_REQUIRED"):
            pytest.fail(f"MINISPIKE_COMPILED_REQUIRED is set but the kernels are {why}")
        pytest.skip(f"compiled kernels {why}")
    return compiled


def _gelu(x, use_kernels):
    with compiled.scope(use_kernels), no_grad():
        return ops.gelu(Tensor(x)).data


def _exact_gelu(x):
    x = np.asarray(x, np.float64)
    return x * 0.5 * (1.0 + erf(x / np.sqrt(2.0)))


def _scaled_error(got, x):
    """max |got - GELU(x)| / max(1, |x|) over the finite inputs."""
    x64 = np.asarray(x, np.float64)
    return float(np.max(np.abs(got - _exact_gelu(x64)) / np.maximum(1.0, np.abs(x64))))


GRID = np.linspace(-8, 8, 400001).astype(np.float32)


def test_gelu_kernel_matches_the_numpy_op(kernels):
    rng = np.random.default_rng(0)
    for x in (GRID, (rng.standard_normal((64, 1536)) * 3).astype(np.float32), np.float32([0.5])):
        np.testing.assert_allclose(_gelu(x, True), _gelu(x, False), rtol=1e-6, atol=1e-6)


def test_gelu_kernel_is_within_its_stated_error_of_the_exact_gelu(kernels):
    assert _scaled_error(_gelu(GRID, True), GRID) < 2.5e-7
    assert _scaled_error(_gelu(GRID, False), GRID) < 2.0e-7  # the NumPy path, for comparison


def test_the_accuracy_check_catches_a_planted_coefficient_error():
    """Negative control: the rational form in float32 with one coefficient off by 1e-4 of itself."""
    def rational(x, p, q):
        f32 = np.float32
        z = x * f32(1 / np.sqrt(2))
        w = z * z
        pw = sum(f32(c) * w ** k for k, c in enumerate(p))
        qw = sum(f32(c) * w ** k for k, c in enumerate(q))
        e = np.where(np.abs(z) > compiled.ERF_SATURATES, np.sign(z), z * pw / qw).astype(f32)
        return f32(0.5) * x * (f32(1) + e)
    assert _scaled_error(rational(GRID, compiled.ERF_P, compiled.ERF_Q), GRID) < 2.5e-7
    wrong = list(compiled.ERF_P)
    wrong[2] *= 1 + 1e-4
    assert _scaled_error(rational(GRID, wrong, compiled.ERF_Q), GRID) > 2.5e-7


def test_gelu_kernel_special_values(kernels):
    x = np.float32([np.inf, -np.inf, np.nan, 0.0, -0.0, 1e30, -1e30, 4.0, -4.0])
    with np.errstate(all="ignore"):
        got, ref = _gelu(x, True), _gelu(x, False)
    assert got[0] == np.inf and np.isnan(got[2]) and got[3] == 0 and got[5] == np.float32(1e30)
    assert np.isnan(got[1]) == np.isnan(ref[1])  # -inf * Phi(-inf) = -inf * 0, as the NumPy op
    assert got[6] == 0  # GELU(-1e30) = -0
    np.testing.assert_allclose(got[7:], ref[7:], rtol=1e-6, atol=1e-6)  # +-4: about 4 and -1.27e-4


def _count_calls(monkeypatch, *names):
    """Wrap the named kernels (default: GELU's) so that each call appends the kernel's name."""
    calls = []
    for name in names or ("gelu",):
        kernel = compiled._kernels[name]
        monkeypatch.setitem(compiled._kernels, name, lambda *args, k=kernel, n=name: (calls.append(n), k(*args)))
    return calls


def _layer_norm(x, w, b, use_kernels):
    with compiled.scope(use_kernels), no_grad():
        return ops.layer_norm(Tensor(x), Tensor(w), Tensor(b), eps=1e-12).data


def _ln_error(got, ref):
    """max |got - ref| in units of the output's scale (max |ref|, at least 1)."""
    return float(np.max(np.abs(got - ref)) / max(1.0, float(np.max(np.abs(ref)))))


def _ln_cases():
    rng = np.random.default_rng(3)
    for n, D, shift in ((64, 384, 0.0), (9, 7, 0.0), (5, 1, 0.0), (32, 384, 1000.0), (4, 16, 2.5)):
        x = (rng.standard_normal((n, D)) * 3 + shift).astype(np.float32)
        if shift == 2.5:
            x[:] = shift  # constant rows: xhat = 0, y = bias
        yield x, rng.standard_normal(D).astype(np.float32), rng.standard_normal(D).astype(np.float32)


def _exact_layer_norm(x, w, b):
    x = x.astype(np.float64)
    xc = x - x.mean(axis=1, keepdims=True)
    return xc / np.sqrt((xc * xc).mean(axis=1, keepdims=True) + 1e-12) * w + b


def test_layer_norm_kernel_matches_the_numpy_op(kernels):
    """To 1e-6, or, where the NumPy op's own float32 sums are further than that from the float64
    answer (rows far from zero), no further from that answer than the NumPy op is."""
    for x, w, b in _ln_cases():
        got, ref, exact = _layer_norm(x, w, b, True), _layer_norm(x, w, b, False), _exact_layer_norm(x, w, b)
        assert _ln_error(got, ref) < 1e-6 or _ln_error(got, exact) <= _ln_error(ref, exact), \
            (x.shape, _ln_error(got, ref), _ln_error(got, exact), _ln_error(ref, exact))


def test_the_layer_norm_comparison_catches_a_planted_mistake():
    """Negative control: LayerNorm with the variance over D - 1 (the unbiased estimate) differs."""
    x, w, b = next(_ln_cases())
    mean = x.mean(axis=1, keepdims=True)
    wrong = (x - mean) / np.sqrt(((x - mean) ** 2).sum(axis=1, keepdims=True) / (x.shape[1] - 1) + 1e-12) * w + b
    assert _ln_error(wrong.astype(np.float32), _layer_norm(x, w, b, False)) > 1e-4


def test_layer_norm_kernel_runs_for_inference_only(kernels, monkeypatch):
    calls = _count_calls(monkeypatch, "layer_norm")
    x, w, b = next(_ln_cases())
    _layer_norm(x, w, b, True)
    assert calls, "float32 under no_grad: the kernel runs"
    calls.clear()
    t = Tensor(x, requires_grad=True)
    ops.layer_norm(t, Tensor(w), Tensor(b)).sum().backward()  # training: NumPy keeps xhat and 1/std
    with no_grad():
        ops.layer_norm(Tensor(x.astype(np.float64)), Tensor(w.astype(np.float64)), Tensor(b.astype(np.float64)))
    backend.use("strict")
    xp = backend.current()
    with no_grad():
        ops.layer_norm(Tensor(xp.asarray(x)), Tensor(xp.asarray(w)), Tensor(xp.asarray(b)))
    assert not calls, calls


def test_gelu_kernel_in_training_keeps_what_the_backward_reads(kernels):
    rng = np.random.default_rng(6)
    x = (rng.standard_normal((32, 96)) * 3).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    runs = []
    for on in (True, False):
        with compiled.scope(on):
            t = Tensor(x, requires_grad=True)
            y = ops.gelu(t)
            (y * Tensor(g)).sum().backward()
            runs.append((y.data, t.grad))
    (y1, g1), (y0, g0) = runs
    np.testing.assert_allclose(y1, y0, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(g1, g0, rtol=1e-6, atol=1e-6)  # Phi(a) + a phi(a) from the kept arrays


def test_gelu_kernel_runs_on_float32_host_arrays_only(kernels, monkeypatch):
    calls = _count_calls(monkeypatch, "gelu", "gelu_keep")
    x = np.random.default_rng(1).standard_normal((8, 16)).astype(np.float32)
    with no_grad():
        ops.gelu(Tensor(x))
    ops.gelu(Tensor(x, requires_grad=True)).sum().backward()
    assert set(calls) == {"gelu", "gelu_keep"}, calls
    calls.clear()
    with no_grad():
        ops.gelu(Tensor(x.astype(np.float64)))  # float64: the exact erf
        ops.gelu(Tensor(np.asfortranarray(np.ones((8, 16), np.float32))[:, ::2]))  # a strided view
    backend.use("strict")
    with no_grad():
        ops.gelu(Tensor(backend.current().asarray(x)))  # the stand-in for CuPy
    assert not calls, calls


def test_the_switch_and_state(kernels, monkeypatch):
    calls = _count_calls(monkeypatch)
    x = Tensor(np.ones((4, 4), np.float32))
    with compiled.scope(False), no_grad():
        assert compiled.state().startswith("off: turned off") and not compiled.enabled()
        ops.gelu(x)
    assert not calls and compiled.state().startswith("on (numba ")


def test_state_says_numba_is_missing(monkeypatch):
    monkeypatch.setattr(compiled, "_kernels", {})
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba raises ImportError
    assert compiled.state() == "off: numba is not installed (pip install 'minispike[fast]')"
    x = np.ones((3, 4), np.float32)
    assert compiled.gelu(x) is None and compiled.layer_norm(x, x[0], x[0], 1e-12) is None
    with no_grad():  # the op falls back to its NumPy code
        np.testing.assert_allclose(ops.gelu(Tensor(np.ones(3, np.float32))).data, _exact_gelu(np.ones(3)), rtol=1e-6)


def test_a_numba_that_cannot_compile_them_says_so_once(monkeypatch, caplog):
    numba = pytest.importorskip("numba", reason="numba is not installed")
    monkeypatch.setattr(compiled, "_kernels", {})
    broken = types.ModuleType("minispike._numba_kernels")  # a kernels module whose compiling fails

    def fail(name):
        raise RuntimeError("LLVM says no")
    broken.__getattr__ = fail
    monkeypatch.setitem(sys.modules, "minispike._numba_kernels", broken)
    with caplog.at_level("WARNING", logger="minispike.compiled"):
        assert not compiled.enabled() and not compiled.enabled()
    expected = f"off: numba {numba.__version__} could not compile the kernels: RuntimeError: LLVM says no"
    assert compiled.state() == expected
    assert len(caplog.records) == 1
    with no_grad():
        np.testing.assert_allclose(ops.gelu(Tensor(np.ones(3, np.float32))).data, _exact_gelu(np.ones(3)), rtol=1e-6)


def test_the_environment_variable_turns_them_off():
    import subprocess
    code = "from minispike import compiled; print(compiled.state())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "MINISPIKE_COMPILED": "0"}).stdout
    assert out.startswith("off: turned off"), out


def test_bert_inference_with_and_without_the_kernels(kernels):
    model = BertForSequenceClassification(BertConfig(vocab_size=120, hidden_size=48, num_hidden_layers=2,
                                                     num_attention_heads=4, intermediate_size=96)).eval()
    rng = np.random.default_rng(2)
    ids, mask = rng.integers(0, 120, size=(3, 10)), np.ones((3, 10), np.int64)
    mask[1, 6:] = 0
    runs = []
    for on in (True, False):
        with compiled.scope(on), no_grad():
            out = model.bert(ids, mask, output_hidden_states=True)
            runs.append([h.data for h in out.hidden_states] + [model(ids, mask).logits.data])
    for a, b in zip(*runs):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def _attention(qkv, mask, use_kernels, heads=4, training=False, dropout=0.0):
    store = {}
    with compiled.scope(use_kernels), no_grad():
        y = ops.softmax_attention(Tensor(qkv), mask, heads=heads, scale=0.35, dropout=dropout, training=training,
                                  store=store)
    return y.data, store["probs"]


def test_masked_softmax_kernel_matches_the_numpy_op(kernels):
    rng = np.random.default_rng(4)
    qkv = (rng.standard_normal((5, 9, 3 * 16)) * 2).astype(np.float32)
    mask = np.zeros((5, 1, 1, 9), np.float32)
    mask[1, ..., 6:] = np.finfo(np.float32).min  # padding
    mask[2] = np.finfo(np.float32).min  # every key masked: uniform attention, as HF's softmax gives
    for m in (mask, None):
        (y1, p1), (y0, p0) = _attention(qkv, m, True), _attention(qkv, m, False)
        assert _ln_error(p1, p0) < 1e-6 and _ln_error(y1, y0) < 1e-6, (_ln_error(p1, p0), _ln_error(y1, y0))
    _, p = _attention(qkv, mask, True)
    assert np.all(p[1, ..., 6:] == 0) and np.allclose(p[2], 1 / 9)
    per_query = np.zeros((5, 1, 9, 9), np.float32)
    per_query[:, :, :, 7:] = np.finfo(np.float32).min  # another mask shape: the NumPy code runs
    (y1, p1), (y0, p0) = _attention(qkv, per_query, True), _attention(qkv, per_query, False)
    assert np.array_equal(y1, y0) and np.all(p1[..., 7:] == 0)
    bad = qkv.copy()
    bad[0, 3, 0] = np.nan  # a query of head 0 at position 3
    with np.errstate(invalid="ignore"):
        (_, p1), (_, p0) = _attention(bad, None, True), _attention(bad, None, False)
    assert np.array_equal(np.isnan(p1), np.isnan(p0)) and np.isnan(p1[0, 0, 3]).all()


def _exp_error(values, exact):
    return float(np.max(np.abs(values - exact) / exact))


def test_the_softmax_exponential_is_accurate_and_the_check_catches_a_short_series(kernels):
    x = np.linspace(-100, 0, 20001)
    exp = kernels._kernels["exp_nonpositive"]
    assert _exp_error(np.array([exp(v) for v in x]), np.exp(x)) < 1e-7
    assert abs(exp(-np.inf) / np.exp(-110.0) - 1) < 1e-7 and np.float32(exp(-1e30)) == 0  # masked: 0 in float32
    short = (1 + x / 256 * (1 + x / 512 * (1 + x / 768))) ** 256  # 4 terms of the series instead of 11
    assert _exp_error(short, np.exp(x)) > 1e-7


def test_masked_softmax_kernel_in_training(kernels, monkeypatch):
    """With dropout after it and a backward: the same outputs and gradients as the NumPy op."""
    qkv = np.random.default_rng(5).standard_normal((2, 6, 24)).astype(np.float32)
    g = np.random.default_rng(7).standard_normal((2, 6, 8)).astype(np.float32)
    runs = []
    for on in (True, False):
        backend.seed(11)  # the same dropout mask both times
        with compiled.scope(on):
            t = Tensor(qkv, requires_grad=True)
            y = ops.softmax_attention(t, None, heads=4, scale=0.35, dropout=0.3, training=True)
            (y * Tensor(g)).sum().backward()
            runs.append((y.data, t.grad))
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(runs[0][1], runs[1][1], rtol=1e-5, atol=1e-6)
    calls = _count_calls(monkeypatch, "masked_softmax")
    with no_grad():
        ops.softmax_attention(Tensor(qkv.astype(np.float64)), None, heads=4, scale=0.35)  # float64: NumPy
    assert not calls, calls
    _attention(qkv, None, True)
    assert calls, "float32: the kernel runs"
