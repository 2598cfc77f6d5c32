"""minispike's student reproduces the official SpikeBERT code (shared/reference), both ways.

Two references, every test on both: ``official_student_tiny.npz`` (its attention LIF never
fires) and ``official_student_firing.npz`` (it fires, and meets its threshold exactly where
Heaviside(0) = 1 decides; only it sees the attention path, its key mask and that convention).
Each holds one float64 forward/backward of the official PyTorch + spikingjelly
student (weights, logits per time step, per-block representations, loss, every gradient).
Spikes are compared against an independent NumPy transcription of the official forward
(``official_forward`` below, (B, T, L, D) layout as the official code), which itself must
match the reference logits; a single differing spike is reported with its layer, time step,
neuron and membrane value against the threshold.
"""
import numpy as np
import pytest

from minispike import ops
from minispike.io.official import NAME_MAP, OfficialFormatError, from_official_name, read_official, to_official_name
from minispike.models.spikebert import SpikeBert, SpikeBertConfig
from minispike.spiking import record

from conftest import SHARED

REF = SHARED / "reference" / "official_student_tiny.npz"
# the second reference: the attention LIF fires (12 and 17 spikes) and meets its threshold
# exactly in 6 places, where Heaviside(0) = 1 decides (shared/reference/README.md)
FIRING = SHARED / "reference" / "official_student_firing.npz"
REFERENCES = {"tiny": (REF, 4), "firing": (FIRING, 2)}  # file, heads


@pytest.fixture(scope="module", params=sorted(REFERENCES))
def ref(request):
    path, heads = REFERENCES[request.param]
    if not path.is_file():
        pytest.skip(f"{path} is not present")
    with np.load(path) as z:
        data = {k: z[k] for k in z.files}
    data.update(_name=request.param, _path=path, _heads=heads)
    return data


def student(ref):
    return SpikeBert.from_official(ref["_path"], heads=ref["_heads"], T=4, max_length=ref["input_ids"].shape[1])


