"""The models: the BERT teacher (``bert``) and the spiking student (``spikebert``).

``load(dir)`` (also ``minispike.load``) returns the model a checkpoint directory holds, as its
config.json says: a ``SpikeBert`` student (model_type ``spikebert``), a fine-tuned
``BertForSequenceClassification`` teacher, or a plain ``BertModel`` encoder; in eval mode.
"""
from __future__ import annotations

import os

from ..io.checkpoint import CONFIG_NAME, read_json
from .bert import BertForSequenceClassification, BertModel
from .spikebert import MODEL_TYPE, SpikeBert

__all__ = ["load", "BertModel", "BertForSequenceClassification", "SpikeBert"]


def load(directory, dtype=None):
    """The student or the teacher in ``directory`` (config.json decides), in eval mode."""
    directory = os.fspath(directory)
    config = read_json(os.path.join(directory, CONFIG_NAME), CONFIG_NAME)
    if config.get("model_type") == MODEL_TYPE:
        return SpikeBert.from_pretrained(directory, dtype=dtype)
    if any(str(a).endswith("ForSequenceClassification") for a in config.get("architectures") or ()):
        return BertForSequenceClassification.from_pretrained(directory, dtype=dtype)
    return BertModel.from_pretrained(directory, dtype=dtype)
