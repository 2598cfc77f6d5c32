"""The ``minispike`` command line: one sub-command per job, one-line errors, progress bars."""
from __future__ import annotations

import argparse
import sys

from . import __version__


class UserError(Exception):
    """A problem with the user's input: printed as one line, exit status 2, no traceback."""


def cmd_gradcheck_demo(args):
    """Check a small network's gradients against finite differences and print the verdict."""
    from . import backend, ops
    from .gradcheck import gradcheck, make_inputs
    with backend.dtype_scope("float64"):
        x, w, b, g, beta = make_inputs((2, 3, 8), (4, 8), (4,), (4,), (4,), seed=args.seed)
        def net(x, w, b, g, beta):
            return ops.softmax(ops.gelu(ops.layer_norm(ops.linear(x, w, b), g, beta)), axis=-1)
        gradcheck(net, [x, w, b, g, beta], name="softmax(gelu(layer_norm(linear(x))))")
    print("gradcheck passed: linear -> layer_norm -> gelu -> softmax, float64, every input checked")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="minispike", description="SpikeBERT from scratch: a spiking Transformer distilled from BERT.")
    parser.add_argument("--version", action="version", version=f"minispike {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("gradcheck-demo", help="check a small network's gradients by finite differences")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_gradcheck_demo)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except UserError as e:
        print(f"minispike {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