# -- an independent transcription of the official forward (NumPy, float64) ---------------------
def official_forward(p, ids, T=4, heads=4, tau=2.0, vth=1.0, eps=1e-5):
    """new_spikformer.forward, line by line; returns logits (B, T, C), reps, spikes, membranes."""
    spikes, membranes = {}, {}

    def ln(x, w, b):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * w + b

    def lin(x, name):
        return x @ p[name + ".weight"].T + p[name + ".bias"]

    def lif_node(x, name, thr):  # spikingjelly LIFNode, step_mode='m', x: (T, ...)
        v, out, hs = 0.0, [], []
        for t in range(x.shape[0]):
            h = v + (x[t] - (v - 0.0)) / tau
            s = (h - thr >= 0).astype(x.dtype)
            v = (1.0 - s) * h + s * 0.0
            out.append(s), hs.append(h)
        spikes[name], membranes[name] = np.stack(out), np.stack(hs)
        return spikes[name]

    x = p["emb.weight"][ids]  # (B, L, D)
    x = np.repeat(x[None], T, 0).transpose(1, 0, 2, 3)  # B T L D
    x = (x >= 0).astype(np.float64)
    B, _, L, D = x.shape
    reps = []
    for i in range(len({k.split(".")[1] for k in p if k.startswith("blocks.")})):
        pre = f"blocks.{i}.attn."
        xt = x.transpose(1, 0, 2, 3)  # T B L D
        qkv = []
        for n, ours in (("q", "q"), ("k", "k"), ("v", "v")):
            h = ln(lin(xt, pre + n + "_m"), p[pre + n + "_ln.weight"], p[pre + n + "_ln.bias"])
            s = lif_node(h, f"blocks.{i}.attn.{ours}.lif", vth)
            qkv.append(s.reshape(T, B, L, heads, D // heads).transpose(0, 1, 3, 2, 4))
        q, k, v = qkv
        a = (q @ k.swapaxes(-2, -1)) @ v * 0.125
        a = a.transpose(0, 1, 3, 2, 4).reshape(T, B, L, D)
        a = lif_node(a, f"blocks.{i}.attn.attn_lif", vth / 2)
        a = ln(lin(a, pre + "last_m"), p[pre + "last_ln.weight"], p[pre + "last_ln.bias"])
        a = lif_node(a, f"blocks.{i}.attn.out.lif", vth)
        x = x + a.transpose(1, 0, 2, 3)
        pre = f"blocks.{i}.mlp."
        xt = x.transpose(1, 0, 2, 3)
        h = lif_node(ln(lin(xt, pre + "fc1"), p[pre + "ln1.weight"], p[pre + "ln1.bias"]), f"blocks.{i}.mlp.up.lif", vth)
        h = lif_node(ln(lin(h, pre + "fc2"), p[pre + "ln2.weight"], p[pre + "ln2.bias"]), f"blocks.{i}.mlp.down.lif", vth)
        x = x + h.transpose(1, 0, 2, 3)
        reps.append(ln(lin(x.mean(1), f"transforms.{i}.fc"), p[f"transforms.{i}.ln.weight"], p[f"transforms.{i}.ln.bias"]))
    x = ln(x, p["last_ln.weight"], p["last_ln.bias"]).mean(2)  # B T D
    return lin(x, "classifier"), reps, spikes, membranes


def first_spike_mismatch(ours, theirs, membranes, thresholds):
    """A readable account of the first differing spike, or None."""
    for name in theirs:
        if name not in ours:
            return f"layer {name}: minispike recorded no spikes"
        a, b = ours[name], theirs[name]
        diff = np.argwhere(a != b)
        if len(diff):
            idx = tuple(int(i) for i in diff[0])
            t, rest = idx[0], idx[1:]
            h = membranes[name][idx]
            return (f"{len(diff)} spike(s) differ in layer {name}; first at time step t={t}, neuron {rest}: "
                    f"minispike {a[idx]:.0f} vs official {b[idx]:.0f}; official membrane H = {h!r} "
                    f"vs threshold {thresholds[name]} (H - V_th = {h - thresholds[name]:.3e})")
    return None


# -- the reproduction -------------------------------------------------------------------------
def test_reproduces_the_official_forward_and_backward(ref, f64):
    model = student(ref)
    with record() as rec:
        out = model(ref["input_ids"])
    loss = ops.cross_entropy(out.logits, ref["labels"])
    loss.backward()

    # spikes: exact, against the NumPy transcription (itself checked against the reference logits)
    params = {k[len("param/"):]: v for k, v in ref.items() if k.startswith("param/")}
    logits_np, reps_np, spikes_np, membranes_np = official_forward(params, ref["input_ids"], heads=ref["_heads"])
    np.testing.assert_allclose(logits_np, ref["logits"], rtol=0, atol=1e-9)
    ours = {name: np.asarray(rec[name]["spikes"]).reshape(spikes_np[name].shape) for name in spikes_np}
    thresholds = {n: (0.5 if n.endswith("attn_lif") else 1.0) for n in spikes_np}
    report = first_spike_mismatch(ours, spikes_np, membranes_np, thresholds)
    assert report is None, report
    assert sum(int(s.sum()) for s in ours.values()) > 0
    if ref["_name"] == "firing":  # what this reference is for: the attention path fires
        fired = [int(ours[f"blocks.{i}.attn.attn_lif"].sum()) for i in range(2)]
        at_threshold = [int((membranes_np[f"blocks.{i}.attn.attn_lif"] == 0.5).sum()) for i in range(2)]
        assert fired == [12, 17] and at_threshold == [0, 6], (fired, at_threshold)

    np.testing.assert_allclose(out.logits_per_step.numpy(), ref["logits"], rtol=0, atol=1e-9)
    for i in range(2):
        np.testing.assert_allclose(out.taps[i].numpy(), ref[f"rep/{i}"], rtol=0, atol=1e-9, err_msg=f"rep/{i}")
    assert abs(loss.item() - float(ref["loss"])) <= 1e-12
    for name, p in model.named_parameters():
        want = ref["grad/" + to_official_name(name)]
        got = np.zeros_like(want) if p.grad is None else np.asarray(p.grad)
        scale = max(np.abs(want).max(), 1e-30)
        assert np.abs(got - want).max() <= 1e-8 * scale, f"gradient of {name} ({to_official_name(name)})"


def test_spike_mismatch_report_is_helpful():
    a = {"blocks.0.attn.q.lif": np.zeros((2, 3))}
    b = {"blocks.0.attn.q.lif": np.array([[0, 0, 0], [0, 1.0, 0]])}
    h = {"blocks.0.attn.q.lif": np.full((2, 3), 1.0)}
    msg = first_spike_mismatch(a, b, h, {"blocks.0.attn.q.lif": 1.0})
    assert "t=1" in msg and "neuron (1,)" in msg and "threshold 1.0" in msg and "blocks.0.attn.q.lif" in msg


def test_padded_masked_batch_gives_the_reference_logits(ref, f64):
    model = student(ref)
    ids = ref["input_ids"]
    B, L = ids.shape
    pad = 5
    rng = np.random.default_rng(0)
    padded = np.concatenate([ids, rng.integers(0, 50, (B, pad))], axis=1)  # padding with random tokens
    mask = np.concatenate([np.ones((B, L)), np.zeros((B, pad))], axis=1)
    model.config.max_length = L + pad
    out = model(padded, mask)
    np.testing.assert_allclose(out.logits_per_step.numpy(), ref["logits"], rtol=0, atol=1e-9)
    for i in range(2):
        np.testing.assert_allclose(out.taps[i].numpy()[:, :L], ref[f"rep/{i}"], rtol=0, atol=1e-9)
    # the official computation (no mask) lets the padding leak into the sentence's logits
    leaky = model(padded)
    assert np.abs(leaky.logits_per_step.numpy() - ref["logits"]).max() > 1e-6


# -- import / export ----------------------------------------------------------------------------
def test_name_map_is_one_table_read_both_ways():
    model = SpikeBert(SpikeBertConfig.preset("official"))
    names = [n for n, _ in model.named_parameters()]
    official = [to_official_name(n) for n in names]
    assert [from_official_name(o) for o in official] == names
    assert "blocks.1.attn.last_m.weight" in official and "emb.weight" in official and "last_ln.bias" in official
    assert len(set(official)) == len(official) and len(NAME_MAP) == 17


@pytest.mark.parametrize("ext", [".npz", ".safetensors"])
def test_round_trip(ext, tmp_path, ref, f64):
    model = student(ref)
    path = model.save_official(tmp_path / f"student{ext}")
    back = SpikeBert.from_official(path)  # heads, T and max_length travel in the file's metadata
    for (n, p), (m, q) in zip(model.named_parameters(), back.named_parameters()):
        assert n == m and np.array_equal(p.numpy(), q.numpy())
    ids = ref["input_ids"]
    np.testing.assert_array_equal(model(ids).logits.numpy(), back(ids).logits.numpy())
    state = read_official(path)
    assert set(state) == {k[len("param/"):] for k in ref if k.startswith("param/")}


def test_strict_checks(ref, f64):
    state = read_official(ref["_path"])
    model = SpikeBert.from_official(state, heads=ref["_heads"], T=4, max_length=ref["input_ids"].shape[1])
    bad = dict(state)
    del bad["blocks.0.attn.q_m.weight"]
    bad["blocks.0.attn.z_m.weight"] = np.zeros((32, 32))
    bad["classifier.weight"] = np.zeros((3, 32))
    with pytest.raises(OfficialFormatError) as e:
        model.load_official_state(bad, source="bad.npz")
    msg = str(e.value)
    assert "bad.npz" in msg and "blocks.0.attn.q_m.weight" in msg and "z_m" in msg and "classifier.weight" in msg
    with pytest.raises(OfficialFormatError, match="embedding projection"):
        proj = SpikeBert(SpikeBertConfig.preset("tiny", teacher_dim=48))  # an embedding projection
        proj.official_state()


def test_official_preset_pins_the_official_numerics():
    cfg = SpikeBertConfig.preset("official")
    assert (cfg.ln_eps, cfg.attn_threshold, cfg.scale, cfg.tau, cfg.v_threshold, cfg.v_reset) == (1e-5, 0.5, 0.125, 2.0, 1.0, 0.0)
    assert cfg.detach_reset and cfg.decay_input and cfg.spike_input and cfg.surrogate == "atan"
    assert cfg.embedding_std == 1.0 and cfg.mlp_ratio == 4 and not cfg.has_embedding_proj
