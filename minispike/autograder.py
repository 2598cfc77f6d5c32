"""The exercises' checker: grade a learner's NumPy functions against minispike's own ops.

``python -m minispike check ex07`` loads ``exercises/ex07_lif_bptt.py`` and runs three kinds
of checks on each function the exercise asks for (docs/exercises.md):

    compare    the learner's outputs == the library's op on the same inputs
               (random inputs and edge cases: a membrane exactly at the threshold,
               an all-padding row, T = 1, ...), float64, |got - expected| <= 1e-9 + 1e-7 |expected|
    gradcheck  the learner's backward against central finite differences of the forward,
               with a random upstream gradient (``minispike.gradcheck``, float64)
    hints      on a mismatch, known-wrong variants of the reference (the reset's sign flipped,
               the leak factor forgotten, the mask missing, ...) are evaluated on the same
               inputs; when the learner's output equals one of them, its hint is printed

Every exercise function takes and returns plain NumPy arrays. ``reference=True`` grades
the library's own implementations, wrapped behind the same signatures, through the same
checks: they all pass (``check --all --reference``), and every untouched stub fails.

One line per check (``PASS``/``FAIL`` and its name), the detail under a failure: which
output, the coordinate, expected against got, and a hint when one applies.
"""
from __future__ import annotations

import importlib.util
import math
import os
import re
import traceback
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

from . import ops
from .energy import E_AC_PJ, E_MAC_PJ, LayerCost
from .gradcheck import GradcheckError, gradcheck
from .ops.nn import LayerNorm
from .spiking.attention import spiking_attention
from .spiking.lif import LIFFunction
from .spiking.surrogate import ATan
from .tensor import Context, Function, Tensor, unbroadcast

__all__ = ["EXERCISES", "Exercise", "Result", "grade", "grade_file", "run_check", "find_exercise",
           "exercise_path", "reference_impl", "UnknownExercise"]

RTOL, ATOL = 1e-7, 1e-9  # float64 comparisons: the library and a correct NumPy solution agree to ~1e-15


class UnknownExercise(ValueError):
    """An exercise name, number or file the checker does not know (a user error: one line)."""


class _NotImplemented(Exception):
    """The learner's function still raises NotImplementedError."""


class _LearnerError(Exception):
    """The learner's function raised, returned the wrong thing, or a gradient of the wrong shape."""


# ----------------------------------------------------------------------------------------
# What an exercise is made of
# ----------------------------------------------------------------------------------------
@dataclass
class Mistake:
    """A known-wrong variant of the reference (same signature) and the hint it earns."""

    hint: str
    fn: object


@dataclass
class Task:
    """One function the learner fills in: its outputs' names and the library op behind it.

    ``outputs``: names of the returned values, nested as returned (``("y", ("xhat", "rstd"))``
    for ``return y, (xhat, rstd)``); ``axes``: axis names per output, for coordinates;
    ``from_end``: report the LAST differing coordinate (reversed-time loops go wrong at the end).
    """

    function: str
    outputs: tuple
    reference: object
    mistakes: tuple = ()
    axes: dict = field(default_factory=dict)
    from_end: bool = False


@dataclass
class Case:
    """Inputs for one call of ``function``; ``hint``: what is special about them (edge cases)."""

    function: str
    name: str
    kwargs: dict
    hint: str = ""


@dataclass
class GradCase:
    """A finite-difference check: ``build(impl) -> (fn, inputs, input names)``."""

    name: str
    build: object
    needs: tuple  # the learner functions it calls


@dataclass
class Exercise:
    name: str  # "ex07_lif_bptt"
    title: str
    tasks: tuple
    cases: object  # () -> [Case]
    gradchecks: object = lambda: []  # () -> [GradCase]

    @property
    def number(self) -> str:
        return self.name[:4]  # "ex07"


@dataclass
class Result:
    """The verdict on one exercise: ``lines`` to print, ``passed``, and the counts."""

    exercise: str
    source: str
    lines: list = field(default_factory=list)
    checks: int = 0
    failures: int = 0
    not_implemented: bool = False

    @property
    def passed(self) -> bool:
        return self.checks > 0 and self.failures == 0 and not self.not_implemented

    def summary(self) -> str:
        if self.not_implemented:
            return f"{self.exercise}: not implemented yet"
        return f"{self.exercise}: {self.checks - self.failures} of {self.checks} checks pass"


def _rng(seed):
    return np.random.default_rng(seed)


# ----------------------------------------------------------------------------------------
# Gradcheck through the learner's own backward
# ----------------------------------------------------------------------------------------
class GradedOp(Function):
    """A Function whose forward and backward are plain-array callables (a learner's, or the
    reference's): ``forward(*arrays) -> (out, saved)``, ``backward(saved, g) -> grads``.
    Each gradient must come back in its input's exact shape (the engine would otherwise
    un-broadcast it silently and hide the mistake)."""

    @staticmethod
    def forward(ctx, *arrays, fwd, bwd, names):
        out, saved = fwd(*arrays)
        ctx.saved_state, ctx.bwd, ctx.names = saved, bwd, names
        ctx.shapes = [a.shape for a in arrays]
        return np.asarray(out, dtype=np.float64)

    @staticmethod
    def backward(ctx, g):
        grads = ctx.bwd(ctx.saved_state, g)
        grads = grads if isinstance(grads, tuple) else (grads,)
        for name, shape, gr in zip(ctx.names, ctx.shapes, grads):
            got = np.shape(gr)
            if got != shape:
                raise _LearnerError(f"the gradient for {name} has shape {got}, expected {shape} (the input's shape)")
        return tuple(np.asarray(gr, dtype=np.float64) for gr in grads)


def _graded(fwd, bwd, names):
    return lambda *tensors: GradedOp.apply(*tensors, fwd=fwd, bwd=bwd, names=names)


def _tensors(*arrays):
    return [Tensor(np.array(a, dtype=np.float64), requires_grad=True) for a in arrays]


def _run_gradcheck(gc, impl):
    fn, inputs, names = gc.build(impl)
    try:
        gradcheck(fn, inputs, name=gc.name)
    except GradcheckError as e:
        msg = re.sub(r"input (\d+) ", lambda m: f"input {names[int(m.group(1))]} ", str(e))
        msg = msg.replace(f"gradcheck failed for {gc.name}: ", "")
        return f"the gradient is not the derivative of the forward: {msg}"
    return None


# ----------------------------------------------------------------------------------------
# Comparing outputs
# ----------------------------------------------------------------------------------------
def _flatten(names, value, where):
    """Pair nested output names with the nested returned value: {name: value}."""
    if isinstance(names, str):
        return {names: value}
    if not isinstance(value, (tuple, list)) or len(value) != len(names):
        n = len(value) if isinstance(value, (tuple, list)) else 1
        raise _LearnerError(f"{where} returned {n} value(s), expected {len(names)}: {_describe(names)}")
    out = {}
    for nm, v in zip(names, value):
        out.update(_flatten(nm, v, where))
    return out


def _describe(names):
    if isinstance(names, str):
        return names
    return "(" + ", ".join(_describe(n) for n in names) + ")"


def _outputs(task, value):
    names = task.outputs[0] if len(task.outputs) == 1 else task.outputs
    return _flatten(names, value, task.function)


def _close(got, expected):
    return got.shape == expected.shape and bool(np.allclose(got, expected, rtol=RTOL, atol=ATOL, equal_nan=True))


def _as_array(v, name):
    if v is None:
        raise _LearnerError(f"{name} is None (a missing return?)")
    if isinstance(v, (tuple, list)) and any(isinstance(x, (tuple, list, np.ndarray)) or x is None for x in v):
        raise _LearnerError(f"{name} is a {type(v).__name__} of {len(v)} values, expected one array")
    try:
        return np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        raise _LearnerError(f"{name} is a {type(v).__name__}, expected numbers") from None


def _where(index, axes):
    if not index:
        return ""
    if axes and len(axes) == len(index):
        return " at (" + ", ".join(f"{a}={i}" for a, i in zip(axes, index)) + ")"
    return f" at {tuple(int(i) for i in index)}"


def _first_bad(got, expected, from_end=False):
    """The first (or last) coordinate where ``got`` differs from ``expected``, in C order (time first)."""
    positions = np.argwhere(~np.isclose(got, expected, rtol=RTOL, atol=ATOL))
    return tuple(int(i) for i in (positions[-1] if from_end else positions[0])) if positions.size else ()


