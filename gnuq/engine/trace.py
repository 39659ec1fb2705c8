"""The engine's analysis: trace a per-example function to a jaxpr and find every linear use of a
parameter leaf (``analyse``); the same traversal evaluates the function with a zero tap on each
use's output (``evaluate``), so one backward pass gives every use's delta."""

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend.core import ClosedJaxpr, Literal

from gnuq.engine import squeeze
from gnuq.types import Params

# unary, input-independent linear maps: a view of a parameter stays a view through them
_VIEWS = {
    "transpose", "reshape", "convert_element_type", "squeeze", "expand_dims", "copy", "copy_p",
    "rev", "reduce_precision", "broadcast_in_dim", "slice", "reduce_sum", "neg",
}  # fmt: skip
# of those, the ones that keep every entry exactly once (a bijection: the squared norm of a
# gradient is the same on either side); broadcast_in_dim qualifies when it adds only size-1 axes
BIJECTIVE = {
    "transpose", "reshape", "convert_element_type", "squeeze", "expand_dims", "copy", "copy_p",
    "rev", "reduce_precision",
}  # fmt: skip
# equations linear in the operand positions listed (None: every position)
_LINEAR_IN = {
    "dot_general": None, "conv_general_dilated": None, "mul": None, "add": None, "sub": None,
    "add_any": None, "concatenate": None, "gather": (0,), "div": (0,), "pad": (0,),
    "dynamic_slice": (0,),
}  # fmt: skip
_INLINE = {
    "jit", "pjit", "closed_call", "core_call", "remat2", "checkpoint", "custom_jvp_call",
    "custom_vjp_call", "custom_vjp_call_jaxpr",
}  # fmt: skip
ELEMENTWISE = ("add", "sub", "add_any", "mul")


class View(NamedTuple):
    """A jaxpr value that is ``chain(root)``: a linear, input-independent view of a root."""

    root: int
    chain: tuple  # ((primitive, params), ...) applied to the root, in order
    bijective: bool


class Use(NamedTuple):
    """One equation linear in a view of a root; its output gets tap ``tap``."""

    tap: int
    root: int
    prim: Any
    params: dict
    pos: int  # which operand is the view
    operands: tuple  # per operand: ("act", k) recorded activation k, ("lit", value), ("view",)
    avals: tuple  # ShapeDtypeStruct of every operand
    chain: tuple
    bijective: bool
    root_aval: Any
    out_aval: Any


@dataclass
class Plan:
    """What the analysis found: roots (leaves and their per-iteration scan slices), uses, and
    which leaves the engine serves."""

    roots: dict = field(default_factory=dict)  # id -> (parent id | None, stack, aval)
    uses: dict = field(default_factory=dict)  # tap id -> Use
    bad: set = field(default_factory=set)  # root ids with a use the engine cannot serve
    scanned: dict = field(default_factory=dict)  # root id -> times passed as scan xs
    scan_taps: dict = field(default_factory=dict)  # scan number -> (first tap, end tap)
    stacks: dict = field(default_factory=dict)  # tap id -> enclosing scan lengths
    scan_children: dict = field(default_factory=dict)  # (scan number, operand) -> root id

    def children(self, root: int) -> list[int]:
        return [r for r, (parent, _, _) in self.roots.items() if parent == root]

    def served(self, root: int) -> bool:
        """Whether every use of ``root`` (directly or through scan slices) is served."""
        if root in self.bad:
            return False
        direct = any(u.root == root for u in self.uses.values())
        n_scan = self.scanned.get(root, 0)
        if n_scan > 1 or (n_scan and direct):
            return False
        return all(self.served(c) for c in self.children(root))

    def descendants(self, root: int) -> list[int]:
        return [root] + [d for c in self.children(root) for d in self.descendants(c)]


class Ctx:
    """Traversal state shared by the analysis (``analysing``) and the tapped evaluation."""

    def __init__(self, plan: Plan, taps: dict | None, analysing: bool):
        self.plan, self.taps, self.analysing = plan, taps, analysing
        self.n_taps = self.n_scans = 0
        self.next_root = max(plan.roots) + 1 if plan.roots else 0
        self.acts: dict = {}  # tap id -> list of recorded operand values
        self.stack: tuple = ()  # lengths of the enclosing scans

    def bad(self, info: View | None) -> None:
        if info is not None and self.analysing:
            self.plan.bad.add(info.root)


def _aval(x) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(np.shape(x), jnp.result_type(x))


