"""Knowledge distillation from BERT into the spiking student: the losses of both stages.

Student block i's output, averaged over T and passed through its own Linear + LN transform,
is ``tap_i`` (B, L, D_teacher). Teacher hidden states are ``h_0`` (embeddings) .. ``h_Lt``.

    layer map    student block i (0-based) -> teacher layer j(i) = ceil((i + 1) * Lt / Ls)
                 (evenly spaced, last to last; equal to "every ceil(Lt/Ls) layers" when Ls divides Lt);
                 the first ``ignore_front`` student blocks are left out
    features     L_feat = sum_i MSE_mask(tap_i, h_j(i))           padding positions excluded
    embedding    L_emb  = MSE_mask(P e_student, E_teacher[ids])   P: Linear(D_s, D_t) (identity if equal)
    logits       L_kl   = tau^2 KL(softmax(z_t / tau) || softmax(z_s / tau))   (batch mean)
    labels       L_ce   = CE(z_s, y)                               only rows with a gold label

    stage 1 (unlabelled text, plain teacher):  w_feat L_feat + w_emb L_emb
    stage 2 (task data + augmentation, fine-tuned teacher):
                 w_kl L_kl + w_ce L_ce + w_feat L_feat + w_emb L_emb

Default weights follow the official stage-2 script (docs/distillation.md): 1.0 / 0.1 / 0.1 / 0.1.
Teacher outputs are computed per batch inside ``no_grad`` (no graph, no gradient), or, for a
fixed transfer set (stage 2: the training split and its augmented copies are drawn before
training), once for all epochs: ``TeacherCache`` keeps each sentence's logits and the mapped
layers' hidden states at its real tokens (``--cache-teacher``).

Optionally (not in the paper, a CPU-budget shortcut) the student's word embedding starts as the
teacher's, compressed by PCA: ``embedding_from_teacher``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from . import backend, ops
from .tensor import no_grad

__all__ = ["LossWeights", "layer_map", "feature_loss", "embedding_loss", "distill_loss", "teacher_targets",
           "TeacherCache", "embedding_from_teacher"]


@dataclass
class LossWeights:
    kl: float = 1.0
    ce: float = 0.1
    features: float = 0.1
    embedding: float = 0.1
    temperature: float = 1.0
    ignore_front: int = 0

    @classmethod
    def stage1(cls, **overrides):
        """Stage 1 has no logits: features and embedding only (both weight 1)."""
        return cls(**{"kl": 0.0, "ce": 0.0, "features": 1.0, "embedding": 1.0, **overrides})

    @classmethod
    def stage2(cls, **overrides):
        return cls(**overrides)

    def to_dict(self):
        return asdict(self)


def layer_map(n_student: int, n_teacher: int, ignore_front: int = 0):
    """Pairs (student block, teacher hidden-state index) for the feature loss."""
    pairs = []
    for i in range(n_student):
        if i < ignore_front:
            continue
        j = min(n_teacher, math.ceil((i + 1) * n_teacher / n_student))
        pairs.append((i, j))
    return pairs


def feature_loss(taps, teacher_hidden, mask, pairs):
    """Sum over mapped pairs of the masked MSE between student taps and teacher hidden states."""
    keep = mask[..., None]  # (B, L, 1): padding excluded
    total = None
    for i, j in pairs:
        term = ops.mse_loss(taps[i], teacher_hidden[j], keep)
        total = term if total is None else total + term
    return total


def embedding_loss(student_embedding, teacher_embedding, mask):
    """Masked MSE between the (projected) student word embedding and the teacher's."""
    return ops.mse_loss(student_embedding, teacher_embedding, mask[..., None])


@dataclass
class TeacherTargets:
    hidden: list  # h_0 .. h_Lt, arrays (B, L, D_t)
    word_embedding: object  # (B, L, D_t) raw rows of the teacher's word-embedding table
    logits: object | None  # (B, C) or None for a plain (stage 1) teacher


def teacher_targets(teacher, input_ids, attention_mask, with_logits: bool):
    """Run the frozen teacher once, without building a graph."""
    bert = getattr(teacher, "bert", teacher)  # a classifier wraps the encoder
    with no_grad():
        out = teacher(input_ids, attention_mask, output_hidden_states=True)
        words = bert.embeddings.word_embeddings.weight.data[input_ids]
        hidden = [h.data for h in out.hidden_states]
        logits = out.logits.data if with_logits else None
    return TeacherTargets(hidden, words, logits)


