"""Everything about a model's ``flax.linen.Dense`` layers that the dense identity needs.

``tapped_apply`` runs any ``apply(params, x)`` under a method interceptor that records every Dense
layer's input and adds a zero "tap" to its output: the gradient w.r.t. a tap is the gradient
w.r.t. that layer's pre-activation. ``layer_backward`` turns that into every layer's inputs and
pre-activation gradients from one batched backward pass per output; the estimator's dense
identity, KFAC and the Laplace dense path all build on it, and ``resolve_method`` is the one rule
for when they apply. The remaining helpers locate a Dense layer's parameters in the params tree
and view them as one matrix.
"""

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gnuq.types import ApplyFn, Array, Params

METHODS = ("auto", "dense", "vmap")


def tapped_apply(apply_fn: ApplyFn, params: Params, x: Array, taps: list[Array] | None):
    """Run ``apply_fn`` adding ``taps[k]`` to the k-th ``nn.Dense`` output.

    Returns ``(outputs, layer_inputs, layers, layer_params)`` in call order; ``layer_params[k]``
    the leaves of the k-th layer's parameters as the layer received them.
    """
    inputs: list[Array] = []
    layers: list[nn.Dense] = []
    weights: list[list] = []

    def interceptor(next_fun, args, kwargs, context):
        if not (isinstance(context.module, nn.Dense) and context.method_name == "__call__"):
            return next_fun(*args, **kwargs)
        z = next_fun(*args, **kwargs)
        k = len(inputs)
        inputs.append(args[0])
        layers.append(context.module)
        weights.append(jax.tree.leaves(context.module.variables.get("params", {})))
        return z if taps is None else z + taps[k]

    with nn.intercept_methods(interceptor):
        out = apply_fn(params, x)
    return out, inputs, layers, weights


def layer_backward(
    apply_fn: ApplyFn,
    params: Params,
    x: Array,
    head: Callable[[Array], Array],
    cotangents: Callable[[Array], Array],
) -> tuple[Array, list[Array], list[Array], list]:
    """Every Dense layer's inputs and pre-activation gradients, from batched backward passes.

    With ``out = head(apply_fn(params, x)) [N, K]`` and ``cot = cotangents(out) [K', N, K]``,
    returns ``(out, inputs, deltas, layers)`` in call order: ``inputs[l] [N, d_in]`` and
    ``deltas[l] [K', N, d_out]``, ``deltas[l][k, n]`` = d <cot[k, n], out[n]> / d z_l(x_n), the
    gradient w.r.t. the layer's pre-activation z_l. Example n's weight gradient of that
    scalar is then the outer product ``[inputs[l][n], 1] deltas[l][k, n]^T`` (bias as the last
    row, as in ``stack_dense``): one backward pass per k serves every example at once, because
    example n's output depends only on example n's pre-activations.
    """
    _, _, layers, _ = tapped_apply(apply_fn, params, x, None)  # traced for the layer widths only
    # the taps take the parameters' float dtype: integer inputs (token ids) have no gradient
    dtype = jnp.result_type(*jax.tree.leaves(params))
    taps = [jnp.zeros((x.shape[0], layer.features), dtype) for layer in layers]

    def outputs(t: list[Array]) -> tuple[Array, list[Array]]:
        raw, inputs, _, _ = tapped_apply(apply_fn, params, x, t)
        return head(raw), inputs

    out, vjp_fn, inputs = jax.vjp(outputs, taps, has_aux=True)
    (deltas,) = jax.vmap(vjp_fn)(cotangents(out))
    return out, inputs, deltas, layers


def output_basis(out: Array) -> Array:
    """``[K, N, K]`` cotangents e_k at every example: ``layer_backward`` then gives the
    pre-activation gradients of each output k separately."""
    k = out.shape[1]
    return jnp.broadcast_to(jnp.eye(k, dtype=out.dtype)[:, None, :], (k, *out.shape))


