"""Host-side text handling: tasks and loaders, fixed splits, download with checksums, the tokenizer,
length-bucketed batching with a token cache, augmentation (stage 2) and the unlabelled corpus
(stage 1).  See docs/data.md.

    from minispike.text import load_task, Tokenizer, Batcher
    data = load_task("sst2", "train", data_dir="../shared/data")
    tok = Tokenizer.from_pretrained(teacher_dir)   # e.g. minispike.models.bert.find_default_teacher()
    batches = Batcher(tok.encode_ids(data.texts, 128), data.labels, batch_size=32, seed=0)
"""
from .tasks import (  # noqa: F401
    SPLITS, DataError, Example, LoadReport, Source, Task, TaskData, TASKS, default_cache_dir, get_task,
    hashed_split, list_tasks, load_task, read_file, register_table_task, register_task, resolve_data_dir,
    text_hash,
)
from .tokenizer import Tokenizer, is_cjk_char, pad_sequences  # noqa: F401
from .batching import Batcher, Encoded, encode_cached, encode_task, default_token_cache_dir  # noqa: F401
from .augment import Augmented, augment, split_words, join_words  # noqa: F401
from .corpus import Corpus, build_corpus, read_text_file  # noqa: F401
from .download import ChecksumError, DownloadError, download, add_download_arguments, run_download  # noqa: F401
from .builtin import builtin_texts, builtin_tokenizer, load_builtin  # noqa: F401
