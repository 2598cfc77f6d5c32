"""Files on disk: safetensors tensors and atomic checkpoint directories.

``load_file(path)`` / ``save_file(tensors, path)``: strict safetensors I/O (F16/BF16 read
into the compute dtype; one clear ``SafetensorsError`` per broken file).
``save_checkpoint(dir, tensors, config, extra)`` / ``load_checkpoint(dir)``: a directory with
``config.json`` + ``model.safetensors`` (+ ``state.json``, tokenizer files), swapped in atomically.
"""
from .safetensors import SafetensorsError, StateMismatchError, read_header, load_file, save_file, check_state, atomic_write  # noqa: F401
from .checkpoint import (Checkpoint, CheckpointError, save_checkpoint, load_checkpoint,  # noqa: F401
                         read_json, write_json, CONFIG_NAME, WEIGHTS_NAME, STATE_NAME)
