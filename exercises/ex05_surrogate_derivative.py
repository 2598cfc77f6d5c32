"""Exercise 5: a surrogate gradient, the derivative of a smooth primitive.

Read first: docs/surrogate.md, minispike/spiking/surrogate.py (ATan),
            examples/03_surrogate_gradients.py.
Check:      python -m minispike check ex05

A spiking neuron fires S = Theta(x), x = H - V_th: a step whose derivative is 0 everywhere
except at 0. Training replaces dTheta/dx by the derivative g'(x) of a smooth "primitive"
g that looks like the step. spikingjelly's default, ATan with sharpness alpha:

    g(x)  = arctan((pi/2) alpha x) / pi + 1/2          runs from 0 to 1, g(0) = 1/2
    g'(x) = ?                                          derive it: the chain rule through
                                                       the inner factor (pi/2) alpha

(d/du arctan(u) = 1 / (1 + u^2).) The peak g'(0) grows with alpha; the area under g' is 1,
like the step's.

Shapes: ``x`` any shape (floats), ``alpha`` a positive float; return arrays of x's shape.

The checker compares both with minispike's ATan(alpha).primitive / .derivative for
alpha = 2 and 5, at x = 0 exactly and far from it (|x| = 1000), then checks your derivative
against finite differences of your primitive.
"""
import numpy as np


def atan_primitive(x, alpha):
    """g(x) = arctan((pi/2) alpha x) / pi + 1/2."""
    raise NotImplementedError("atan_primitive is yours to write: the formula in the docstring")


def atan_derivative(x, alpha):
    """g'(x), derived by hand from atan_primitive."""
    raise NotImplementedError("atan_derivative is yours to write: differentiate the primitive")
