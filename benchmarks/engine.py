"""The engine behind ``gnuq.uncertainty(method="auto")`` against the passes it competes with,
every ratio measured in ONE run (float32, compilation excluded, fastest of ``--repeats``
interleaved runs: on 2 shared cores the fastest run is the one other work disturbed least);
compile time = first call minus fastest.

1. MLP 2-1028-1028-4 (1 065 012 parameters), 10 000 inputs, 4 classes: the engine, the
   Dense-layer identity (``method="dense"``), one batched forward + 4 backward passes of
   sum_n p_c(x_n) (``plain``: ordinary weight gradients, no per-example information) and, when
   PyTorch and BackPACK are installed (``pip install '.[bench]'``), BackPACK's ``BatchL2Grad``
   on the same weights.
2. Four small models (~3.8k parameters), 2 000 inputs x 10 classes: a Flax Dense MLP, the same
   MLP in plain ``jnp``, an MLP with LayerNorm, a Flax conv net on 8 x 8 inputs; each against
   its own plain forward + 10 backward passes, and ``vmap(jacrev)`` (the path ``auto`` took
   before the engine).
3. The text encoder (MiniLM-L6 shapes, 22.6M parameters, random weights) with a bernoulli head,
   all-parameter ||grad p||^2 per document at 128 and 256 tokens: engine vs ``vmap(jacrev)`` in
   chunks of 4 documents (what ``experiments/text_domains.py`` ran), the batched forward +
   backward pass, and the floor (``cotangent_pass``: forward + every layer's cotangent).
4. The LLM answer's ||grad p_bar||^2 (``sequence_uncertainty``), SmolLM2-135M's configuration
   with random weights (the real ones come from a wheel), a 64-token question + answer with 20
   answer tokens: engine vs ``vmap(jacrev)`` vs one forward, one forward + backward pass and the
   floor.
5. Per-call overhead on a 1k-parameter MLP: ``gnuq.uncertainty`` minus its compiled program.

Writes ``figures/engine/engine.json`` and prints the table.
"""

import argparse
import functools
import json
import operator
import pathlib
import platform
import subprocess
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import gnuq
from gnuq import estimators, likelihoods, models, problems
from gnuq.pretrained import bert, decoder


def fastest(fns: dict, repeats: int) -> tuple[dict, dict]:
    """Fastest wall time of each function, runs interleaved after one warm-up each; and each
    function's compile time (its first call minus its fastest)."""
    first = {}
    for name, fn in fns.items():
        start = time.perf_counter()
        jax.block_until_ready(fn())
        first[name] = time.perf_counter() - start
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - start)
    best = {name: min(t) for name, t in times.items()}
    return best, {name: first[name] - best[name] for name in fns}


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def plain_passes(apply, x, k: int):
    """One batched forward + k backward passes: the weight gradients of sum_n p_c(x_n)."""

    @jax.jit
    def run(p):
        out, vjp = jax.vjp(lambda q: jax.nn.softmax(apply(q, x), axis=-1), p)
        return jax.vmap(vjp)(jnp.broadcast_to(jnp.eye(k)[:, None, :], (k, *out.shape)))

    return run


def cotangent_pass(loss, params, leaf: tuple):
    """One forward pass and the cotangents of every activation, without weight gradients: the
    gradient of ``loss`` w.r.t. one small leaf at the network's input end (``leaf``, a key path)
    needs every layer's cotangent, and XLA drops the weight-gradient products nobody reads. The
    engine needs exactly these passes plus its norms, so this is its floor."""

    def replaced(tree: dict, path: tuple, value):
        head, *rest = path
        return {**tree, head: replaced(tree[head], tuple(rest), value) if rest else value}

    grad = jax.jit(jax.grad(lambda small: loss(replaced(params, leaf, small))))
    return grad, functools.reduce(operator.getitem, leaf, params)


def sq_norms(apply, params, x, method, **kw):
    return gnuq.squared_grad_norms(apply, params, x, likelihood="categorical", method=method, **kw)


# ---------------------------------------------------------------------------------------------


