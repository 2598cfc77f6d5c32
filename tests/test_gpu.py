"""On a GPU (marker gpu; skipped with the reason elsewhere): CuPy computes what NumPy computes.

benchmarks/gpu_check.sh runs these, with the backend-generic tests on CuPy
(``--backend-under-test cupy``). Each compares a CuPy run with the NumPy run from the same seed.
"""
import numpy as np
import pytest

from minispike import backend, cli, ops
from minispike.models.bert import BertConfig, BertForSequenceClassification
from minispike.models.spikebert import SpikeBert, SpikeBertConfig
from minispike.tensor import Tensor

pytestmark = pytest.mark.gpu


def _student_step(name):
    backend.use(name)
    backend.seed(0)
    model = SpikeBert(SpikeBertConfig.preset("tiny", vocab_size=100, num_classes=3))
    rng = np.random.default_rng(0)
    ids = backend.asarray(rng.integers(1, 100, (4, 12)))
    mask = backend.asarray(np.ones((4, 12), dtype=np.float32))
    out = model(ids, mask)
    loss = ops.cross_entropy(out.logits, backend.asarray(rng.integers(0, 3, 4)))
    loss.backward()
    return (backend.to_numpy(out.logits.data),
            {k: backend.to_numpy(p.grad) for k, p in model.named_parameters() if p.grad is not None})


def test_a_student_training_step_on_cupy_equals_numpy():
    logits_gpu, grads_gpu = _student_step("cupy")
    logits_cpu, grads_cpu = _student_step("numpy")
    np.testing.assert_allclose(logits_gpu, logits_cpu, rtol=1e-4, atol=1e-5)
    assert grads_gpu.keys() == grads_cpu.keys()
    for k in grads_cpu:
        np.testing.assert_allclose(grads_gpu[k], grads_cpu[k], rtol=1e-3, atol=1e-5, err_msg=k)


def test_the_teacher_on_cupy_equals_numpy():
    logits = {}
    for name in ("cupy", "numpy"):
        backend.use(name)
        backend.seed(0)
        model = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2,
                                                         num_attention_heads=4, intermediate_size=64,
                                                         num_labels=2)).eval()
        ids = np.random.default_rng(1).integers(1, 50, (3, 10))
        logits[name] = backend.to_numpy(model(ids, np.ones((3, 10), dtype=np.int64)).logits.data)
    np.testing.assert_allclose(logits["cupy"], logits["numpy"], rtol=1e-4, atol=1e-5)


def test_erf_and_scatter_add_on_cupy_equal_numpy():
    x = np.linspace(-4, 4, 101)
    for dtype in (np.float32, np.float64):
        got = backend.to_numpy(backend.erf(backend.use_name("cupy").asarray(x.astype(dtype))))
        np.testing.assert_allclose(got, backend.erf(x.astype(dtype)), rtol=1e-6, atol=2e-7)
    cp = backend.use("cupy")
    target = cp.zeros((4, 2))
    backend.scatter_add(target, cp.asarray([0, 2, 0]), cp.ones((3, 2)))
    np.testing.assert_array_equal(backend.to_numpy(target), [[2, 2], [0, 0], [1, 1], [0, 0]])


def test_gradients_reach_the_device():
    cp = backend.use("cupy")
    x = Tensor(backend.randn((3, 4)), requires_grad=True)
    ops.softmax(ops.gelu(x), -1).sum().backward()
    assert backend.get_array_module(x.grad) is cp


def test_the_cli_evaluates_on_cupy(tmp_path, capsys):
    from minispike.text.builtin import builtin_texts
    from minispike.text.tokenizer import Tokenizer
    tok = Tokenizer.build_wordpiece(builtin_texts(), vocab_size=300)
    backend.seed(0)
    SpikeBert(SpikeBertConfig.preset("tiny", vocab_size=tok.vocab_size, num_classes=2)).save_pretrained(
        tmp_path / "student", tokenizer=tok)
    args = ["evaluate", str(tmp_path / "student"), "--task", "builtin", "--max-length", "16", "--quiet"]
    assert cli.main(args) == 0
    on_numpy = capsys.readouterr().out
    assert cli.main(args + ["--backend", "cupy"]) == 0
    import json
    assert json.loads(capsys.readouterr().out)["accuracy"] == json.loads(on_numpy)["accuracy"]