def _mismatch(name, got, expected, axes, from_end):
    """One line: where ``got`` first (or last) differs from ``expected``, and by how much."""
    if got.shape != expected.shape:
        return f"{name} has shape {got.shape}, expected {expected.shape}"
    bad = ~np.isclose(got, expected, rtol=RTOL, atol=ATOL)
    index = _first_bad(got, expected, from_end)
    g, e = (float(got[index]), float(expected[index])) if got.ndim else (float(got), float(expected))
    g, e = g + 0.0, e + 0.0  # no "-0"
    count = f" ({int(bad.sum())} of {bad.size} entries differ)" if bad.size > 1 else ""
    return f"{name}{_where(index, axes)}: expected {e:.10g}, got {g:.10g}{count}"


def _copy(v):
    if isinstance(v, np.ndarray):
        return v.copy()
    if isinstance(v, tuple):
        return tuple(_copy(x) for x in v)
    return v


class _Learner:
    """The learner's functions, called on copies of their inputs, failures turned into messages,
    results checked against the task's outputs and made float64 arrays: ``learner.lif_bptt(H, ...)``."""

    def __init__(self, impl, source, tasks):
        self.impl, self.source, self.tasks = impl, source, {t.function: t for t in tasks}

    def __getattr__(self, function):
        task = self.tasks[function]

        def call(*args, **kwargs):
            value = _call(self.impl, function, args, kwargs, self.source)
            arrays = {k: _as_array(v, k) for k, v in _outputs(task, value).items()}
            return _pack(task.outputs[0] if len(task.outputs) == 1 else task.outputs, arrays)
        return call


def _pack(names, arrays):
    """The inverse of ``_flatten``: the nested structure again, from {name: array}."""
    if isinstance(names, str):
        return arrays[names]
    return tuple(_pack(n, arrays) for n in names)


def _call(impl, function, args, kwargs, source):
    fn = getattr(impl, function, None)
    if fn is None:
        raise _LearnerError(f"{source} has no function {function}")
    try:
        with np.errstate(all="ignore"):  # an overflow shows in the comparison, with a hint
            return fn(*(_copy(a) for a in args), **{k: _copy(v) for k, v in kwargs.items()})
    except NotImplementedError:
        raise _NotImplemented(function) from None
    except (_LearnerError, _NotImplemented):
        raise
    except Exception as e:  # the learner's code raised: say what and on which line of their file
        frames = [f for f in traceback.extract_tb(e.__traceback__)
                  if os.path.abspath(f.filename) == os.path.abspath(source)]
        line = f" ({os.path.basename(source)}, line {frames[-1].lineno})" if frames else ""
        raise _LearnerError(f"{function} raised {type(e).__name__}: {e}{line}") from None


def _compare(task, case, learner):
    """None when the learner's outputs match the reference's, else the detail lines."""
    got = _outputs(task, getattr(learner, task.function)(**case.kwargs))
    expected = {k: np.asarray(v, dtype=np.float64) for k, v in _outputs(task, task.reference(**case.kwargs)).items()}
    bad = [name for name, exp in expected.items() if not _close(got[name], exp)]
    if not bad:
        return None
    if len({got[n].shape for n in bad} | {expected[n].shape for n in bad}) == 1:  # where it went wrong first
        bad.sort(key=lambda n: _first_bad(got[n], expected[n], task.from_end), reverse=task.from_end)
    lines = [_mismatch(name, got[name], expected[name], task.axes.get(name), task.from_end) for name in bad]
    if not all(np.all(np.isfinite(got[name])) for name in bad):
        lines.append("your output holds nan or inf: an exp that overflowed, a log of 0 or a division by 0?")
    hints = []
    for m in task.mistakes:  # a known-wrong variant that reproduces every differing output
        wrong = _outputs(task, m.fn(**case.kwargs))
        wrong = {name: _as_array(wrong[name], name) for name in bad}
        if all(_close(got[name], wrong[name]) and not _close(wrong[name], expected[name]) for name in bad):
            hints.append(m.hint)
    if not hints and any(got[n].shape != expected[n].shape and got[n].size == expected[n].size for n in bad):
        hints.append("the right numbers in the wrong shape: keep the size-1 axes (keepdims=True), or reshape")
    if not hints and case.hint:
        hints.append(case.hint)
    return lines + [f"hint: {h}" for h in hints[:2]]


# ----------------------------------------------------------------------------------------
# Grading
# ----------------------------------------------------------------------------------------
def grade(exercise: "Exercise", impl, source: str) -> Result:
    """Run every check of ``exercise`` on ``impl`` (a module or namespace of functions)."""
    res = Result(exercise.name, source)
    learner = _Learner(impl, source, exercise.tasks)
    missing = []  # the functions still raising NotImplementedError, in order
    missing_at = None  # where their one line goes

    def not_written(function):
        nonlocal missing_at
        if function not in missing:
            missing.append(function)
        if missing_at is None:
            missing_at = len(res.lines)

    def record(name, failure):
        res.checks += 1
        if failure is None:
            res.lines.append(f"  PASS  {name}")
            return
        res.failures += 1
        res.lines.append(f"  FAIL  {name}")
        res.lines += [f"        {line}" for line in failure]

    for case in exercise.cases():
        if case.function in missing:
            continue
        task = next(t for t in exercise.tasks if t.function == case.function)
        try:
            failure = _compare(task, case, learner)
        except _NotImplemented:
            not_written(case.function)
            continue
        except _LearnerError as e:
            failure = [str(e)]
        record(f"{case.function}: {case.name}", failure)
    for gc in exercise.gradchecks():
        if set(missing) & set(gc.needs):
            continue
        try:
            failure = _run_gradcheck(gc, learner)
            failure = None if failure is None else [failure]
        except _NotImplemented as e:
            not_written(e.args[0])
            continue
        except _LearnerError as e:
            failure = [str(e)]
        record(f"gradcheck {gc.name}", failure)
    if missing:
        res.not_implemented = True
        res.lines.insert(missing_at, f"  FAIL  not implemented yet: fill in {' and '.join(missing)} in {source}")
    return res


def reference_impl(exercise: "Exercise"):
    """The library's own implementation behind the exercise's signatures."""
    return SimpleNamespace(**{t.function: t.reference for t in exercise.tasks})


def find_exercise(name: str) -> "Exercise":
    """An exercise by full name (``ex07_lif_bptt``), number (``ex07``, ``7``) or file path."""
    stem = os.path.splitext(os.path.basename(str(name)))[0].lower()
    m = re.match(r"^(?:ex)?0*(\d+)", stem)
    if m:
        for ex in EXERCISES:
            if int(ex.name[2:4]) == int(m.group(1)):
                return ex
    known = ", ".join(ex.name for ex in EXERCISES)
    raise UnknownExercise(f"{name}: not an exercise (its file name must start with the exercise's number, "
                          f"e.g. ex07); the exercises are {known}")


def exercise_path(exercise: "Exercise", directory: str) -> str:
    return os.path.join(directory, exercise.name + ".py")