def evaluate(jaxpr, consts, args, infos, ctx: Ctx) -> tuple[list, list]:
    """Evaluate ``jaxpr`` on ``args``; ``infos[i]`` is a View when arg i is one.

    Adds ``ctx.taps[id]`` to the output of every linear use and records its activations in
    ``ctx.acts[id]``; the analysis records the uses in ``ctx.plan``. Returns the outputs and
    their View infos.
    """
    env: dict = {}
    info: dict = {}

    def read(v):
        return v.val if isinstance(v, Literal) else env[v]

    for v, val in zip(jaxpr.constvars, consts, strict=True):
        env[v] = val
    for v, val, i in zip(jaxpr.invars, args, infos, strict=True):
        env[v], info[v] = val, i

    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        ins = [None if isinstance(v, Literal) else info.get(v) for v in eqn.invars]
        views = [k for k, i in enumerate(ins) if i is not None]
        name = eqn.primitive.name
        outinfo = [None] * len(eqn.outvars)
        if not views:
            outs = squeeze.bind(eqn, invals)
        elif name in _INLINE:  # a call: evaluate its body here, so that its uses get taps
            sub = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
            inner, consts_ = (sub.jaxpr, sub.consts) if isinstance(sub, ClosedJaxpr) else (sub, [])
            outs, outinfo = evaluate(inner, consts_, invals, ins, ctx)
        elif name == "scan":
            outs = _scan(eqn, invals, ins, ctx)
        elif name in _VIEWS and len(eqn.invars) == 1:
            outs = squeeze.bind(eqn, invals)
            i = ins[0]
            same_size = math.prod(np.shape(outs[0])) == math.prod(np.shape(invals[0]))
            bij = i.bijective and (name in BIJECTIVE or (name == "broadcast_in_dim" and same_size))
            outinfo = [View(i.root, (*i.chain, (eqn.primitive, dict(eqn.params))), bij)]
        elif name in _LINEAR_IN and len(views) == 1 and _linear_at(name, views[0]):
            outs = _linear_use(eqn, invals, ins, views[0], ctx)
        else:  # a use the engine cannot serve: those leaves go to vmap(jacrev)
            for i in ins:
                ctx.bad(i)
            outs = squeeze.bind(eqn, invals)
        for v, val, i in zip(eqn.outvars, outs, outinfo, strict=True):
            env[v], info[v] = val, i
    outvals = [read(v) for v in jaxpr.outvars]
    return outvals, [None if isinstance(v, Literal) else info.get(v) for v in jaxpr.outvars]


def _linear_at(name: str, pos: int) -> bool:
    allowed = _LINEAR_IN[name]
    return allowed is None or pos in allowed


def _operand_kinds(eqn, pos: int) -> tuple:
    """Per operand: ("view",), ("lit", value), ("zero",) where its value does not enter the
    transpose (sums and concatenations), or ("act", k): the k-th recorded activation."""
    kinds, k = [], 0
    for j, v in enumerate(eqn.invars):
        if j == pos:
            kinds.append(("view",))
        elif isinstance(v, Literal):
            kinds.append(("lit", v.val))
        elif eqn.primitive.name in ("add", "sub", "add_any", "concatenate", "pad"):
            kinds.append(("zero",))
        else:
            kinds.append(("act", k))
            k += 1
    return tuple(kinds)


def _linear_use(eqn, invals, ins, pos: int, ctx: Ctx) -> list:
    """A tapped linear use: record the activations, add the tap to the output."""
    (out,) = squeeze.bind(eqn, invals)
    tap = ctx.n_taps
    ctx.n_taps += 1
    kinds = _operand_kinds(eqn, pos)
    if ctx.analysing:
        view = ins[pos]
        ctx.plan.uses[tap] = Use(
            tap, view.root, eqn.primitive, dict(eqn.params), pos, kinds,
            tuple(_aval(a) for a in invals), view.chain, view.bijective,
            ctx.plan.roots[view.root][2], _aval(out),
        )  # fmt: skip
        ctx.plan.stacks[tap] = ctx.stack
    if ctx.taps is not None and tap in ctx.taps:
        ctx.acts[tap] = [a for a, kind in zip(invals, kinds, strict=True) if kind[0] == "act"]
        out = out + ctx.taps[tap]
    return [out]


