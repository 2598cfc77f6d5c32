"""The numba kernels behind ``minispike.compiled`` (imported by it on first use, never directly).

Module-level functions, so that numba's on-disk cache (``cache=True``) finds them again in
the next process instead of compiling them anew; ``minispike.compiled`` says what each one
computes, where it runs, and how accurate it is.
"""
import numba
import numpy as np

from .compiled import ERF_P, ERF_Q, ERF_SATURATES

f32 = np.float32
p0, p1, p2, p3, p4, p5, p6 = (f32(c) for c in ERF_P)
q0, q1, q2, q3, q4 = (f32(c) for c in ERF_Q)
inv_sqrt2, edge, half, one = f32(1 / np.sqrt(2)), f32(ERF_SATURATES), f32(0.5), f32(1)
# error_model="numpy": a division raises nothing, so loops with one are vectorised;
# fastmath reassoc/contract: sums may be regrouped and multiply-adds fused (never nan/inf shortcuts)
jit = dict(nogil=True, error_model="numpy", cache=True)
sums = dict(jit, fastmath={"reassoc", "contract"})

taylor = tuple(1.0 / k for k in range(10, 0, -1))  # 1/10, 1/9, ..., 1


@numba.njit(inline="always", **sums)
def exp_nonpositive(x):  # e^x for x <= 0 in float64: e^(x/256) by its Taylor series (10 terms), squared 8 times
    if x < -110.0:  # e^-110 is 0 in float32; a masked key's -3.4e38 stays finite on the way
        x = -110.0
    y = x * (1.0 / 256.0)
    p = 1.0
    for c in taylor:  # Horner: 1 + y (1 + y/2 (1 + y/3 (... (1 + y/10))))
        p = 1.0 + y * c * p
    for _ in range(8):
        p = p * p
    return p


@numba.njit(inline="always", **jit)
def erf_rational(z):  # erf(z) = z P(z^2) / Q(z^2), +-1 beyond the edge
    w = z * z
    p = p0 + w * (p1 + w * (p2 + w * (p3 + w * (p4 + w * (p5 + w * p6)))))
    q = q0 + w * (q1 + w * (q2 + w * (q3 + w * q4)))
    e = z * p / q
    if z > edge:
        e = one
    if z < -edge:
        e = -one
    return e


@numba.njit("void(float32[::1], float32[::1])", **jit)
def gelu_block(a, y):  # y = a Phi(a) = a (1 + erf(a / sqrt 2)) / 2, elementwise
    for i in range(a.shape[0]):
        y[i] = half * a[i] * (one + erf_rational(a[i] * inv_sqrt2))


@numba.njit("void(float32[::1], float32[::1], float32[::1], float32[::1])", **jit)
def gelu_keep_block(a, y, cdf, gauss):  # the same y, and Phi(a) and e^(-a^2/2) for the backward
    for i in range(a.shape[0]):
        z = a[i] * inv_sqrt2
        phi = half * (one + erf_rational(z))
        cdf[i] = phi
        gauss[i] = exp_nonpositive(-(z * z))  # e^(-a^2/2) = e^(-z^2)
        y[i] = a[i] * phi


@numba.njit("void(float32[:, ::1], float32[::1], float32[::1], float32, float32[:, ::1])", **sums)
def layer_norm_block(x, weight, bias, eps, y):  # y = (x - mean) / sqrt(var + eps) * weight + bias, per row
    n, D = x.shape
    for i in range(n):
        total = 0.0  # the row's sums in float64: a vectorised float32 sum loses digits on rows far from 0
        for j in range(D):
            total += x[i, j]
        mean = f32(total / D)
        squares = 0.0
        for j in range(D):
            squares += (x[i, j] - mean) * (x[i, j] - mean)
        rstd = f32(1.0 / np.sqrt(squares / D + eps))
        for j in range(D):
            y[i, j] = (x[i, j] - mean) * rstd * weight[j] + bias[j]


@numba.njit("void(float32[:, :, :, ::1], float32[:, ::1], float32)", **sums)
def masked_softmax_block(s, mask, scale):  # s[n, h, i] = softmax(s[n, h, i] * scale + mask[n]), in place
    b, H, L, _ = s.shape
    for n in range(b):
        for h in range(H):
            for i in range(L):
                row = s[n, h, i]
                top = -np.inf
                for j in range(L):
                    v = row[j] * scale + mask[n, j]
                    row[j] = v
                    top = max(top, v)
                total = 0.0
                for j in range(L):
                    e = exp_nonpositive(row[j] - top)
                    row[j] = e
                    total += e
                inv = f32(1.0 / total)
                for j in range(L):
                    row[j] *= inv


KERNELS = {"gelu": gelu_block, "gelu_keep": gelu_keep_block, "layer_norm": layer_norm_block,
           "masked_softmax": masked_softmax_block, "exp_nonpositive": exp_nonpositive}
