"""The exercises and their checker (minispike/autograder.py, ``python -m minispike check``).

* every reference (the library behind the exercises' signatures) passes, through the CLI too;
* every untouched stub fails, with one "not implemented yet" line;
* a learner's plain NumPy solution of each exercise passes (the docstrings are enough);
* a planted mistake fails with the right hint and the right coordinate, and every known-wrong
  variant the checker holds earns its own hint;
* the exit codes: 0 all pass, 1 a failure, 2 a user error (one line).
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from minispike import autograder
from minispike.autograder import EXERCISES, grade, grade_file, reference_impl, run_check

ROOT = Path(__file__).resolve().parents[1]
EXERCISE_DIR = ROOT / "exercises"

# A learner's solution of each exercise, in plain NumPy (only what the docstrings say).
SOLUTIONS = {
    "ex01_broadcast_mul": """\
def unbroadcast(grad, shape):
    grad = np.asarray(grad)
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    for axis, n in enumerate(shape):
        if n == 1 and grad.shape[axis] != 1:
            grad = grad.sum(axis=axis, keepdims=True)
    return grad


def mul_backward(a, b, grad):
    return unbroadcast(grad * b, np.shape(a)), unbroadcast(grad * a, np.shape(b))
""",
    "ex02_layernorm_backward": """\
