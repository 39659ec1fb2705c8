"""Atomic, content-keyed caching of arrays in ``.npz`` files under ``results/``.

A cache entry's name is a hash of exactly what determines it (``fingerprint``): the settings,
the input data, the PRNG key and the version of the code that computes it (``code_version``),
never a float another machine computes in other last digits, nor anything holding a memory
address. Files are written to a temporary name and renamed into place (``gnuq.checkpoint``), so
an interrupted run leaves either the old state or the complete new file; a file that fails to
load, or lacks an array it should hold, is reported and recomputed.
"""

import ast
import dataclasses
import hashlib
import importlib
import pathlib
import types
import warnings
from collections.abc import Callable
from importlib import metadata
from typing import Any

import jax
import numpy as np

from gnuq import checkpoint
from gnuq.baselines import mcmc

LIBRARIES = ("jax", "jaxlib", "flax", "optax", "blackjax", "numpy", "scipy")
_KEYS = "__keys__"  # the names a complete entry holds


def fingerprint(*parts: Any) -> str:
    """A short, stable sha256 of nested dicts, sequences, dataclasses, arrays and scalars."""
    digest = hashlib.sha256()
    _feed(digest, parts)
    return digest.hexdigest()[:20]


def code_version(*code: str | types.ModuleType, libraries: tuple[str, ...] = LIBRARIES) -> str:
    """A hash of ``code`` as the interpreter reads it (comments, docstrings and formatting do not
    count, so editing them recomputes nothing) and of the versions of ``libraries`` (an upgrade
    of these can change numbers too). ``code``: modules (objects or dotted names; a package
    counts with every module under it), or ``"module:name"``, one definition of a module that
    serves many computations (``"gnuq.estimators:sequence_uncertainty"``): its code and,
    transitively, that of every definition of this project it names (``definition_code``), so
    an edit elsewhere in that module recomputes nothing. Rendering code belongs in modules
    outside a unit's list, so a changed caption never recomputes a unit."""
    digest = hashlib.sha256()
    for package in libraries:
        digest.update(f"{package}={metadata.version(package)};".encode())
    for item in code:
        if isinstance(item, str) and ":" in item:
            digest.update(definition_code(*item.split(":")).encode())
            continue
        module = importlib.import_module(item) if isinstance(item, str) else item
        path = pathlib.Path(module.__file__)
        files = sorted(path.parent.rglob("*.py")) if path.name == "__init__.py" else [path]
        for f in files:  # a package: every module in it
            digest.update(f.name.encode() + normalised_source(f).encode())
    return digest.hexdigest()[:20]


def normalised_source(path: str | pathlib.Path) -> str:
    """The code of a Python file without its comments, docstrings and layout."""
    return ast.unparse(_normalised_tree(pathlib.Path(path)))


def _normalised_tree(path: pathlib.Path) -> ast.Module:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return tree


PROJECT = ("gnuq", "experiments")  # the packages whose definitions ``definition_code`` follows


def definition_code(module: str, name: str) -> str:
    """The normalised code of the top-level definition ``name`` of ``module`` (a function, a
    class or an assignment) and, transitively, of every top-level definition of ``PROJECT`` it
    names: in its own module, through an imported project module (``likelihoods.get``) or
    imported by name (``from gnuq.chunking import chunked_map``). Names are followed as
    written, so a local variable that shares a definition's name only adds that definition."""
    done: dict[tuple[str, str], str] = {}
    todo = [(module, name)]
    while todo:
        mod, nm = todo.pop()
        if (mod, nm) in done:
            continue
        definitions, imports = _top_level(mod)
        if nm not in definitions and nm in imports:  # a re-export: follow it to its definition
            todo.append(imports[nm])
            continue
        if nm not in definitions:
            raise ValueError(f"{mod} has no top-level definition {nm!r}")
        node = definitions[nm]
        done[(mod, nm)] = ast.unparse(node)
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and sub.id in definitions:
                todo.append((mod, sub.id))
            elif isinstance(sub, ast.Name) and sub.id in imports:
                todo.append(imports[sub.id])
            elif isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name):
                target = _project_module(mod, sub.value.id)
                if target is not None and sub.attr in _top_level(target)[0]:
                    todo.append((target, sub.attr))
    return "\n".join(f"# {m}:{n}\n{code}" for (m, n), code in sorted(done.items()))


