"""Finding a model's ``flax.linen.Dense`` layers, their inputs and pre-activation gradients.

``tapped_apply`` runs any ``apply(params, x)`` under a method interceptor that records every Dense
layer's input and adds a zero "tap" to its output: the gradient w.r.t. a tap is the gradient
w.r.t. that layer's pre-activation. The estimator's dense identity and KFAC both build on it.
"""

import flax.linen as nn
import jax
import numpy as np

from gnuq.types import ApplyFn, Array, Params


def tapped_apply(apply_fn: ApplyFn, params: Params, x: Array, taps: list[Array] | None):
    """Run ``apply_fn`` adding ``taps[k]`` to the k-th ``nn.Dense`` output.

    Returns ``(outputs, layer_inputs, layers)`` in call order.
    """
    inputs: list[Array] = []
    layers: list[nn.Dense] = []

    def interceptor(next_fun, args, kwargs, context):
        if not (isinstance(context.module, nn.Dense) and context.method_name == "__call__"):
            return next_fun(*args, **kwargs)
        z = next_fun(*args, **kwargs)
        k = len(inputs)
        inputs.append(args[0])
        layers.append(context.module)
        return z if taps is None else z + taps[k]

    with nn.intercept_methods(interceptor):
        out = apply_fn(params, x)
    return out, inputs, layers


def dense_layers(apply_fn: ApplyFn, params: Params, x: Array) -> tuple[list, list]:
    """``(layers, input_shapes)`` of the Dense calls, found by an abstract trace (no FLOPs)."""
    found: dict = {}

    def trace(p: Params, xx: Array) -> Array:
        out, inputs, layers = tapped_apply(apply_fn, p, xx, None)
        found["inputs"] = [a.shape for a in inputs]
        found["layers"] = layers
        return out

    jax.eval_shape(trace, params, x)
    return found["layers"], found["inputs"]


def dense_obstacle(apply_fn: ApplyFn, params: Params, x: Array) -> str | None:
    """Why the per-example outer-product structure does not cover this model, or None.

    It does when every parameter sits in a Dense layer that is applied once per example to an
    ``[N, features]`` input.
    """
    layers, shapes = dense_layers(apply_fn, params, x)
    if not layers:
        return "it calls no flax.linen.Dense layer"
    n = x.shape[0]
    covered = 0
    for layer, shape in zip(layers, shapes, strict=True):
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