def layernorm_forward(x, w, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    xc = x - mu
    var = (xc * xc).mean(-1, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    xhat = xc * rstd
    return xhat * w + b, (xhat, rstd)


def layernorm_backward(dy, cache, w):
    xhat, rstd = cache
    rows = tuple(range(dy.ndim - 1))
    dxhat = dy * w
    dx = rstd * (dxhat - dxhat.mean(-1, keepdims=True) - xhat * (dxhat * xhat).mean(-1, keepdims=True))
    return dx, (dy * xhat).sum(rows), dy.sum(rows)
""",
    "ex03_softmax_cross_entropy": """\
def _log_softmax(z):
    s = z - z.max(-1, keepdims=True)
    return s - np.log(np.exp(s).sum(-1, keepdims=True))


def cross_entropy(logits, labels):
    return float(-_log_softmax(logits)[np.arange(len(labels)), labels].mean())


def cross_entropy_grad(logits, labels):
    d = np.exp(_log_softmax(logits))
    d[np.arange(len(labels)), labels] -= 1.0
    return d / len(labels)
""",
    "ex04_kl_temperature": """\
def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def kl_temperature(student_logits, teacher_logits, tau):
    p = _softmax(teacher_logits / tau)
    s = student_logits / tau
    logq = s - s.max(-1, keepdims=True)
    logq = logq - np.log(np.exp(logq).sum(-1, keepdims=True))
    logp = np.log(np.where(p > 0, p, 1.0))
    return float((p * (logp - logq)).sum() / len(p) * tau ** 2)


def kl_temperature_grad(student_logits, teacher_logits, tau):
    p = _softmax(teacher_logits / tau)
    q = _softmax(student_logits / tau)
    return tau * (q - p) / len(p)
""",
    "ex05_surrogate_derivative": """\
def atan_primitive(x, alpha):
    return np.arctan(np.pi / 2 * alpha * x) / np.pi + 0.5


def atan_derivative(x, alpha):
    return alpha / 2 / (1 + (np.pi / 2 * alpha * x) ** 2)
""",
    "ex06_lif_forward": """\
def lif_forward(x, tau=2.0, v_threshold=1.0, v_reset=0.0, decay_input=True):
    hard = v_reset is not None
    vr = v_reset if hard else 0.0
    v = np.full(x.shape[1:], vr)
    H, S = np.zeros_like(x), np.zeros_like(x)
    for t in range(x.shape[0]):
        if decay_input:
            h = v + (x[t] - (v - vr)) / tau
        else:
            h = v - (v - vr) / tau + x[t]
        s = (h >= v_threshold).astype(float)
        v = h * (1 - s) + vr * s if hard else h - v_threshold * s
        H[t], S[t] = h, s
    return H, S
""",
    "ex07_lif_bptt": """\
def lif_bptt(H, S, dS, tau, v_threshold, v_reset, decay_input, detach_reset, surrogate):
    hard = v_reset is not None
    sg = surrogate.derivative(H - v_threshold)
    dH = np.zeros_like(H)
    dV = np.zeros_like(H[0])
    for t in range(H.shape[0] - 1, -1, -1):
        dH[t] = dS[t] * sg[t]
        if hard:
            dH[t] += dV * (1 - S[t])
            if not detach_reset:
                dH[t] += dV * (v_reset - H[t]) * sg[t]
        else:
            dH[t] += dV
            if not detach_reset:
                dH[t] += dV * (-v_threshold) * sg[t]
        dV = dH[t] * (1 - 1 / tau)
    return dH / tau if decay_input else dH
""",
    "ex08_spiking_attention_backward": """\
def _t(a):
    return np.swapaxes(a, -1, -2)


def attention_forward(Q, K, V, key_mask, scale):
    B, L = key_mask.shape
    Km = K * key_mask.reshape(1, B, 1, L, 1)
    return Q @ (_t(Km) @ V * scale)


def attention_backward(Q, K, V, key_mask, scale, dY):
    B, L = key_mask.shape
    m = key_mask.reshape(1, B, 1, L, 1)
    Km = K * m
    KV = _t(Km) @ V * scale
    dQ = dY @ _t(KV)
    dKV = _t(Q) @ dY
    dK = V @ _t(dKV) * scale * m
    dV = Km @ dKV * scale
    return dQ, dK, dV
""",
    "ex09_masked_feature_loss": """\
def masked_mse(student, teacher, mask):
    m = mask[..., None]
    n = max(mask.sum() * student.shape[-1], 1.0)
    return float((((student - teacher) * m) ** 2).sum() / n)


def masked_mse_grad(student, teacher, mask):
    m = mask[..., None]
    n = max(mask.sum() * student.shape[-1], 1.0)
    return 2 * m * (student - teacher) / n
""",
    "ex10_energy_one_layer": """\
import numpy as np

E_MAC_PJ = 4.6
E_AC_PJ = 0.9


def linear_energy(x, out_features, spiking=True):
    dense = x.size * out_features
    if spiking and np.all((x == 0) | (x == 1)):
        macs, acs = 0.0, float(out_features * x.sum())
    else:
        macs, acs = float(dense), 0.0
    return float(x.mean()), macs, acs, E_MAC_PJ * macs + E_AC_PJ * acs
""",
}

# (exercise, text of the solution, its planted mistake, what the output must say: the hint and where)
PLANTED = [
    ("ex07_lif_bptt", "(v_reset - H[t])", "(H[t] - v_reset)",
     ["FAIL  lif_bptt: spikes, hard reset, detach_reset=False", "dX at (t=4, n=3)",
      "hint: the sign of the reset term (3)"]),
    ("ex07_lif_bptt", "dV = dH[t] * (1 - 1 / tau)", "dV = dH[t]",
     ["FAIL  lif_bptt: spikes, hard reset, detach_reset=True", "dX at (t=4, n=3)",
      "hint: a forgotten leak factor", "FAIL  gradcheck lif_bptt"]),
    ("ex07_lif_bptt", "        if hard:\n            dH[t] += dV * (1 - S[t])",
     "        if hard:\n            dH[t] += dV",
     ["hint: term (2), through the reset's kept membrane, is dV[t] * (1 - S[t])"]),
    ("ex06_lif_forward", "h >= v_threshold", "h > v_threshold",
     ["FAIL  lif_forward: a membrane exactly at the threshold", "S at (t=0, n=0): expected 1, got 0",
      "hint: Theta(0) = 1"]),
    ("ex06_lif_forward", "h - v_threshold * s", "h + v_threshold * s",
     ["FAIL  lif_forward: soft reset (v_reset=None)", "S at (t=1, n=4): expected 0, got 1",
      "hint: the sign of the soft reset"]),
    ("ex06_lif_forward", "h = v + (x[t] - (v - vr)) / tau", "h = v + x[t] / tau",
     ["H at (t=1, n=2): expected 0.8602359667, got 0.4719130071", "hint: a forgotten leak"]),
    ("ex09_masked_feature_loss", "    return 2 * m * (student - teacher) / n",
     "    return 2 * (student - teacher) / student.size",
     ["FAIL  masked_mse_grad: an all-padding row", "dstudent at (b=0, l=0, d=0)", "hint: a missing mask",
      "FAIL  gradcheck masked_mse_grad"]),
    ("ex09_masked_feature_loss", "    return 2 * m * (student - teacher) / n",
     "    return 2 * m * (student - teacher) / max(mask.sum(), 1.0)",
     ["hint: the denominator is the number of kept ENTRIES"]),
    ("ex08_spiking_attention_backward", "* scale * m", "* scale",
     ["FAIL  attention_backward: an all-padding row", "dK at (t=0, b=1, head=0, l=2, d=0): expected 0",
      "hint: a missing mask in dK"]),
    ("ex04_kl_temperature", " * tau ** 2)", ")",
     ["FAIL  kl_temperature: random logits (4, 3), tau = 2", "loss: expected 1.477258306, got 0.3693145765",
      "hint: multiply the KL by tau^2"]),
    ("ex01_broadcast_mul", "grad.sum(axis=axis, keepdims=True)", "grad.sum(axis=axis)",
     ["grad has shape (3,), expected (3, 1)", "hint: the size-1 axes must stay"]),
    ("ex01_broadcast_mul", "    while grad.ndim > len(shape):\n        grad = grad.sum(axis=0)\n"
                           "    for axis, n in enumerate(shape):\n"
                           "        if n == 1 and grad.shape[axis] != 1:\n"
                           "            grad = grad.sum(axis=axis, keepdims=True)\n    return grad",
     "    return grad.sum()", ["hint: summing every entry is not un-broadcasting"]),
    ("ex03_softmax_cross_entropy", "    s = z - z.max(-1, keepdims=True)", "    s = z",
     ["FAIL  cross_entropy: huge logits (+-1000)", "got inf", "hint: exp(1000) overflows"]),
    ("ex02_layernorm_backward", "dxhat - dxhat.mean(-1, keepdims=True) - ", "dxhat - ",
     ["dx at (0, 0): expected -0.5336554406", "hint: the term through the mean mu is missing",
      "FAIL  gradcheck layernorm_backward"]),
    ("ex10_energy_one_layer", "float(out_features * x.sum())", "float(dense)",
     ["acs: expected 168, got 960", "hint: only the spikes (the 1s) cost something"]),
    ("ex05_surrogate_derivative", "alpha / 2 / (1 +", "1 / np.pi / (1 +",
     ["hint: the chain rule", "FAIL  gradcheck atan_derivative"]),
]


def _write(tmp_path, name, source):
    path = tmp_path / f"{name}.py"
    path.write_text("import numpy as np\n\n\n" + source)
    return path


def _text(result):
    return "\n".join(result.lines)


def test_ten_exercises_in_order_each_with_a_stub_file():
    assert [ex.name for ex in EXERCISES] == sorted(ex.name for ex in EXERCISES)
    assert len(EXERCISES) == 10 and set(SOLUTIONS) == {ex.name for ex in EXERCISES}
    for ex in EXERCISES:
        text = (EXERCISE_DIR / f"{ex.name}.py").read_text()
        assert f"python -m minispike check {ex.number}" in text and "Read first:" in text, ex.name
        for task in ex.tasks:
            assert f"def {task.function}(" in text, (ex.name, task.function)


def test_every_reference_passes(capsys):
    assert run_check(every=True, reference=True) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out and out.strip().endswith("all: 10 of 10 exercises pass")
    # every kind of check ran: comparisons and, where there is a gradient, finite differences
    assert out.count("PASS  gradcheck") >= 12


def test_every_untouched_stub_fails_with_one_line():
    for ex in EXERCISES:
        path = str(EXERCISE_DIR / f"{ex.name}.py")
        res = grade_file(path)
        assert not res.passed and res.not_implemented, ex.name
        functions = " and ".join(t.function for t in ex.tasks)
        assert res.lines == [f"  FAIL  not implemented yet: fill in {functions} in {path}"], res.lines


@pytest.mark.parametrize("name", sorted(SOLUTIONS))
def test_a_learners_numpy_solution_passes(tmp_path, name):
    res = grade_file(str(_write(tmp_path, name, SOLUTIONS[name])))
    assert res.passed, _text(res)


@pytest.mark.parametrize("name, old, new, expected", PLANTED, ids=[f"{p[0][:4]}-{i}" for i, p in enumerate(PLANTED)])
def test_a_planted_mistake_fails_with_its_hint_and_coordinate(tmp_path, name, old, new, expected):
    assert SOLUTIONS[name].count(old) == 1, "the planted mistake no longer matches the solution"
    res = grade_file(str(_write(tmp_path, name, SOLUTIONS[name].replace(old, new))))
    text = _text(res)
    assert not res.passed
    for fragment in expected:
        assert fragment in text, f"{fragment!r} not in:\n{text}"


def test_every_known_wrong_variant_fails_with_its_own_hint():
    """The hint mechanism itself: graded as if it were a learner's, each variant fails and earns its hint."""
    count = 0
    for ex in EXERCISES:
        for task in ex.tasks:
            for mistake in task.mistakes:
                impl = reference_impl(ex)
                setattr(impl, task.function, mistake.fn)
                res = grade(ex, impl, "learner.py")
                assert not res.passed and f"hint: {mistake.hint}" in _text(res), (ex.name, mistake.hint)
                count += 1
    assert count >= 40


def test_a_backward_that_matches_nowhere_is_caught_by_finite_differences(tmp_path):
    """A mistake no variant knows still fails: the comparison names the coordinate, gradcheck too."""
    src = SOLUTIONS["ex08_spiking_attention_backward"].replace("dQ = dY @ _t(KV)", "dQ = dY @ _t(KV) * 1.01")
    text = _text(grade_file(str(_write(tmp_path, "ex08_spiking_attention_backward", src))))
    assert "dQ at (t=0, b=0, head=0, l=0, d=0)" in text
    assert "the gradient is not the derivative of the forward: input Q" in text


def test_errors_in_the_learners_code_are_reported_with_their_line(tmp_path):
    src = SOLUTIONS["ex05_surrogate_derivative"].replace("    return alpha / 2", "    return undefined_name / 2")
    res = grade_file(str(_write(tmp_path, "ex05_surrogate_derivative", src)))
    assert "atan_derivative raised NameError" in _text(res) and "ex05_surrogate_derivative.py, line 9" in _text(res)
    broken = _write(tmp_path, "ex06_lif_forward", "def lif_forward(x:\n")
    res = grade_file(str(broken))
    assert not res.passed and "could not import" in _text(res) and "SyntaxError" in _text(res)
    wrong_arity = _write(tmp_path, "ex03_softmax_cross_entropy", SOLUTIONS["ex03_softmax_cross_entropy"].replace(
        "    return d / len(labels)", "    return d / len(labels), None"))
    assert "dlogits is a tuple of 2 values, expected one array" in _text(grade_file(str(wrong_arity)))


def test_names_numbers_and_paths():
    assert autograder.find_exercise("ex07").name == "ex07_lif_bptt"
    assert autograder.find_exercise("7").name == "ex07_lif_bptt"
    assert autograder.find_exercise("some/dir/ex10_mine.py").name == "ex10_energy_one_layer"
    with pytest.raises(autograder.UnknownExercise, match="ex11: not an exercise"):
        autograder.find_exercise("ex11")


def _cli(*args, cwd=ROOT):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "minispike", "check", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_exit_codes(tmp_path):
    ok = _cli("--all", "--reference")
    assert ok.returncode == 0 and "all: 10 of 10 exercises pass" in ok.stdout, ok.stdout + ok.stderr
    stubs = _cli("--all")
    assert stubs.returncode == 1 and "all: 0 of 10 exercises pass (10 not implemented yet)" in stubs.stdout
    assert _cli("ex07").returncode == 1
    bad = _cli("ex99")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "ex99: not an exercise" in bad.stderr
    # a learner's file by path, from anywhere (as with an installed minispike)
    path = _write(tmp_path, "ex06_lif_forward", SOLUTIONS["ex06_lif_forward"])
    good = _cli(str(path), cwd=tmp_path)
    assert good.returncode == 0 and "ex06_lif_forward: 8 of 8 checks pass" in good.stdout, good.stdout + good.stderr
    assert _cli("ex06", "--dir", str(tmp_path), cwd=tmp_path).returncode == 0
    missing = _cli("ex06", cwd=tmp_path)  # no exercises/ here
    assert missing.returncode == 2 and "no such file" in missing.stderr