class TeacherCache:
    """The frozen teacher's targets for a fixed set of sentences, computed once, looked up per batch.

    For sentence n with ``len_n`` real tokens it keeps the logits (C,) in float32 and, for each
    mapped hidden state j (``layers``), the rows h_j[n, :len_n] (len_n, D_t) in ``dtype``: one
    flat (total real tokens, D_t) host array per layer; padding is never stored (the losses mask
    it). ``float16`` halves the memory; its rounding (at most 2^-11 ~ 4.9e-4 of each value,
    relatively) moves the feature loss by about that much. ``float32`` gives the uncached targets
    up to the last-bit differences of running the teacher on other batch compositions. The
    word-embedding rows are a table lookup, gathered per batch exactly as uncached. Host memory
    (like the token ids), so a GPU's memory holds only the batch:

        bytes = (sum_n len_n) * len(layers) * D_t * itemsize  +  N * C * 4
    """

    def __init__(self, teacher, sequences, layers, with_logits=True, dtype="float16", batch_size=64, pad_id=0):
        import numpy as np  # host: the cache is host data, like the token ids
        bert = getattr(teacher, "bert", teacher)
        self.words = bert.embeddings.word_embeddings.weight.data  # (V, D_t), on the device
        self.layers = sorted(set(layers))
        self.n_hidden = bert.config.num_hidden_layers + 1  # h_0 .. h_Lt
        lengths = [len(sequences[i]) for i in range(len(sequences))]
        self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)  # host: sentence n's rows
        width = bert.config.hidden_size
        self.hidden = {j: np.zeros((int(self.offsets[-1]), width), dtype=dtype) for j in self.layers}  # host:
        self.logits = None
        order = sorted(range(len(sequences)), key=lambda i: lengths[i])  # batches of similar length
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            L = max(1, max(lengths[i] for i in idx))
            ids = np.full((len(idx), L), pad_id, dtype=np.int64)  # host: (b, L)
            mask = np.zeros((len(idx), L), dtype=np.int64)  # host: (b, L)
            for b, i in enumerate(idx):
                ids[b, :lengths[i]] = sequences[i]
                mask[b, :lengths[i]] = 1
            t = teacher_targets(teacher, backend.asarray(ids), backend.asarray(mask), with_logits=with_logits)
            if with_logits:
                if self.logits is None:
                    self.logits = np.zeros((len(sequences), t.logits.shape[-1]), dtype=np.float32)  # host: (N, C)
                self.logits[idx] = backend.to_numpy(t.logits)
            for j in self.layers:
                h = backend.to_numpy(t.hidden[j])  # (b, L, D_t) on the host
                for b, i in enumerate(idx):
                    self.hidden[j][self.offsets[i]:self.offsets[i + 1]] = h[b, :lengths[i]]

    @staticmethod
    def planned_bytes(lengths, n_layers, width, n_classes, dtype="float16"):
        """The cache's size, said before it is built."""
        itemsize = {"float16": 2, "float32": 4}[str(dtype)]
        return int(sum(lengths)) * n_layers * width * itemsize + len(lengths) * n_classes * 4

    def targets(self, index, input_ids) -> TeacherTargets:
        """The batch's targets: ``index`` (B,) host sentence numbers, ``input_ids`` (B, L) on the device."""
        import numpy as np  # host: the batch is assembled on the host, then moved once
        B, L = input_ids.shape
        hidden = [None] * self.n_hidden  # only the mapped layers are filled: feature_loss reads no other
        for j in self.layers:
            rows = np.zeros((B, L, self.hidden[j].shape[1]), dtype=self.words.dtype)  # host: (B, L, D_t), padding 0
            for b, i in enumerate(index):
                lo, hi = self.offsets[i], self.offsets[i + 1]
                rows[b, :hi - lo] = self.hidden[j][lo:hi]
            hidden[j] = backend.asarray(rows)
        logits = None if self.logits is None else backend.asarray(self.logits[index].astype(self.words.dtype))
        return TeacherTargets(hidden, self.words[input_ids], logits)