def big_mlp(repeats: int) -> dict:
    x = problems.get("rings4").grid(100)  # 10 000 inputs
    m = models.mlp(jax.random.key(0), 2, (1028, 1028), 4, "tanh")
    plain = plain_passes(m.apply, x, 4)
    fns = {
        "engine": lambda: sq_norms(m.apply, m.params, x, "engine"),
        "dense": lambda: sq_norms(m.apply, m.params, x, "dense"),
        "plain": lambda: plain(m.params),
    }
    torch_fn, torch_sq = _backpack(m.params, np.asarray(x))
    if torch_fn is not None:
        fns["backpack"] = torch_fn
    t, compile_s = fastest(fns, repeats)
    out = {"seconds": t, "compile_seconds": compile_s}
    out["ratio_engine_to_plain"] = t["engine"] / t["plain"]
    out["ratio_dense_to_plain"] = t["dense"] / t["plain"]
    if torch_fn is not None:
        out["speedup_engine_vs_backpack"] = t["backpack"] / t["engine"]
        out["rel_err_backpack"] = rel_err(sq_norms(m.apply, m.params, x, "engine"), torch_sq())
    out["rel_err_dense"] = rel_err(fns["engine"](), fns["dense"]())
    return out


def _backpack(params, x: np.ndarray):
    """BackPACK's per-example squared gradient norms on the same weights, or (None, None)."""
    try:
        import torch
        from backpack import backpack, extend
        from backpack.extensions import BatchL2Grad
    except ImportError:
        return None, None
    torch.set_num_threads(2)
    layers = [params[f"Dense_{i}"] for i in range(3)]
    mods = []
    for i, layer in enumerate(layers):
        lin = torch.nn.Linear(*layer["kernel"].shape)
        lin.weight.data = torch.tensor(np.asarray(layer["kernel"]).T.copy())
        lin.bias.data = torch.tensor(np.asarray(layer["bias"]))
        mods += [lin] + ([torch.nn.Tanh()] if i < 2 else [])
    net = extend(torch.nn.Sequential(*mods))
    xt = torch.tensor(x)

    def run():
        sq = []
        for c in range(4):
            net.zero_grad()
            p = torch.softmax(net(xt), dim=-1)[:, c].sum()
            with backpack(BatchL2Grad()):
                p.backward()
            sq.append(sum(q.batch_l2 for q in net.parameters()))
        return torch.stack(sq, 1).numpy()

    return run, run


# ---------------------------------------------------------------------------------------------


class _MLP(nn.Module):
    norm: bool = False

    @nn.compact
    def __call__(self, x):
        for width in (48, 48):
            x = nn.Dense(width)(x)
            x = nn.LayerNorm()(x) if self.norm else x
            x = jnp.tanh(x)
        return nn.Dense(10)(x)


class _ConvNet(nn.Module):
    @nn.compact
    def __call__(self, x):  # [N, 8, 8, 1]
        x = nn.relu(nn.Conv(8, (3, 3))(x))
        x = nn.relu(nn.Conv(8, (3, 3), strides=2)(x))  # [N, 4, 4, 8]
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(10)(nn.relu(nn.Dense(48)(x)))


def small_models(repeats: int) -> dict:
    key = jax.random.key(0)
    x = jax.random.normal(key, (2000, 20))
    images = jax.random.normal(key, (2000, 8, 8, 1))
    mlp = _MLP()
    dense_params = mlp.init(key, x)["params"]
    flat = {f"{n}_{p}": dense_params[n][p] for n in dense_params for p in ("kernel", "bias")}

    def jnp_mlp(p, xx):
        h = jnp.tanh(xx @ p["Dense_0_kernel"] + p["Dense_0_bias"])
        h = jnp.tanh(h @ p["Dense_1_kernel"] + p["Dense_1_bias"])
        return h @ p["Dense_2_kernel"] + p["Dense_2_bias"]

    ln = _MLP(norm=True)
    conv = _ConvNet()
    cases = {
        "flax Dense MLP": (lambda p, xx: mlp.apply({"params": p}, xx), dense_params, x),
        "plain-jnp MLP": (jnp_mlp, flat, x),
        "LayerNorm MLP": (lambda p, xx: ln.apply({"params": p}, xx), ln.init(key, x)["params"], x),
        "Conv net 8x8": (
            lambda p, xx: conv.apply({"params": p}, xx),
            conv.init(key, images)["params"],
            images,
        ),
    }
    out = {}
    for name, (apply, params, inputs) in cases.items():
        plain = plain_passes(apply, inputs, 10)
        t, compile_s = fastest(
            {
                "engine": lambda a=apply, p=params, i=inputs: sq_norms(a, p, i, "engine"),
                "plain": lambda pl=plain, p=params: pl(p),
                "vmap": lambda a=apply, p=params, i=inputs: sq_norms(a, p, i, "vmap"),
            },
            repeats,
        )
        out[name] = {
            "n_params": models.count_params(params),
            "seconds": t,
            "compile_seconds": compile_s,
            "ratio_engine_to_plain": t["engine"] / t["plain"],
            "speedup_engine_vs_vmap": t["vmap"] / t["engine"],
            "rel_err_vmap": rel_err(
                sq_norms(apply, params, inputs, "engine"), sq_norms(apply, params, inputs, "vmap")
            ),
        }
    return out


