"""03 - Why spikes need surrogate gradients.

A spike is a step: S = Theta(x) with x = H - V_th, Theta(x) = 1 if x >= 0 else 0. Its derivative
is 0 everywhere except at x = 0, where it is infinite. Backpropagation multiplies by that
derivative, so every gradient that passes a spike is 0: nothing upstream ever learns.

The fix (Neftci et al. 2019): keep the step in the forward pass, but in the backward pass
use the derivative g'(x) of a smooth step g. minispike has four (minispike/spiking/surrogate.py):

    ATan         g'(x) = a / (2 (1 + (pi/2 a x)^2))     a = 2   (SpikeBERT, spikingjelly's default)
    Sigmoid      g'(x) = a s(ax) (1 - s(ax))             a = 4
    FastSigmoid  g'(x) = 1 / (1 + k|x|)^2                k = 25  (SuperSpike)
    Rectangular  g'(x) = 1/w on |x| < w/2, else 0        w = 1

Part 1 tries to teach a neuron to fire with the true (zero) gradient: the weight never moves.
Part 2 does the same with ATan: the weight climbs until the neuron fires.
Part 3 prints and plots the four surrogates, and the ``spiking=False`` switch that turns the
forward into the smooth g itself (what makes finite-difference checks possible, example 04).

Run:  python examples/03_surrogate_gradients.py [--out examples/out]
Read next: docs/surrogate.md.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # examples/, for _shared (any cwd)
import _shared  # noqa: E402  (the plumbing every example shares; puts the checkout on sys.path)

import numpy as np  # noqa: E402

from minispike.spiking.surrogate import ATan, FastSigmoid, Rectangular, Sigmoid, Surrogate  # noqa: E402
from minispike.tensor import Tensor  # noqa: E402


class TrueStep(Surrogate):
    """The honest derivative of the step: 0 (almost) everywhere."""

    name = "true step"

    def __init__(self):
        super().__init__(alpha=0.0)

    def primitive(self, x):
        return (x >= 0).astype(x.dtype)

    def derivative(self, x):
        return x * 0.0


def teach_to_fire(surrogate, steps=8, lr=0.5, x=1.0, w0=0.3, v_th=1.0):
    """One weight w, one input x: spike S = Theta(w x - V_th); loss (1 - S)^2; plain SGD on w."""
    w = Tensor(np.float32(w0), requires_grad=True)
    print(f"  {'step':>4}  {'w':>7}  {'w x - V_th':>10}  {'spike':>5}  {'loss':>5}  {'dL/dw':>8}")
    for step in range(steps):
        s = surrogate(w * x - v_th)          # Heaviside forward, surrogate backward
        loss = (1.0 - s) ** 2
        w.grad = None
        loss.backward()
        g = float(w.grad) + 0.0  # + 0.0 turns -0.0 into 0.0
        print(f"  {step:>4}  {float(w.data):7.4f}  {float(w.data) * x - v_th:>+10.4f}  {int(s.item()):>5}  "
              f"{loss.item():5.1f}  {g:>+8.4f}")
        w.data = w.data - lr * w.grad        # SGD step
    return float(w.data)


def main(argv=None):
    args = _shared.parse_args(__doc__, argv)

    print("Part 1: the true derivative of the step (0). Target: make the neuron fire.")
    w = teach_to_fire(TrueStep())
    print(f"  -> w is still {w:.4f}: the gradient through a spike is exactly 0. Training is stuck.")

    # a finite difference says the same: nudging w a little changes no spike
    step = lambda w: float(1.0 * w - 1.0 >= 0)  # noqa: E731
    h = 1e-3
    print(f"  finite difference (S(w+h) - S(w-h)) / 2h at w = 0.3: {(step(0.3 + h) - step(0.3 - h)) / (2 * h)}")

    print("\nPart 2: the same, with the ATan surrogate (a = 2) in the backward pass.")
    w = teach_to_fire(ATan())
    print(f"  -> w = {w:.4f}: the surrogate gradient pushed w up until w x >= V_th and the neuron fired.")

    print("\nPart 3: the surrogates side by side, g'(x) at a few x (x = H - V_th):")
    surrogates = [ATan(), Sigmoid(), FastSigmoid(), Rectangular()]
    xs = np.array([-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0])
    print(f"  {'surrogate':<22}" + "".join(f"{x:>8.2f}" for x in xs) + "   area over [-20, 20]")
    for s in surrogates:
        area = float(s.primitive(np.float64(20.0)) - s.primitive(np.float64(-20.0)))  # integral of g' = g(b) - g(a)
        print(f"  {s!r:<22}" + "".join(f"{v:>8.4f}" for v in s.derivative(xs)) + f"   {area:.3f}")
    print("  ATan, Sigmoid and Rectangular integrate to 1 (g climbs from 0 to 1, like the step; ATan's")
    print("  heavy tails keep 1% of its area beyond |x| = 20); FastSigmoid is SuperSpike's unnormalised")
    print("  form: area 2/k = 0.08, so its gradients are small except right at the threshold.")

    print("\nThe spiking switch: the forward is the step, or (spiking=False) the smooth g itself:")
    x = Tensor(np.array([-0.3, 0.0, 0.3], dtype=np.float32))
    print(f"  ATan()(x)                 = {ATan()(x).numpy()}   (spikes)")
    print(f"  ATan(spiking=False)(x)    = {np.round(ATan(spiking=False)(x).numpy(), 4)}   (g(x) = atan(pi x)/pi + 1/2)")

    save_picture(Path(args.out), surrogates)


def save_picture(out, surrogates):
    plt = _shared.pyplot()
    if plt is None:
        return
    x = np.linspace(-2, 2, 801)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    a1.step(x, (x >= 0).astype(float), where="post", color="k", lw=2, label="Heaviside (forward)")
    for s in surrogates:
        a1.plot(x, s.primitive(x), label=f"{type(s).__name__}: g(x)")
        a2.plot(x, s.derivative(x), label=f"{type(s).__name__}: g'(x)")
    a2.axhline(0, color="k", lw=2, label="true derivative of the step")
    a1.set_title("Smooth steps g(x) (spiking=False forward)")
    a2.set_title("Surrogate gradients g'(x) (used backward)")
    for a in (a1, a2):
        a.set_xlabel("x = H - V_th")
        a.legend(fontsize=8)
    _shared.save_figure(fig, out, "03_surrogate_gradients")


if __name__ == "__main__":
    main()