def _scan(eqn, invals, ins, ctx: Ctx) -> list:
    """``lax.scan`` over views of parameters: each iteration's slice is a root of its own
    (disjoint entries of the leaf); taps go in, and activations come out, as scanned arrays."""
    p = eqn.params
    nc, nk = p["num_consts"], p["num_carry"]
    body: ClosedJaxpr = p["jaxpr"]
    scan_no = ctx.n_scans
    ctx.n_scans += 1
    body_infos = []
    for k, i in enumerate(ins):
        if i is not None and k >= nc + nk and i.bijective:  # sliced along its leading axis
            if ctx.analysing:
                child = ctx.next_root
                ctx.next_root += 1
                ctx.plan.scanned[i.root] = ctx.plan.scanned.get(i.root, 0) + 1
                sliced = _aval(invals[k])
                aval = jax.ShapeDtypeStruct(sliced.shape[1:], sliced.dtype)
                ctx.plan.roots[child] = (i.root, (*ctx.stack, p["length"]), aval)
                ctx.plan.scan_children[(scan_no, k)] = child
            body_infos.append(View(ctx.plan.scan_children[(scan_no, k)], (), True))
        else:  # a constant or a carry holds the same entries in every iteration
            ctx.bad(i)
            body_infos.append(None)
    consts, init, xs = invals[:nc], invals[nc : nc + nk], invals[nc + nk :]
    first = ctx.n_taps
    if ctx.taps is None:
        inner_taps = {}
    else:
        end = ctx.plan.scan_taps[scan_no][1]
        inner_taps = {t: ctx.taps[t] for t in range(first, end) if t in ctx.taps}
    saved_scans, saved_stack = ctx.n_scans, ctx.stack
    after = {}

    def step(carry, sliced):
        x_slice, tap_slice = sliced
        ctx.n_taps, ctx.n_scans = first, saved_scans  # a retrace must number things the same
        ctx.stack = (*saved_stack, p["length"])
        outer_taps, outer_acts = ctx.taps, ctx.acts
        ctx.taps = None if outer_taps is None else tap_slice
        ctx.acts = {}
        outs, _ = evaluate(body.jaxpr, body.consts, [*consts, *carry, *x_slice], body_infos, ctx)
        acts = ctx.acts
        ctx.taps, ctx.acts = outer_taps, outer_acts
        after["taps"], after["scans"] = ctx.n_taps, ctx.n_scans
        return outs[:nk], (outs[nk:], acts)

    carry, (ys, acts) = lax.scan(
        step, list(init), (list(xs), inner_taps), length=p["length"], reverse=p["reverse"],
        unroll=p["unroll"],
    )  # fmt: skip
    ctx.n_taps, ctx.n_scans, ctx.stack = after["taps"], after["scans"], saved_stack
    if ctx.analysing:
        ctx.plan.scan_taps[scan_no] = (first, ctx.n_taps)
    ctx.acts.update(acts)
    return [*carry, *ys]


class Analysis(NamedTuple):
    plan: Plan
    jaxpr: ClosedJaxpr
    served: tuple[bool, ...]  # per parameter leaf: served by the engine (else vmap(jacrev))


def analyse(f: Callable, params: Params, example) -> Analysis:
    """Trace ``f(params, example) -> [K]`` for ONE example and find every leaf's linear uses.

    ``example`` may hold ``jax.ShapeDtypeStruct``s. No FLOPs are spent.
    """
    leaves, treedef = jax.tree.flatten(params)
    ex_leaves, ex_def = jax.tree.flatten(example)

    def flat_f(leaves_, ex_leaves_):
        return f(jax.tree.unflatten(treedef, leaves_), jax.tree.unflatten(ex_def, ex_leaves_))

    leaf_avals = [_aval(leaf) for leaf in leaves]
    closed = jax.make_jaxpr(flat_f)(leaf_avals, [_aval(e) for e in ex_leaves])
    plan = Plan()
    for i, a in enumerate(leaf_avals):
        plan.roots[i] = (None, (), a)
    ctx = Ctx(plan, None, analysing=True)
    infos = [View(i, (), True) for i in range(len(leaves))] + [None] * len(ex_leaves)

    def run(*args):
        outs, out_infos = evaluate(closed.jaxpr, closed.consts, list(args), infos, ctx)
        for i in out_infos:  # a parameter returned as (part of) the output
            ctx.bad(i)
        return outs

    jax.eval_shape(run, *leaf_avals, *[_aval(e) for e in ex_leaves])
    served = tuple(plan.served(i) for i in range(len(leaves)))
    return Analysis(plan, closed, served)