# ---------------------------------------------------------------------------------------------


def _minilm_params(key, cfg: bert.BertConfig):
    """Random weights with MiniLM-L6's shapes (the real ones come from a wheel)."""
    h, f, n = cfg.hidden, cfg.intermediate, cfg.layers
    shapes = {
        "embeddings": {
            "word": (cfg.vocab_size, h), "position": (cfg.max_positions, h),
            "token_type": (cfg.type_vocab_size, h), "ln_scale": (h,), "ln_bias": (h,),
        },
        "layers": {
            **{f"{p}_kernel": (n, h, h) for p in "qkvo"},
            **{f"{p}_bias": (n, h) for p in "qkvo"},
            "ffn_in_kernel": (n, h, f), "ffn_in_bias": (n, f),
            "ffn_out_kernel": (n, f, h), "ffn_out_bias": (n, h),
            **{f"{p}_ln_{q}": (n, h) for p in ("attn", "ffn") for q in ("scale", "bias")},
        },
    }  # fmt: skip
    leaves, treedef = jax.tree.flatten(shapes, is_leaf=lambda s: isinstance(s, tuple))
    keys = jax.random.split(key, len(leaves))
    encoder = jax.tree.unflatten(
        treedef, [0.05 * jax.random.normal(k, s) for k, s in zip(keys, leaves, strict=True)]
    )
    return {"encoder": encoder, "head": bert.init_head(key, h)}


def text_encoder(repeats: int, docs: int) -> dict:
    cfg = bert.BertConfig(
        vocab_size=30522, hidden=384, layers=6, heads=12, intermediate=1536, max_positions=512
    )
    params = _minilm_params(jax.random.key(0), cfg)
    apply = bert.classifier(cfg)
    out = {"n_params": models.count_params(params)}
    for length in (128, 256):
        ids = jax.random.randint(jax.random.key(length), (docs, length), 1, cfg.vocab_size)

        def run(method, chunk, ids=ids):
            return gnuq.squared_grad_norms(
                apply, params, ids, likelihood="bernoulli", method=method, chunk_size=chunk
            )

        def loss(p, ids=ids):
            return jnp.sum(jax.nn.sigmoid(apply(p, ids)))

        fwd_bwd = jax.jit(jax.grad(loss))
        floor, small = cotangent_pass(loss, params, ("encoder", "embeddings", "ln_scale"))
        t, compile_s = fastest(
            {
                "engine": lambda: run("engine", None),
                "vmap": lambda: run("vmap", 4),
                "forward+backward": lambda g=fwd_bwd: g(params),
                "forward+cotangents": lambda f=floor, s=small: f(s),
            },
            repeats,
        )
        out[f"{length} tokens"] = {
            "seconds_per_doc": {k: v / docs for k, v in t.items()},
            "compile_seconds": compile_s,
            "speedup_engine_vs_vmap": t["vmap"] / t["engine"],
            "ratio_engine_to_forward_backward": t["engine"] / t["forward+backward"],
            "ratio_engine_to_floor": t["engine"] / t["forward+cotangents"],
            "rel_err_vmap": rel_err(run("engine", None), run("vmap", 4)),
        }
    return out


# ---------------------------------------------------------------------------------------------


SMOLLM2_135M = decoder.DecoderConfig(
    arch="llama", vocab_size=49152, hidden=576, layers=30, heads=9, kv_heads=3, head_dim=64,
    intermediate=1536, eps=1e-5, rope_theta=100000.0,
)  # fmt: skip