def _top_level(module: str) -> tuple[dict[str, ast.AST], dict[str, tuple[str, str]]]:
    """``module``'s top-level definitions ``{name: node}`` and the definitions it imports by
    name from ``PROJECT`` modules ``{alias: (module, name)}``."""
    path = pathlib.Path(importlib.import_module(module).__file__)
    definitions, imports = {}, {}
    for node in _normalised_tree(path).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            definitions[node.name] = node
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for leaf in ast.walk(target):
                    if isinstance(leaf, ast.Name):
                        definitions[leaf.id] = node
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] in PROJECT:
                source = importlib.import_module(node.module)
                for alias in node.names:  # definitions; modules are followed by attribute
                    if not isinstance(getattr(source, alias.name, None), types.ModuleType):
                        imports[alias.asname or alias.name] = (node.module, alias.name)
    return definitions, imports


def _project_module(module: str, alias: str) -> str | None:
    """The ``PROJECT`` module that ``alias`` names in ``module``, if it names one."""
    value = vars(importlib.import_module(module)).get(alias)
    if isinstance(value, types.ModuleType) and value.__name__.split(".")[0] in PROJECT:
        return value.__name__
    return None


def _feed(digest, obj: Any) -> None:
    """Feed ``obj`` unambiguously: every item is tagged with its type and length, so that, for
    instance, (1, 23) and (12, 3) or {"a": "b"} and {"a:b": ""} never hash alike."""

    def put(tag: str, payload: bytes) -> None:
        digest.update(f"{tag}:{len(payload)}:".encode() + payload)

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        put("dataclass", type(obj).__name__.encode())
        obj = dataclasses.asdict(obj)
    if isinstance(obj, dict):
        put("dict", str(len(obj)).encode())
        for key in sorted(obj, key=repr):
            put("key", repr(key).encode())
            _feed(digest, obj[key])
    elif isinstance(obj, list | tuple):
        put("seq", str(len(obj)).encode())
        for item in obj:
            _feed(digest, item)
    elif isinstance(obj, np.ndarray | jax.Array):
        if isinstance(obj, jax.Array) and jax.dtypes.issubdtype(obj.dtype, jax.dtypes.prng_key):
            obj = jax.random.key_data(obj)
        arr = np.ascontiguousarray(np.asarray(obj))
        put("array", f"{arr.dtype}{arr.shape}".encode() + arr.tobytes())
    elif callable(obj) or " at 0x" in repr(obj):
        raise TypeError(
            f"{obj!r} cannot be part of a cache key: its repr names a memory address, so the "
            "key would differ in every process; key on what defines it (a name, settings)"
        )
    else:
        put(type(obj).__name__, repr(obj).encode())


def load_or_compute(
    path: str | pathlib.Path,
    compute: Callable[[], dict[str, np.ndarray]],
    cacheable: Callable[[dict[str, np.ndarray]], bool] = lambda arrays: True,
) -> dict[str, np.ndarray]:
    """Return the arrays stored at ``path``, or ``compute()`` them and store them atomically
    (unless ``cacheable`` refuses them)."""
    arrays = load(path)
    if arrays is None:
        arrays = {k: np.asarray(v) for k, v in compute().items()}
        if cacheable(arrays):
            checkpoint.save(path, arrays | {_KEYS: np.asarray(sorted(arrays))})
    return arrays


def load(path: str | pathlib.Path) -> dict[str, np.ndarray] | None:
    """The arrays of a complete entry at ``path``; None when it is absent, unreadable or lacks
    an array it was written with (both with a warning that names the file)."""
    arrays = checkpoint.load(path)
    if arrays is None:
        return None
    names = arrays.pop(_KEYS, None)
    missing = set() if names is None else set(names.tolist()) - set(arrays)
    if names is None or missing:
        warnings.warn(
            f"cache file {path} is incomplete (missing {sorted(missing) or 'its index'}); "
            "recomputing",
            stacklevel=3,
        )
        return None
    return arrays