def load_module(path: str):
    """Import a learner's file from its path (a fresh module each time)."""
    spec = importlib.util.spec_from_file_location(f"_minispike_exercise_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def grade_file(path: str, exercise: "Exercise" | None = None) -> Result:
    """Grade the learner's file at ``path`` (the exercise told by its name unless given)."""
    exercise = exercise or find_exercise(path)
    if not os.path.isfile(path):
        raise UnknownExercise(f"{path}: no such file")
    try:
        module = load_module(path)
    except Exception as e:  # a syntax error or a failing import in the learner's file
        res = Result(exercise.name, path, checks=1, failures=1)
        res.lines.append(f"  FAIL  could not import {path}: {type(e).__name__}: {e}")
        return res
    return grade(exercise, module, path)


def run_check(exercise=None, directory="exercises", every=False, reference=False, out=print) -> int:
    """``python -m minispike check``: grade, print one line per check, return the exit status
    (0 when every graded exercise passes, 1 otherwise). ``exercise``: a name, a number or the
    path of a learner's file; ``every``: all ten; ``reference``: the library's own code."""
    if every == bool(exercise):
        raise UnknownExercise("give one exercise (a name such as ex07, or the path of your file) or --all")
    if every:
        if not reference and not os.path.isdir(directory):
            raise UnknownExercise(f"{directory}: no such directory (give --dir DIR, where the exercise files are)")
        jobs = [(ex, exercise_path(ex, directory)) for ex in EXERCISES]
    elif not reference and (os.path.isfile(exercise) or exercise.endswith(".py")):
        jobs = [(find_exercise(exercise), exercise)]
    else:
        ex = find_exercise(exercise)
        jobs = [(ex, exercise_path(ex, directory))]
        if not reference and not os.path.isfile(jobs[0][1]):
            raise UnknownExercise(f"{jobs[0][1]}: no such file (run from the repository root, give --dir DIR, "
                                  f"or the path of your file)")
    results = []
    for ex, path in jobs:
        if reference:
            res = grade(ex, reference_impl(ex), f"minispike's own {', '.join(t.function for t in ex.tasks)}")
        elif not os.path.isfile(path):
            res = Result(ex.name, path, checks=1, failures=1, lines=[f"  FAIL  {path}: no such file"])
        else:
            res = grade_file(path, ex)
        out(f"{ex.name}: {ex.title} ({res.source})")
        for line in res.lines:
            out(line)
        out(res.summary())
        results.append(res)
    if every:
        passed = sum(r.passed for r in results)
        todo = sum(r.not_implemented for r in results)
        out(f"all: {passed} of {len(results)} exercises pass" + (f" ({todo} not implemented yet)" if todo else ""))
    return 0 if all(r.passed for r in results) else 1


# ========================================================================================
# The ten exercises: reference (the library), cases, mistakes, gradchecks
# ========================================================================================

# -- ex01: the backward of a broadcasting multiply ---------------------------------------
def _ref_unbroadcast(grad, shape):
    return unbroadcast(np.asarray(grad), tuple(shape))


def _ref_mul_backward(a, b, grad):
    ta, tb = _tensors(a, b)
    ops.mul(ta, tb).backward(grad)
    return ta.grad, tb.grad


def _sum_all(grad, shape):
    return np.asarray(grad.sum())


def _no_keepdims(grad, shape):
    g = grad.sum(axis=tuple(range(grad.ndim - len(shape)))) if grad.ndim > len(shape) else grad
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return g.sum(axis=axes) if axes else g


def _leading_only(grad, shape):
    return grad.sum(axis=tuple(range(grad.ndim - len(shape)))) if grad.ndim > len(shape) else grad


def _mean_not_sum(grad, shape):
    out = _ref_unbroadcast(grad, shape)
    return out * (np.prod(shape) / max(grad.size, 1)) if grad.size else out


_HINT_SHAPE = ("return the gradient in the input's own shape: sum over the leading axes broadcasting added, "
               "and with keepdims=True over the axes where the input has size 1")

EX01_TASKS = (
    Task("unbroadcast", ("grad",), _ref_unbroadcast, (
        Mistake("summing every entry is not un-broadcasting: sum only over the axes broadcasting stretched "
                "(the extra leading ones, and those where the input has size 1), keep the others", _sum_all),
        Mistake("the size-1 axes must stay: sum them with keepdims=True, so (3, 1) stays (3, 1), not (3,)",
                _no_keepdims),
        Mistake("you summed the extra leading axes only: also sum (keepdims=True) the axes where the "
                "input has size 1 but the gradient does not", _leading_only),
        Mistake("a stretched input is used once per copy: its gradient is the SUM over the copies, not the mean",
                _mean_not_sum),
    )),
    Task("mul_backward", ("da", "db"), _ref_mul_backward, (
        Mistake("da and db are still in the broadcast (output) shape: pass each through "
                "unbroadcast(..., a.shape) / unbroadcast(..., b.shape)",
                lambda a, b, grad: (grad * b, grad * a)),
        Mistake("da = grad * b and db = grad * a: each input's gradient is the upstream gradient times "
                "the OTHER factor", lambda a, b, grad: (_ref_unbroadcast(grad * a, np.shape(a)),
                                                        _ref_unbroadcast(grad * b, np.shape(b)))),
        Mistake("multiply by grad, the upstream gradient dL/dy (the checker's is random, not 1)",
                lambda a, b, grad: (_ref_unbroadcast(np.broadcast_to(b, grad.shape), np.shape(a)),
                                    _ref_unbroadcast(np.broadcast_to(a, grad.shape), np.shape(b)))),
    )),
)


def _ex01_cases():
    r = _rng(1)
    cases = []
    for gshape, shape, label in [((2, 3, 4), (3, 1), "(2, 3, 4) -> (3, 1): a leading axis and a size-1 axis"),
                                 ((2, 3), (2, 3), "(2, 3) -> (2, 3): nothing to undo"),
                                 ((4, 5), (), "(4, 5) -> (): a scalar"),
                                 ((3, 1, 4), (1, 4), "(3, 1, 4) -> (1, 4): a size-1 axis that stays size 1"),
                                 ((2, 3, 4), (4,), "(2, 3, 4) -> (4,): two leading axes")]:
        cases.append(Case("unbroadcast", label, {"grad": r.standard_normal(gshape), "shape": shape}))
    for sa, sb, label in [((2, 3, 4), (3, 1), "a (2, 3, 4) * b (3, 1)"), ((2, 3), (), "a (2, 3) * b scalar ()"),
                          ((4, 1), (1, 5), "a (4, 1) * b (1, 5): both stretched"),
                          ((3, 2), (3, 2), "a (3, 2) * b (3, 2): no broadcasting")]:
        a, b = r.standard_normal(sa), r.standard_normal(sb)
        grad = r.standard_normal(np.broadcast_shapes(sa, sb))
        cases.append(Case("mul_backward", label, {"a": a, "b": b, "grad": grad}))
    return cases


def _ex01_gradchecks():
    def build(impl, sa, sb):
        r = _rng(11)
        bwd = impl.mul_backward
        fn = _graded(lambda a, b: (a * b, (a, b)), lambda s, g: bwd(s[0], s[1], g), ("a", "b"))
        return fn, _tensors(r.standard_normal(sa), r.standard_normal(sb)), ("a", "b")
    return [GradCase("mul_backward, a (2, 3, 4) * b (3, 1)", lambda impl: build(impl, (2, 3, 4), (3, 1)),
                     ("mul_backward",)),
            GradCase("mul_backward, a (4, 1) * b (1, 5)", lambda impl: build(impl, (4, 1), (1, 5)),
                     ("mul_backward",))]


# -- ex02: layer norm ---------------------------------------------------------------------
def _ref_layernorm_forward(x, w, b, eps=1e-5):
    ctx = Context()
    y = LayerNorm.forward(ctx, np.array(x), w, b, eps)
    xhat, rstd, _ = ctx.saved  # (N, D), (N, 1): rows flattened
    return y, (xhat.reshape(x.shape), rstd.reshape(x.shape[:-1] + (1,)))


def _ref_layernorm_backward(dy, cache, w):
    xhat, rstd = cache
    ctx = Context()
    ctx.save_for_backward(xhat.reshape(-1, xhat.shape[-1]), rstd.reshape(-1, 1), w)
    ctx.shape = xhat.shape
    return LayerNorm.backward(ctx, np.array(dy))


def _ln_backward_variant(dy, cache, w, mean=True, var=True, rstd_factor=True, weight=True):
    xhat, rstd = cache
    lead = tuple(range(dy.ndim - 1))
    dxhat = dy * w if weight else dy
    dx = dxhat.copy()
    if mean:
        dx -= dxhat.mean(-1, keepdims=True)
    if var:
        dx -= xhat * (dxhat * xhat).mean(-1, keepdims=True)
    return dx * rstd if rstd_factor else dx, (dy * xhat).sum(lead), dy.sum(lead)


def _ln_forward_variant(x, w, b, eps=1e-5, ddof=0, eps_outside=False):
    xc = x - x.mean(-1, keepdims=True)
    var = (xc ** 2).sum(-1, keepdims=True) / max(x.shape[-1] - ddof, 1)
    rstd = 1 / (np.sqrt(var) + eps) if eps_outside else 1 / np.sqrt(var + eps)
    return xc * rstd * w + b, (xc * rstd, rstd)


EX02_TASKS = (
    Task("layernorm_forward", ("y", ("xhat", "rstd")), _ref_layernorm_forward, (
        Mistake("var is the mean of (x - mu)^2 over the D features: divide by D, not D - 1",
                lambda x, w, b, eps=1e-5: _ln_forward_variant(x, w, b, eps, ddof=1)),
        Mistake("eps goes inside the square root: rstd = 1 / sqrt(var + eps)",
                lambda x, w, b, eps=1e-5: _ln_forward_variant(x, w, b, eps, eps_outside=True)),
    )),
    Task("layernorm_backward", ("dx", "dw", "db"), _ref_layernorm_backward, (
        Mistake("the term through the mean mu is missing: subtract mean(dxhat) (docs/layernorm.md)",
                lambda dy, cache, w: _ln_backward_variant(dy, cache, w, mean=False)),
        Mistake("the term through the variance is missing: subtract xhat * mean(dxhat * xhat) (docs/layernorm.md)",
                lambda dy, cache, w: _ln_backward_variant(dy, cache, w, var=False)),
        Mistake("multiply the bracket by rstd: dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))",
                lambda dy, cache, w: _ln_backward_variant(dy, cache, w, rstd_factor=False)),
        Mistake("dxhat = dy * w: the gradient passes the affine weight before it reaches xhat",
                lambda dy, cache, w: _ln_backward_variant(dy, cache, w, weight=False)),
        Mistake("dw and db are sums over every row (all leading axes): shape (D,)",
                lambda dy, cache, w: (_ref_layernorm_backward(dy, cache, w)[0], dy * cache[0], dy)),
    ), axes={"dx": None}),
)


def _ex02_cases():
    r = _rng(2)
    cases = []
    for label, x, hint in [
            ("random rows (3, 5)", r.standard_normal((3, 5)), ""),
            ("a batch of sequences (2, 3, 4): rows are all leading axes", r.standard_normal((2, 3, 4)), ""),
            ("a constant row (var = 0)", np.vstack([np.full(4, 0.7), r.standard_normal(4)]),
             "a constant row has var = 0: rstd = 1 / sqrt(eps), xhat = 0"),
            ("D = 1", r.standard_normal((3, 1)), "with D = 1 every row is constant: xhat = 0, y = b")]:
        D = x.shape[-1]
        w, b = r.standard_normal(D), r.standard_normal(D)
        cases.append(Case("layernorm_forward", label, {"x": x, "w": w, "b": b, "eps": 1e-5}, hint))
        _, cache = _ref_layernorm_forward(x, w, b, 1e-5)
        cases.append(Case("layernorm_backward", label, {"dy": r.standard_normal(x.shape), "cache": cache, "w": w},
                          hint))
    return cases


def _ex02_gradchecks():
    def build(impl):
        r = _rng(12)
        fwd = impl.layernorm_forward
        bwd = impl.layernorm_backward

        def forward(x, w, b):
            y, cache = fwd(x, w, b, 1e-5)
            return y, (cache, w)
        fn = _graded(forward, lambda s, g: bwd(g, s[0], s[1]), ("x", "w", "b"))
        return fn, _tensors(r.standard_normal((3, 5)), r.standard_normal(5), r.standard_normal(5)), ("x", "w", "b")
    return [GradCase("layernorm_backward against layernorm_forward, x (3, 5)", build,
                     ("layernorm_forward", "layernorm_backward"))]


# -- ex03: softmax + cross-entropy --------------------------------------------------------
def _ref_cross_entropy(logits, labels):
    return float(ops.cross_entropy(Tensor(logits), labels).item())


def _ref_cross_entropy_grad(logits, labels):
    (z,) = _tensors(logits)
    ops.cross_entropy(z, labels).backward()
    return z.grad


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _onehot(labels, C):
    return np.eye(C)[labels]


EX03_TASKS = (
    Task("cross_entropy", ("loss",), _ref_cross_entropy, (
        Mistake("the loss is the batch MEAN of -log softmax(z)[y], not the sum",
                lambda logits, labels: _ref_cross_entropy(logits, labels) * len(labels)),
        Mistake("the loss is -log softmax(z)[y]: mind the minus sign",
                lambda logits, labels: -_ref_cross_entropy(logits, labels)),
    )),
    Task("cross_entropy_grad", ("dlogits",), _ref_cross_entropy_grad, (
        Mistake("divide by B: the loss is the mean over the batch, so dz = (softmax(z) - onehot(y)) / B",
                lambda logits, labels: _softmax(logits) - _onehot(labels, logits.shape[1])),
        Mistake("the sign: dz = (softmax(z) - onehot(y)) / B, not onehot - softmax",
                lambda logits, labels: -_ref_cross_entropy_grad(logits, labels)),
        Mistake("subtract the one-hot of the label: dz = (softmax(z) - onehot(y)) / B",
                lambda logits, labels: _softmax(logits) / len(labels)),
    ), axes={"dlogits": ("b", "c")}),
)


def _ex03_cases():
    r = _rng(3)
    cases = []
    for label, z, y, hint in [
            ("random logits (4, 3)", r.standard_normal((4, 3)), np.array([0, 2, 1, 2]), ""),
            ("one sentence, B = 1", r.standard_normal((1, 5)), np.array([4]), ""),
            ("huge logits (+-1000)", np.array([[1000.0, 0.0, -1000.0], [0.0, 1000.0, 999.0]]), np.array([1, 2]),
             "exp(1000) overflows: subtract each row's max before exp (log-sum-exp)")]:
        for fn in ("cross_entropy", "cross_entropy_grad"):
            cases.append(Case(fn, label, {"logits": z, "labels": y}, hint))
    return cases


def _ex03_gradchecks():
    def build(impl):
        r = _rng(13)
        loss, grad = impl.cross_entropy, impl.cross_entropy_grad
        labels = np.array([1, 0, 2])
        fn = _graded(lambda z: (loss(z, labels), z), lambda z, g: g * grad(z, labels), ("logits",))
        return fn, _tensors(r.standard_normal((3, 4))), ("logits",)
    return [GradCase("cross_entropy_grad against cross_entropy, logits (3, 4)", build,
                     ("cross_entropy", "cross_entropy_grad"))]


# -- ex04: KL with temperature -------------------------------------------------------------
def _teacher_probs(teacher_logits, tau):
    return ops.softmax(Tensor(teacher_logits / tau)).data  # distill_loss's softened teacher


def _ref_kl(student_logits, teacher_logits, tau):
    return float(ops.kl_div(Tensor(student_logits), _teacher_probs(teacher_logits, tau), temperature=tau).item())


def _ref_kl_grad(student_logits, teacher_logits, tau):
    (z,) = _tensors(student_logits)
    ops.kl_div(z, _teacher_probs(teacher_logits, tau), temperature=tau).backward()
    return z.grad


def _kl_variant(zs, zt, tau, factor=None, soften_teacher=True, reverse=False, mean=True):
    p = _softmax(zt / tau) if soften_teacher else _softmax(zt)
    q = _softmax(zs / tau)
    if reverse:
        p, q = q, p
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = np.where(p > 0, p * (np.log(np.where(p > 0, p, 1)) - np.log(q)), 0).sum()
    return kl / (len(zs) if mean else 1) * (tau ** 2 if factor is None else factor)


def _kl_grad_variant(zs, zt, tau, factor=None, soften_teacher=True, mean=True):
    p = _softmax(zt / tau) if soften_teacher else _softmax(zt)
    return (_softmax(zs / tau) - p) / (len(zs) if mean else 1) * (tau if factor is None else factor)


EX04_TASKS = (
    Task("kl_temperature", ("loss",), _ref_kl, (
        Mistake("multiply the KL by tau^2 (Hinton's factor: it keeps the gradient's size independent of tau)",
                lambda student_logits, teacher_logits, tau: _kl_variant(student_logits, teacher_logits, tau, 1.0)),
        Mistake("soften the teacher too: p = softmax(teacher_logits / tau)",
                lambda student_logits, teacher_logits, tau: _kl_variant(student_logits, teacher_logits, tau,
                                                                        soften_teacher=False)),
        Mistake("the direction: KL(teacher || student) = sum p (log p - log q), p the teacher's",
                lambda student_logits, teacher_logits, tau: _kl_variant(student_logits, teacher_logits, tau,
                                                                        reverse=True)),
        Mistake("the loss is the batch mean: divide the sum over sentences by B",
                lambda student_logits, teacher_logits, tau: _kl_variant(student_logits, teacher_logits, tau,
                                                                        mean=False)),
    )),
    Task("kl_temperature_grad", ("dlogits",), _ref_kl_grad, (
        Mistake("the tau^2 factor is missing: d/dz [tau^2 KL] = tau^2 * (q - p) / (tau B) = tau (q - p) / B",
                lambda student_logits, teacher_logits, tau: _kl_grad_variant(student_logits, teacher_logits, tau,
                                                                             1 / tau)),
        Mistake("the chain rule through z / tau is missing: q = softmax(z / tau) gives a factor 1/tau, "
                "so the gradient is tau (q - p) / B, not tau^2 (q - p) / B",
                lambda student_logits, teacher_logits, tau: _kl_grad_variant(student_logits, teacher_logits, tau,
                                                                             tau ** 2)),
        Mistake("soften the teacher too: p = softmax(teacher_logits / tau)",
                lambda student_logits, teacher_logits, tau: _kl_grad_variant(student_logits, teacher_logits, tau,
                                                                             soften_teacher=False)),
        Mistake("divide by B: the loss is the batch mean",
                lambda student_logits, teacher_logits, tau: _kl_grad_variant(student_logits, teacher_logits, tau,
                                                                             mean=False)),
        Mistake("the sign: the gradient is tau (q - p) / B, student minus teacher",
                lambda student_logits, teacher_logits, tau: -_ref_kl_grad(student_logits, teacher_logits, tau)),
    ), axes={"dlogits": ("b", "c")}),
)


def _ex04_cases():
    r = _rng(4)
    cases = []
    for label, zs, zt, tau, hint in [
            ("random logits (4, 3), tau = 2", r.standard_normal((4, 3)), 3 * r.standard_normal((4, 3)), 2.0, ""),
            ("tau = 1 (no softening)", r.standard_normal((3, 2)), r.standard_normal((3, 2)), 1.0, ""),
            ("tau = 4, B = 1", r.standard_normal((1, 5)), 2 * r.standard_normal((1, 5)), 4.0, ""),
            ("a teacher so sure that p = 0 exactly for the other classes", r.standard_normal((2, 3)),
             np.array([[800.0, 0.0, -800.0], [0.0, 900.0, 0.0]]), 1.0,
             "where p = 0 the term p log p is 0 (its limit), not nan: skip those entries")]:
        for fn in ("kl_temperature", "kl_temperature_grad"):
            cases.append(Case(fn, label, {"student_logits": zs, "teacher_logits": zt, "tau": tau}, hint))
    return cases


def _ex04_gradchecks():
    def build(impl, tau):
        r = _rng(14)
        loss, grad = impl.kl_temperature, impl.kl_temperature_grad
        zt = 2 * r.standard_normal((3, 4))
        fn = _graded(lambda z: (loss(z, zt, tau), z), lambda z, g: g * grad(z, zt, tau), ("student_logits",))
        return fn, _tensors(r.standard_normal((3, 4))), ("student_logits",)
    return [GradCase(f"kl_temperature_grad against kl_temperature, tau = {tau:g}",
                     lambda impl, tau=tau: build(impl, tau), ("kl_temperature", "kl_temperature_grad"))
            for tau in (1.0, 3.0)]


# -- ex05: a surrogate's derivative from its primitive --------------------------------------
def _ref_atan_primitive(x, alpha):
    return ATan(alpha).primitive(np.asarray(x, dtype=np.float64))


def _ref_atan_derivative(x, alpha):
    return ATan(alpha).derivative(np.asarray(x, dtype=np.float64))


def _atan_variant(x, alpha, inner=None, outer=1.0):
    c = math.pi / 2 * alpha if inner is None else inner
    return outer / (1 + (c * x) ** 2)


EX05_TASKS = (
    Task("atan_primitive", ("g",), _ref_atan_primitive, (
        Mistake("add 1/2: the primitive must run from 0 to 1, like the step it stands in for",
                lambda x, alpha: _ref_atan_primitive(x, alpha) - 0.5),
        Mistake("the argument of arctan is (pi/2) alpha x, not alpha x",
                lambda x, alpha: np.arctan(alpha * x) / math.pi + 0.5),
        Mistake("divide arctan by pi: arctan runs over (-pi/2, pi/2)",
                lambda x, alpha: np.arctan(math.pi / 2 * alpha * x) + 0.5),
    )),
    Task("atan_derivative", ("dg",), _ref_atan_derivative, (
        Mistake("the chain rule: d/dx arctan(c x) = c / (1 + (c x)^2) with c = (pi/2) alpha; "
                "you left out the inner factor c", lambda x, alpha: _atan_variant(x, alpha, outer=1 / math.pi)),
        Mistake("the 1/pi of the primitive is missing: g'(x) = (alpha/2) / (1 + (pi/2 alpha x)^2)",
                lambda x, alpha: _atan_variant(x, alpha, outer=math.pi / 2 * alpha)),
        Mistake("inside the square it is (pi/2) alpha x, not alpha x",
                lambda x, alpha: _atan_variant(x, alpha, inner=alpha, outer=alpha / 2)),
    )),
)


def _ex05_cases():
    r = _rng(5)
    cases = []
    for label, x, alpha, hint in [
            ("random x, alpha = 2", r.standard_normal(7), 2.0, ""),
            ("alpha = 5 (a sharper step)", r.standard_normal((2, 3)), 5.0, ""),
            ("x = 0 exactly (the threshold)", np.zeros(3), 2.0, "at x = 0: g = 1/2 and g' = alpha / 2"),
            ("far from the threshold (|x| = 1000)", np.array([-1000.0, 1000.0]), 2.0, "")]:
        for fn in ("atan_primitive", "atan_derivative"):
            cases.append(Case(fn, label, {"x": x, "alpha": alpha}, hint))
    return cases


def _ex05_gradchecks():
    def build(impl, alpha):
        prim, deriv = impl.atan_primitive, impl.atan_derivative
        fn = _graded(lambda x: (prim(x, alpha), x), lambda x, g: g * deriv(x, alpha), ("x",))
        return fn, _tensors(np.linspace(-1.5, 1.5, 9)), ("x",)
    return [GradCase(f"atan_derivative against atan_primitive, alpha = {alpha:g}",
                     lambda impl, alpha=alpha: build(impl, alpha), ("atan_primitive", "atan_derivative"))
            for alpha in (2.0, 0.5)]


# -- ex06: the LIF forward ------------------------------------------------------------------
def _ref_lif_forward(x, tau=2.0, v_threshold=1.0, v_reset=0.0, decay_input=True):
    store = {}
    LIFFunction.apply(np.array(x, dtype=np.float64), None, tau, v_threshold, v_reset=v_reset, surrogate=ATan(),
                      decay_input=decay_input, store=store)
    return store["H"], store["S"]


def _lif_forward_variant(x, tau=2.0, v_threshold=1.0, v_reset=0.0, decay_input=True, strict=False,
                         reset="right", leak=True, always_decay=False, return_v=False):
    hard = v_reset is not None
    vr = v_reset if hard else 0.0
    v = np.full(x.shape[1:], vr)
    H, S = np.empty_like(x), np.empty_like(x)
    for t in range(x.shape[0]):
        drive = x[t] / tau if (decay_input or always_decay) else x[t]
        h = v - ((v - vr) / tau if leak else 0.0) + drive
        s = (h > v_threshold) if strict else (h >= v_threshold)
        S[t] = s
        if reset == "none":
            v = h
        elif reset == "zero":
            v = np.where(s, 0.0, h)
        elif hard:
            v = np.where(s, vr, h)
        else:
            v = h + v_threshold * s if reset == "flipped" else h - v_threshold * s
        H[t] = v if return_v else h
    return H, S


def _lif_fwd_mistake(hint, **twist):
    return Mistake(hint, lambda x, tau=2.0, v_threshold=1.0, v_reset=0.0, decay_input=True:
                   _lif_forward_variant(x, tau, v_threshold, v_reset, decay_input, **twist))


_LIF_AXES = {k: ("t", "n") for k in ("H", "S", "dX")}

EX06_TASKS = (
    Task("lif_forward", ("H", "S"), _ref_lif_forward, (
        _lif_fwd_mistake("Theta(0) = 1: a membrane exactly AT the threshold fires (S = H >= v_threshold)",
                         strict=True),
        _lif_fwd_mistake("the sign of the soft reset: it SUBTRACTS the threshold, V = H - V_th S", reset="flipped"),
        _lif_fwd_mistake("after a spike the membrane must be reset (hard: to V_reset; soft: minus V_th)",
                         reset="none"),
        _lif_fwd_mistake("the hard reset goes to v_reset, not to 0", reset="zero"),
        _lif_fwd_mistake("a forgotten leak: each step the membrane decays toward V_reset by (V - V_reset) / tau",
                         leak=False),
        _lif_fwd_mistake("decay_input=False adds X[t] as it is, not X[t] / tau", always_decay=True),
        _lif_fwd_mistake("return H, the membrane after charging and BEFORE the reset, not V after it",
                         return_v=True),
    ), axes=_LIF_AXES),
)


def _at_threshold_input():
    """X with H exactly at V_th = 1 at t = 0 (X = 2, tau = 2) and again at t = 2 after a reset."""
    x = np.array([[2.0, 1.9, 0.0], [0.0, 0.0, 0.0], [2.0, 2.1, 4.0]])  # (T=3, N=3)
    return x


def _ex06_cases():
    r = _rng(6)
    thr = ("this case puts a membrane exactly at the threshold (H = V_th): Theta(0) = 1, the neuron fires, "
           "and then it resets")
    return [
        Case("lif_forward", "random input (T=6, N=5), hard reset to 0, tau = 2",
             {"x": r.normal(1.0, 1.0, (6, 5))}),
        Case("lif_forward", "soft reset (v_reset=None)", {"x": r.normal(1.0, 1.0, (6, 5)), "v_reset": None}),
        Case("lif_forward", "decay_input=False, tau = 4", {"x": r.normal(0.5, 0.6, (6, 5)), "tau": 4.0,
                                                           "decay_input": False}),
        Case("lif_forward", "hard reset to v_reset = -0.5, V_th = 0.5",
             {"x": r.normal(0.6, 0.8, (6, 4)), "v_reset": -0.5, "v_threshold": 0.5}),
        Case("lif_forward", "a membrane exactly at the threshold", {"x": _at_threshold_input()}, thr),
        Case("lif_forward", "exactly at the threshold, soft reset", {"x": _at_threshold_input(), "v_reset": None},
             thr),
        Case("lif_forward", "T = 1", {"x": r.normal(1.5, 1.0, (1, 6))},
             "with T = 1 there is one charge from V = V_reset and one fire"),
        Case("lif_forward", "no input: the neuron stays silent", {"x": np.zeros((4, 3))}),
    ]


# -- ex07: the LIF backward through time ---------------------------------------------------
def _ref_lif_bptt(H, S, dS, tau, v_threshold, v_reset, decay_input, detach_reset, surrogate):
    hard = v_reset is not None
    ctx = Context()
    ctx.save_for_backward(np.array(H))
    ctx.options = (surrogate, hard, float(v_reset) if hard else 0.0, detach_reset, decay_input)
    ctx.v0_is_array, ctx.v0 = False, float(v_reset) if hard else 0.0
    ctx.tau, ctx.v_threshold = tau, v_threshold
    return LIFFunction.backward(ctx, np.array(dS))[0]


def _bptt_variant(H, S, dS, tau, v_threshold, v_reset, decay_input, detach_reset, surrogate, twist):
    hard = v_reset is not None
    vr = v_reset if hard else 0.0
    at = H if twist == "g_at_H" else H - v_threshold
    sg = surrogate.derivative(at)
    dH = np.zeros_like(H) if twist == "no_spike_path" else dS * sg
    dV = np.zeros_like(H[0])
    use_reset_spike = (not detach_reset) != (twist == "detach_flipped")
    beta = {"no_leak": 1.0, "leak_is_input": 1.0 / tau}.get(twist, 1.0 - 1.0 / tau)
    for t in range(H.shape[0] - 1, -1, -1):
        s = S[t]
        if use_reset_spike:
            dv_ds = (vr - H[t]) if hard else -v_threshold
            dH[t] += dV * (-dv_ds if twist == "reset_sign" else dv_ds) * sg[t]
        if hard:
            kept = {"kept_ignores_spike": 1.0, "kept_bool": (s == 0).astype(H.dtype)}.get(twist, 1.0 - s)
        else:
            kept = 1.0
        dH[t] += dV * kept
        dV = dH[t] * beta
    input_factor = 1.0 / tau if decay_input else 1.0
    if twist == "input_factor":
        input_factor = 1.0 if decay_input else 1.0 / tau
    return dH * input_factor


def _bptt_mistake(hint, twist):
    return Mistake(hint, lambda H, S, dS, tau, v_threshold, v_reset, decay_input, detach_reset, surrogate:
                   _bptt_variant(H, S, dS, tau, v_threshold, v_reset, decay_input, detach_reset, surrogate, twist))


EX07_TASKS = (
    Task("lif_bptt", ("dX",), _ref_lif_bptt, (
        _bptt_mistake("a forgotten leak factor: the gradient reaching V[t-1] is dH[t] * (1 - 1/tau), term (4)",
                      "no_leak"),
        _bptt_mistake("the leak factor is dH[t]/dV[t-1] = 1 - 1/tau; 1/tau is the INPUT's factor",
                      "leak_is_input"),
        _bptt_mistake("the sign of the reset term (3): hard reset V = H (1 - S) + V_reset S gives "
                      "dV/dS = V_reset - H; soft reset V = H - V_th S gives dV/dS = -V_th", "reset_sign"),
        _bptt_mistake("term (2), through the reset's kept membrane, is dV[t] * (1 - S[t]) for a hard reset: "
                      "where the neuron fired, V[t] = V_reset no longer depends on H[t]", "kept_ignores_spike"),
        _bptt_mistake("write the reset's factor as a number, (1 - S[t]), not a test on S: the checker also runs "
                      "your loop with a smooth S between 0 and 1", "kept_bool"),
        _bptt_mistake("detach_reset=True treats the S inside the reset as a constant: drop term (3); "
                      "with detach_reset=False keep it (dV[t] * dV/dS * g'[t])", "detach_flipped"),
        _bptt_mistake("the input's factor (5): dX[t] = dH[t] / tau with decay_input, dX[t] = dH[t] without",
                      "input_factor"),
        _bptt_mistake("term (1), through the spike, is missing: dH[t] starts from dS[t] * g'[t]", "no_spike_path"),
        _bptt_mistake("the surrogate is evaluated at H[t] - V_th, not at H[t]", "g_at_H"),
    ), axes=_LIF_AXES, from_end=True),
)

_LIF_CONFIGS = [  # (label, v_reset, decay_input, tau)
    ("hard reset", 0.0, True, 2.5),
    ("soft reset", None, True, 2.5),
    ("hard reset, decay_input=False", 0.0, False, 3.0),
    ("soft reset, decay_input=False", None, False, 3.0),
]


def _lif_case_inputs(x, tau, v_reset, decay_input, spiking, alpha=2.0, v_threshold=1.0, seed=0):
    """H and S from the library's forward on X, and a random upstream dS."""
    surrogate = ATan(alpha, spiking=spiking)
    store = {}
    LIFFunction.apply(x, None, tau, v_threshold, v_reset=v_reset, surrogate=surrogate, decay_input=decay_input,
                      store=store)
    dS = _rng(seed + 100).standard_normal(x.shape)
    return {"H": store["H"], "S": np.asarray(store["S"], dtype=np.float64), "dS": dS, "tau": tau,
            "v_threshold": v_threshold, "v_reset": v_reset, "decay_input": decay_input, "surrogate": surrogate}


def _ex07_cases():
    r = _rng(7)
    cases = []
    for i, (label, v_reset, decay_input, tau) in enumerate(_LIF_CONFIGS):
        x = r.normal(1.2, 1.0, (6, 4)) * (tau if decay_input else 1.0) / 2
        for detach in (True, False):
            kw = _lif_case_inputs(x, tau, v_reset, decay_input, spiking=True, seed=i)
            cases.append(Case("lif_bptt", f"spikes, {label}, detach_reset={detach}", {**kw, "detach_reset": detach}))
    x = r.normal(1.0, 1.0, (5, 4))
    cases.append(Case("lif_bptt", "a smooth S in (0, 1) (spiking=False), hard reset, detach_reset=False",
                      {**_lif_case_inputs(x, 2.0, 0.0, True, spiking=False), "detach_reset": False},
                      "the smooth S is a number in (0, 1): write (1 - S[t]) and (V_reset - H[t]) as products"))
    thr = _lif_case_inputs(_at_threshold_input(), 2.0, 0.0, True, spiking=True, seed=8)
    thr_hint = ("a membrane exactly at the threshold fires (S = 1) and its surrogate is at its peak "
                "g'(0) = alpha / 2: the hard reset cuts the gradient from the future there")
    for detach in (True, False):
        cases.append(Case("lif_bptt", f"a membrane exactly at the threshold, detach_reset={detach}",
                          {**thr, "detach_reset": detach}, thr_hint))
    cases.append(Case("lif_bptt", "T = 1 (no gradient from the future)",
                      {**_lif_case_inputs(r.normal(2.0, 1.0, (1, 5)), 2.0, 0.0, True, spiking=True),
                       "detach_reset": False}, "with T = 1, dV[T-1] = 0: only terms (1) and (5) remain"))
    return cases


def _ex07_gradchecks():
    def build(impl, v_reset, decay_input, tau):
        bptt = impl.lif_bptt
        surrogate = ATan(2.0, spiking=False)  # the forward is the smooth primitive: finite differences apply

        def forward(x):
            kw = _lif_case_inputs(x, tau, v_reset, decay_input, spiking=False)
            return kw["S"], kw

        def backward(kw, g):
            return bptt(kw["H"], kw["S"], g, tau, 1.0, v_reset, decay_input, False, surrogate)
        return _graded(forward, backward, ("X",)), _tensors(_rng(17).normal(1.0, 1.0, (5, 3))), ("X",)
    return [GradCase(f"lif_bptt, smooth surrogate, {label}, detach_reset=False",
                     lambda impl, v=v, d=d, tau=tau: build(impl, v, d, tau), ("lif_bptt",))
            for label, v, d, tau in _LIF_CONFIGS]


# -- ex08: spiking self-attention backward ------------------------------------------------
def _ref_attention_forward(Q, K, V, key_mask, scale):
    return spiking_attention(Tensor(Q), Tensor(K), Tensor(V), key_mask, scale).data


def _ref_attention_backward(Q, K, V, key_mask, scale, dY):
    q, k, v = _tensors(Q, K, V)
    spiking_attention(q, k, v, key_mask, scale).backward(dY)
    return q.grad, k.grad, v.grad


def _attention_variant(Q, K, V, key_mask, scale, dY=None, mask_forward=True, mask_dK=True, scale_grads=True,
                       mask_queries=False):
    m = key_mask[None, :, None, :, None]  # (1, B, 1, L, 1)
    Km = K * m if mask_forward and not mask_queries else K
    kv = np.swapaxes(Km, -1, -2) @ V * scale  # (T, B, h, d, d)
    if dY is None:
        y = Q @ kv
        return y * m if mask_queries else y
    s = scale if scale_grads else 1.0
    dkv = np.swapaxes(Q, -1, -2) @ dY  # (T, B, h, d, d), without the scale
    dQ = dY @ np.swapaxes(kv / scale * s, -1, -2)
    dKm = V @ np.swapaxes(dkv, -1, -2) * s
    dV = Km @ dkv * s
    return dQ, dKm * m if mask_dK else dKm, dV


_ATT_AXES = {k: ("t", "b", "head", "l", "d") for k in ("Y", "dQ", "dK", "dV")}

EX08_TASKS = (
    Task("attention_forward", ("Y",), _ref_attention_forward, (
        Mistake("a missing mask: multiply K by key_mask (B, L) -> (1, B, 1, L, 1) before the product, so padded "
                "keys reach no query", lambda Q, K, V, key_mask, scale: _attention_variant(
                    Q, K, V, key_mask, scale, mask_forward=False)),
        Mistake("the mask belongs to the KEYS (the axis summed over in K^T V), not to the queries",
                lambda Q, K, V, key_mask, scale: _attention_variant(Q, K, V, key_mask, scale, mask_queries=True)),
        Mistake("multiply by scale: Y = (Q K^T) V * scale",
                lambda Q, K, V, key_mask, scale: _attention_variant(Q, K, V, key_mask, 1.0)),
    ), axes=_ATT_AXES),
    Task("attention_backward", ("dQ", "dK", "dV"), _ref_attention_backward, (
        Mistake("a missing mask in dK: K was multiplied by the mask, so dK = dK_masked * mask (padded keys get 0)",
                lambda Q, K, V, key_mask, scale, dY: _attention_variant(Q, K, V, key_mask, scale, dY,
                                                                        mask_dK=False)),
        Mistake("a missing mask: the forward used K * mask, and so must every gradient",
                lambda Q, K, V, key_mask, scale, dY: _attention_variant(Q, K, V, key_mask, scale, dY,
                                                                        mask_forward=False, mask_dK=False)),
        Mistake("the scale multiplies every gradient once (Y is linear in each of Q, K, V)",
                lambda Q, K, V, key_mask, scale, dY: _attention_variant(Q, K, V, key_mask, scale, dY,
                                                                        scale_grads=False)),
    ), axes=_ATT_AXES),
)


def _ex08_cases():
    r = _rng(8)
    cases = []

    def spikes(shape, rate=0.4):
        return (r.random(shape) < rate).astype(np.float64)

    for label, (T, B, h, L, d), mask, hint in [
            ("spikes (T=2, B=2, h=2, L=4, d_h=3), the second sentence padded after 2 tokens", (2, 2, 2, 4, 3),
             np.array([[1, 1, 1, 1], [1, 1, 0, 0]]), ""),
            ("an all-padding row (a sentence of padding only)", (2, 2, 1, 3, 2), np.array([[1, 1, 0], [0, 0, 0]]),
             "a sentence that is all padding: every key is masked, so Y, dQ, dK and dV are 0 for it"),
            ("no padding, T = 1", (1, 1, 2, 3, 4), np.ones((1, 3)), ""),
            ("one token, L = 1", (2, 2, 1, 1, 3), np.ones((2, 1)), "")]:
        Q, K, V = spikes((T, B, h, L, d)), spikes((T, B, h, L, d)), spikes((T, B, h, L, d))
        mask = mask.astype(np.float64)
        cases.append(Case("attention_forward", label, {"Q": Q, "K": K, "V": V, "key_mask": mask, "scale": 0.125},
                          hint))
        cases.append(Case("attention_backward", label, {"Q": Q, "K": K, "V": V, "key_mask": mask, "scale": 0.125,
                                                        "dY": r.standard_normal((T, B, h, L, d))}, hint))
    return cases


def _ex08_gradchecks():
    def build(impl):
        r = _rng(18)
        fwd, bwd = impl.attention_forward, impl.attention_backward
        mask = np.array([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
        fn = _graded(lambda q, k, v: (fwd(q, k, v, mask, 0.125), (q, k, v)),
                     lambda s, g: bwd(s[0], s[1], s[2], mask, 0.125, g), ("Q", "K", "V"))
        shape = (2, 2, 1, 3, 2)  # (T, B, h, L, d_h)
        return fn, _tensors(*(r.standard_normal(shape) for _ in range(3))), ("Q", "K", "V")
    return [GradCase("attention_backward against attention_forward, with padding", build,
                     ("attention_forward", "attention_backward"))]


# -- ex09: the masked feature-distillation loss --------------------------------------------
def _ref_masked_mse(student, teacher, mask):
    return float(ops.mse_loss(Tensor(student), teacher, mask[..., None]).item())


def _ref_masked_mse_grad(student, teacher, mask):
    (a,) = _tensors(student)
    ops.mse_loss(a, teacher, mask[..., None]).backward()
    return a.grad


def _mse_variant(student, teacher, mask, denominator, use_mask=True, factor=2.0, grad=False):
    m = mask[..., None] if use_mask else np.ones_like(mask)[..., None]
    diff = (student - teacher) * m
    with np.errstate(divide="ignore", invalid="ignore"):
        return factor * diff / denominator if grad else (diff ** 2).sum() / denominator


def _mse_mistakes(grad):
    def variant(hint, denom, **kw):
        return Mistake(hint, lambda student, teacher, mask: _mse_variant(
            student, teacher, mask, denom(student, mask), grad=grad, **kw))
    kept = lambda s, m: max(m.sum() * s.shape[-1], 1.0)  # noqa: E731
    out = [variant("a missing mask: padding positions (mask 0) must not count, in the sum nor in the denominator",
                   lambda s, m: s.size, use_mask=False),
           variant("the denominator counts the KEPT entries only: sum(mask) * D, not B * L * D",
                   lambda s, m: s.size),
           variant("the denominator is the number of kept ENTRIES: kept tokens times D (each token has D features)",
                   lambda s, m: max(m.sum(), 1.0)),
           variant("when every position is padding the library divides by max(count, 1): loss 0, gradient 0",
                   lambda s, m: m.sum() * s.shape[-1])]
    if grad:
        out.append(variant("d/da (a - b)^2 = 2 (a - b): the factor 2 is missing", kept, factor=1.0))
        out.append(variant("the sign: d/da (a - b)^2 = +2 (a - b)", kept, factor=-2.0))
    return tuple(out)


EX09_TASKS = (
    Task("masked_mse", ("loss",), _ref_masked_mse, _mse_mistakes(grad=False)),
    Task("masked_mse_grad", ("dstudent",), _ref_masked_mse_grad, _mse_mistakes(grad=True),
         axes={"dstudent": ("b", "l", "d")}),
)


def _ex09_cases():
    r = _rng(9)
    cases = []
    for label, shape, mask, hint in [
            ("(B=2, L=4, D=3), the second sentence padded after 2 tokens", (2, 4, 3),
             np.array([[1, 1, 1, 1], [1, 1, 0, 0]]), ""),
            ("an all-padding row", (3, 3, 2), np.array([[1, 1, 0], [0, 0, 0], [1, 0, 0]]),
             "a sentence of padding only adds nothing to the sum and nothing to the count"),
            ("no padding", (2, 3, 4), np.ones((2, 3)), ""),
            ("every position is padding", (2, 2, 3), np.zeros((2, 2)),
             "no kept entry at all: the library divides by max(count, 1), so the loss and gradient are 0")]:
        s, t = r.standard_normal(shape), r.standard_normal(shape)
        for fn in ("masked_mse", "masked_mse_grad"):
            cases.append(Case(fn, label, {"student": s, "teacher": t, "mask": mask.astype(np.float64)}, hint))
    return cases


def _ex09_gradchecks():
    def build(impl):
        r = _rng(19)
        loss, grad = impl.masked_mse, impl.masked_mse_grad
        t, mask = r.standard_normal((2, 3, 2)), np.array([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
        fn = _graded(lambda s: (loss(s, t, mask), s), lambda s, g: g * grad(s, t, mask), ("student",))
        return fn, _tensors(r.standard_normal((2, 3, 2))), ("student",)
    return [GradCase("masked_mse_grad against masked_mse, with padding", build, ("masked_mse", "masked_mse_grad"))]


# -- ex10: the energy of one layer -----------------------------------------------------------
def _ref_linear_energy(x, out_features, spiking=True):
    cost = LayerCost("layer", "linear")
    cost.add(np.asarray(x), out_features, spiking, integer_as_spikes=False)
    return cost.rate, cost.macs, cost.acs, cost.energy_pj()


def _energy_variant(x, out_features, spiking=True, ac_dense=False, fanout_in=False, counts_as_spikes=False,
                    teacher_acs=False, swapped=False, first_step=False):
    binary = bool(np.all((x == 0) | (x == 1)))
    integer = bool(np.all(x >= 0) and np.all(x == np.round(x)))
    f = x.shape[-1] if fanout_in else out_features
    spikes = x[0] if first_step else x
    if (spiking or teacher_acs) and (binary or (integer and counts_as_spikes)):
        macs, acs = 0.0, float(x.size * f) if ac_dense else float(spikes.sum() * f)
    else:
        macs, acs = float(x.size * f), 0.0
    e_mac, e_ac = (E_AC_PJ, E_MAC_PJ) if swapped else (E_MAC_PJ, E_AC_PJ)
    return float(x.mean()), macs, acs, e_mac * macs + e_ac * acs


def _energy_mistake(hint, **twist):
    return Mistake(hint, lambda x, out_features, spiking=True: _energy_variant(x, out_features, spiking, **twist))


EX10_TASKS = (
    Task("linear_energy", ("rate", "macs", "acs", "energy_pj"), _ref_linear_energy, (
        _energy_mistake("only the spikes (the 1s) cost something: ACs = dense x rate = out_features x sum(x), "
                        "not one AC per input element and weight", ac_dense=True),
        _energy_mistake("each input element meets out_features weights (its fan-out), not in_features",
                        fanout_in=True),
        _energy_mistake("integer counts are not spikes: minispike charges them as MACs (a count multiplies a "
                        "weight); only inputs of 0s and 1s are accumulates", counts_as_spikes=True),
        _energy_mistake("a non-spiking model (the teacher) pays a MAC for every product, whatever its input",
                        teacher_acs=True),
        _energy_mistake("E_MAC = 4.6 pJ per multiply-accumulate, E_AC = 0.9 pJ per accumulate: the constants "
                        "are swapped", swapped=True),
        _energy_mistake("sum the spikes over every time step (and token), not only t = 0", first_step=True),
    )),
)


def _ex10_cases():
    r = _rng(10)
    spikes = (r.random((4, 5, 6)) < 0.2).astype(np.float64)  # (T, L, D_in)
    return [
        Case("linear_energy", "spikes (T=4, L=5, D_in=6) -> 8 outputs, rate about 0.2",
             {"x": spikes, "out_features": 8}),
        Case("linear_energy", "silent input (rate 0)", {"x": np.zeros((2, 3, 4)), "out_features": 5},
             "no spike, no accumulate: 0 ACs and 0 pJ"),
        Case("linear_energy", "every neuron fires (rate 1)", {"x": np.ones((2, 3, 4)), "out_features": 5}),
        Case("linear_energy", "integer counts 0..3 (a residual sum of spikes)",
             {"x": r.integers(0, 4, (3, 4, 5)).astype(np.float64), "out_features": 6},
             "values other than 0 and 1 are not spikes: every product is a MAC"),
        Case("linear_energy", "real-valued input", {"x": r.standard_normal((3, 4)), "out_features": 7}),
        Case("linear_energy", "the teacher (spiking=False) on 0/1 input", {"x": spikes, "out_features": 8,
                                                                           "spiking": False}),
    ]


# -- the list, in learning order ------------------------------------------------------------
EXERCISES = (
    Exercise("ex01_broadcast_mul", "the backward of a broadcasting multiply", EX01_TASKS, _ex01_cases,
             _ex01_gradchecks),
    Exercise("ex02_layernorm_backward", "layer norm: forward cache and backward", EX02_TASKS, _ex02_cases,
             _ex02_gradchecks),
    Exercise("ex03_softmax_cross_entropy", "softmax + cross-entropy on logits", EX03_TASKS, _ex03_cases,
             _ex03_gradchecks),
    Exercise("ex04_kl_temperature", "KL(teacher || student) with temperature", EX04_TASKS, _ex04_cases,
             _ex04_gradchecks),
    Exercise("ex05_surrogate_derivative", "a surrogate's derivative from its primitive", EX05_TASKS, _ex05_cases,
             _ex05_gradchecks),
    Exercise("ex06_lif_forward", "the LIF forward: charge, fire, reset", EX06_TASKS, _ex06_cases),
    Exercise("ex07_lif_bptt", "the LIF backward through time", EX07_TASKS, _ex07_cases, _ex07_gradchecks),
    Exercise("ex08_spiking_attention_backward", "spiking self-attention backward with the key mask", EX08_TASKS,
             _ex08_cases, _ex08_gradchecks),
    Exercise("ex09_masked_feature_loss", "the masked feature-distillation MSE", EX09_TASKS, _ex09_cases,
             _ex09_gradchecks),
    Exercise("ex10_energy_one_layer", "the energy of one layer at 45 nm", EX10_TASKS, _ex10_cases),
)