def dense_layers(apply_fn: ApplyFn, params: Params, x: Array) -> tuple[list, list, list]:
    """``(layers, input_shapes, own)`` of the Dense calls, found by an abstract trace (no FLOPs);
    ``own[k]``: the k-th layer's parameters are leaves of ``params`` themselves, not values
    ``apply_fn`` computed from them (a rescaling, a cast), whose gradients differ."""
    found: dict = {}

    def trace(p: Params, xx: Array) -> Array:
        out, inputs, layers, weights = tapped_apply(apply_fn, p, xx, None)
        leaves = {id(leaf) for leaf in jax.tree.leaves(p)}
        found["inputs"] = [a.shape for a in inputs]
        found["layers"] = layers
        found["own"] = [all(id(w) in leaves for w in ws) for ws in weights]
        return out

    jax.eval_shape(trace, params, x)
    return found["layers"], found["inputs"], found["own"]


def dense_obstacle(apply_fn: ApplyFn, params: Params, x: Array) -> str | None:
    """Why the per-example outer-product structure does not cover this model, or None.

    It does when every parameter sits in a Dense layer that is applied once per example to an
    ``[N, features]`` input.
    """
    layers, shapes, own = dense_layers(apply_fn, params, x)
    if not layers:
        return "it calls no flax.linen.Dense layer"
    n = x.shape[0]
    covered = 0
    for layer, shape, is_own in zip(layers, shapes, own, strict=True):
        if not is_own:
            return (
                f"Dense layer {'/'.join(layer.path) or layer.name} receives parameters that "
                "apply_fn computed from params (rescaled, cast, ...), not the leaves of params: "
                "the identity would give the gradient w.r.t. those values"
            )
        if len(shape) != 2 or shape[0] != n:
            return (
                f"Dense layer {'/'.join(layer.path) or layer.name} sees input of shape {shape}; "
                f"the identity needs [N={n}, features] (one application per example)"
            )
        covered += shape[1] * layer.features + (layer.features if layer.use_bias else 0)
    total = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(params))
    if covered != total:
        return (
            f"its Dense layers account for {covered} of {total} parameters (parameters outside "
            "Dense layers, or a Dense layer applied more than once)"
        )
    return None


def check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")


def resolve_method(
    apply_fn: ApplyFn, params: Params, x: Array, method: str, other_obstacle: str | None = None
) -> str:
    """``"dense"`` or ``"vmap"`` for ``method`` in ``METHODS``: ``"auto"`` takes dense where it
    applies, and ``"dense"`` where it does not raises with the reason. ``other_obstacle`` is a
    caller's own reason against dense (the Laplace path needs a layer-wise posterior too)."""
    check_method(method)
    if method == "vmap":
        return method
    reason = other_obstacle or dense_obstacle(apply_fn, params, x)
    if reason is None:
        return "dense"
    if method == "dense":
        raise ValueError(f"method='dense' does not apply: {reason}. Use method='vmap'.")
    return "vmap"


# ---------------------------------------------------------------------------------------------
# a Dense layer's parameters in the params tree


def get_path(tree, path: tuple[str, ...]):
    for key in path:
        tree = tree[key]
    return tree


def set_path(tree, path: tuple[str, ...], value):
    """A copy of ``tree`` with the sub-tree at ``path`` replaced by ``value``."""
    if not path:
        return value
    out = dict(tree)
    out[path[0]] = set_path(tree[path[0]], path[1:], value)
    return type(tree)(out) if not isinstance(tree, dict) else out


def stack_dense(layer: dict, use_bias: bool) -> Array:
    """Dense params as one ``[d_in (+1), d_out]`` matrix, bias as the last row."""
    if use_bias:
        return jnp.concatenate([layer["kernel"], layer["bias"][None]], axis=0)
    return layer["kernel"]


def unstack_dense(M: Array, use_bias: bool) -> dict:
    return {"kernel": M[:-1], "bias": M[-1]} if use_bias else {"kernel": M}


def with_bias_input(a: Array, use_bias: bool) -> Array:
    """Layer inputs ``[N, d_in]`` with a column of ones appended for the bias (as in
    ``stack_dense``), so that the weight gradient is the outer product ``a delta^T``."""
    if use_bias:
        return jnp.concatenate([a, jnp.ones((a.shape[0], 1), a.dtype)], axis=1)
    return a