def chains(path: pathlib.Path, template: Any, compute: Callable[[], mcmc.Chains]) -> mcmc.Chains:
    """Posterior chains cached at ``path`` (``template``: a params pytree of the model)."""

    def as_arrays() -> dict[str, np.ndarray]:
        c = compute()
        fields = {f: getattr(c, f) for f in mcmc.Chains._fields if f != "positions"}
        return checkpoint.tree_to_arrays(c.positions, "positions") | fields

    arrays = load_or_compute(path, as_arrays)
    try:
        positions = checkpoint.arrays_to_tree(arrays, template, "positions")
    except KeyError as err:  # written for a model of another structure
        warnings.warn(
            f"cache file {path} does not fit the model ({err}); recomputing", stacklevel=2
        )
        path.unlink()
        return chains(path, template, compute)
    rest = {f: arrays[f] for f in mcmc.Chains._fields if f != "positions"}
    return mcmc.Chains(positions=positions, **rest)


SAMPLER_SETTINGS_AFTER_DRAWS = (  # McmcConfig fields that do not change the draws
    "progress",
    "diagnostic_inputs",
    "sample_chunk",
    "moment_blocks",
    "max_rhat",
    "min_ess",
    "max_divergences",
    "gate",
    "chain_method",  # every chain method draws the same chains
)


def reference(
    cache_dir: pathlib.Path,
    identity: Any,
    key: jax.Array,
    apply_fn: Callable,
    likelihood,
    x_train,
    y_train,
    map_params: Any,
    x_eval,
    prior_precision: float,
    config: mcmc.McmcConfig,
    starts: Any = None,
) -> mcmc.Reference:
    """``gnuq.mcmc.reference`` with its draws cached in ``cache_dir/mcmc-<hash>.npz``; with
    ``starts`` (leaves ``[chains, ...]``) chain i starts from ``starts[i]`` instead of near
    ``map_params`` (``identity`` must then say how the starts were made).

    The hash names what determines the draws as settings, never as arrays a machine computed
    (another CPU's MAP differs in its last digits, and the key must not): ``identity`` describes
    the model, the training data and the MAP (the problem, its knobs and size, the architecture,
    the MAP settings, the seed), beside the likelihood, the prior, the sampler settings, the
    PRNG key and the code of the sampler, its log density, the models and the problems.
    """
    settings = {
        k: v for k, v in dataclasses.asdict(config).items() if k not in SAMPLER_SETTINGS_AFTER_DRAWS
    }
    name = fingerprint(
        identity,
        starts is not None,
        (likelihood.name, likelihood.noise_var),
        prior_precision,
        settings,
        key,
        # what draws the chains (the sampler, the log density it follows, the model and the
        # data), not what summarises them nor how the MAP they start near was found: a start
        # changes which draws a converged chain makes, not the posterior they sample
        code_version("gnuq.baselines.mcmc:posterior_chains", "gnuq.models", "gnuq.problems"),
    )
    draws = chains(
        pathlib.Path(cache_dir) / f"mcmc-{name}.npz",
        map_params,
        lambda: mcmc.posterior_chains(
            key, apply_fn, likelihood, x_train, y_train, map_params, prior_precision, config, starts
        ),
    )
    return mcmc.summarise(apply_fn, likelihood, draws, x_eval, config)


def robust_reference(
    cache_dir: pathlib.Path,
    identity: Any,
    key: jax.Array,
    init: Callable[[jax.Array], Any],
    fit: Callable[[Any], Any],
    apply_fn: Callable,
    likelihood,
    x_train,
    y_train,
    x_eval,
    prior_precision: float,
    config: mcmc.McmcConfig,
) -> mcmc.Reference:
    """The reference not tied to one MAP: ``config.num_chains`` MAPs, ``fit(init(k))`` from
    independent initialisations (keys split from ``key``), and chain i started at MAP i, so the
    chains' R-hat is a between-start diagnostic; cached as ``reference`` caches its draws
    (``identity`` describes the model, data and MAP settings, as there)."""
    k_starts, k_mcmc = jax.random.split(key)
    maps = [fit(init(k)) for k in jax.random.split(k_starts, config.num_chains)]
    starts = jax.tree.map(lambda *leaves: np.stack(leaves), *maps)
    return reference(
        cache_dir, (identity, "independent MAPs"), k_mcmc, apply_fn, likelihood, x_train, y_train,
        maps[0], x_eval, prior_precision, config, starts,
    )  # fmt: skip