def llm_answer(repeats: int, length: int = 64, answer: int = 20) -> dict:
    cfg = SMOLLM2_135M
    params = decoder.init(jax.random.key(0), cfg)
    lm = decoder.language_model(cfg)
    tokens = jax.random.randint(jax.random.key(1), (1, length), 0, cfg.vocab_size)
    mask = jnp.zeros((1, length), jnp.int32).at[:, length - answer :].set(1)

    def run(method):
        return gnuq.sequence_uncertainty(lm, params, tokens, mask, method=method).epistemic

    def mean_answer_prob(p):  # the scalar whose gradient the engine's norm is taken of
        probs = jnp.take_along_axis(
            jax.nn.softmax(lm(p, tokens)[:, :-1]), tokens[:, 1:, None], axis=-1
        )[..., 0]
        return jnp.sum(probs * mask[:, 1:]) / jnp.sum(mask[:, 1:])

    forward = jax.jit(lambda p: lm(p, tokens))
    fwd_bwd = jax.jit(jax.grad(mean_answer_prob))
    floor, small = cotangent_pass(mean_answer_prob, params, ("layers", "attn_norm"))
    t, compile_s = fastest(
        {
            "engine": lambda: run("engine"),
            "vmap": lambda: run("vmap"),
            "forward": lambda: forward(params),
            "forward+backward": lambda: fwd_bwd(params),
            "forward+cotangents": lambda: floor(small),
        },
        repeats,
    )
    return {
        "n_params": decoder.num_params(params),
        "tokens": length,
        "answer_tokens": answer,
        "seconds": t,
        "compile_seconds": compile_s,
        "speedup_engine_vs_vmap": t["vmap"] / t["engine"],
        "ratio_engine_to_forward_backward": t["engine"] / t["forward+backward"],
        "ratio_engine_to_floor": t["engine"] / t["forward+cotangents"],
        "ratio_engine_to_forward": t["engine"] / t["forward"],
        "rel_err_vmap": rel_err(run("engine"), run("vmap")),
    }


# ---------------------------------------------------------------------------------------------


def overhead(calls: int = 300) -> dict:
    m = models.mlp(jax.random.key(0), 3, (30, 25), 4, "tanh")
    x = jax.random.normal(jax.random.key(1), (16, 3))
    lik = likelihoods.get("categorical")

    def call():
        return gnuq.uncertainty(m.apply, m.params, x, likelihood="categorical")

    program = estimators._program(m.apply, m.params, x, lik, "auto", None)

    def bare():
        epi, pred = program(m.params, x)
        return epi, pred * (1 - pred), pred

    per_call = {}
    for name, fn in (("uncertainty", call), ("program", bare)):
        jax.block_until_ready(fn())
        best = np.inf
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(calls):
                out = fn()
            jax.block_until_ready(out)
            best = min(best, (time.perf_counter() - start) / calls)
        per_call[name] = best
    return {
        "n_params": models.count_params(m.params),
        "seconds_per_call": per_call,
        "overhead_ms": 1e3 * (per_call["uncertainty"] - per_call["program"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--docs", type=int, default=4)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("figures/engine"))
    args = parser.parse_args()
    parts = {
        "mlp_1028": lambda: big_mlp(args.repeats),
        "small_models": lambda: small_models(args.repeats),
        "text_encoder": lambda: text_encoder(args.repeats, args.docs),
        "llm_answer": lambda: llm_answer(args.repeats),
        "overhead": overhead,
    }
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    results = {
        "device": jax.devices()[0].device_kind,
        "machine": platform.processor() or platform.machine(),
        "git_commit": commit.stdout.strip(),
    }
    for name, part in parts.items():
        if args.only and name not in args.only:
            continue
        start = time.perf_counter()
        results[name] = part()
        print(f"{name} ({time.perf_counter() - start:.0f} s):", json.dumps(results[name], indent=1))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "engine.json"
    if args.only and path.exists():  # a partial rerun replaces its parts, keeps the others
        old = json.loads(path.read_text())
        for name in parts:
            if name not in results and name in old:
                results[name] = old[name]
        results["partial_reruns"] = [
            *old.get("partial_reruns", []),
            (commit.stdout.strip(), args.only),
        ]
    path.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