def distill_loss(student_out, targets: TeacherTargets, mask, w: LossWeights, labels=None, has_label=None,
                 label_rows=None):
    """The weighted sum of the stage's losses; returns (loss, each term as a 0-d device array).

    CE uses the rows with a gold label: ``label_rows`` (their indices, known on the host: no
    device sync), else ``has_label`` (B,) bool (``nonzero`` on it waits for the device), else all.
    """
    xp = backend.get_array_module(mask)
    fmask = mask.astype(student_out.logits.dtype)
    parts = {}
    total = None

    def add(name, weight, term):
        nonlocal total
        parts[name] = term.data  # a 0-d device array: float() it when logging (one sync each)
        weighted = term * weight
        total = weighted if total is None else total + weighted

    if w.features:
        pairs = layer_map(len(student_out.taps), len(targets.hidden) - 1, w.ignore_front)
        add("loss_features", w.features, feature_loss(student_out.taps, targets.hidden, fmask, pairs))
    if w.embedding:
        add("loss_embedding", w.embedding, embedding_loss(student_out.embedding, targets.word_embedding, fmask))
    if w.kl and targets.logits is not None:
        tau = w.temperature
        z = targets.logits / tau
        z = z - z.max(axis=-1, keepdims=True)
        p = xp.exp(z)
        p = p / p.sum(axis=-1, keepdims=True)  # softened teacher probabilities
        add("loss_kl", w.kl, ops.kl_div(student_out.logits, p, temperature=tau))
    if w.ce and labels is not None:
        rows = label_rows if label_rows is not None or has_label is None else xp.nonzero(has_label)[0]
        if rows is None:
            add("loss_ce", w.ce, ops.cross_entropy(student_out.logits, labels))
        elif rows.shape[0]:
            add("loss_ce", w.ce, ops.cross_entropy(student_out.logits[rows], labels[rows]))
    if total is None:
        raise ValueError("every loss weight is zero (or no term applies): nothing to train")
    return total, parts


def embedding_from_teacher(student, teacher_words):
    """Start the student's word embedding from the teacher's table W (V, D_t), by PCA.

        mu = mean_v W_v,   C = (W - mu)^T (W - mu) / V,   C u_k = lambda_k u_k  (k = 1 .. D_s, largest)
        E_v = sigma (W_v - mu) U / sqrt(lambda)           each column: mean 0, std sigma (the embedding std)
        P(E_v) = E_v (U sqrt(lambda) / sigma)^T + mu      the embedding projection inverts it

    so similar teacher words get similar (after the input Heaviside: mostly equal) spike codes,
    and the embedding loss starts at the PCA reconstruction error. When the student is wider
    than the teacher, the extra columns keep their random values. Returns the share of the
    teacher's embedding variance the kept directions explain.
    """
    xp = student.embedding.weight.xp
    w = teacher_words.astype(xp.float64)  # (V, D_t)
    table, proj = student.embedding.weight, student.embedding_proj  # (V, D_s), Linear(D_s, D_t)
    if proj is None:
        raise ValueError("embedding_from_teacher: the student has no embedding projection to invert the PCA "
                         "(widths are equal: build it with embedding_proj=True)")
    if w.shape[0] != table.shape[0]:
        raise ValueError(f"embedding_from_teacher: the teacher has {w.shape[0]} words, the student {table.shape[0]}")
    mu = w.mean(axis=0)  # (D_t,)
    centred = w - mu
    cov = centred.T @ centred / w.shape[0]  # (D_t, D_t)
    lam, vecs = xp.linalg.eigh(cov)  # ascending eigenvalues
    k = min(table.shape[1], w.shape[1])
    lam, vecs = lam[::-1][:k], vecs[:, ::-1][:, :k]  # (k,), (D_t, k): the leading directions
    sigma = student.config.embedding_std
    scale = xp.sqrt(xp.maximum(lam, 1e-12))
    table.data[:, :k] = (sigma * (centred @ vecs) / scale).astype(table.dtype)
    proj.weight.data[...] = 0
    proj.weight.data[:, :k] = (vecs * scale / sigma).astype(proj.weight.dtype)  # (D_t, D_s)
    proj.bias.data[...] = mu.astype(proj.bias.dtype)
    return float(lam.sum() / xp.trace(cov))
