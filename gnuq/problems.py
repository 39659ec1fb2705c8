"""Registry of synthetic problems: name -> sampler of (x, y), task, input box and evaluation grid.

Adding a problem is one decorated function, in gnuq or in a user's own file::

    @gnuq.problems.register("moons", task="bernoulli", box=((-2, 3), (-1.5, 2)))
    def moons(key, n, noise=0.1):
        ...  # return x [n, 2] float, y [n] int
        return x, y

    problem = gnuq.problems.get("moons", noise=0.2)
    x, y = problem.sample(jax.random.key(0), 200)

Keyword arguments of the sampler are the problem's knobs; their defaults are the stated defaults.
The evaluation box is wider than the region the training data covers, so extrapolation counts.
"""

import dataclasses
import inspect
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from gnuq.types import Array, PRNGKey

TASKS = ("bernoulli", "categorical", "gaussian")
Sampler = Callable[..., tuple[Array, Array]]


@dataclasses.dataclass(frozen=True)
class Problem:
    """A registered problem with its knobs bound.

    ``num_classes`` is 2 for bernoulli (labels 0/1), C for categorical, 0 for gaussian.
    ``box`` is ``((lo, hi), ...)`` per input dimension: the region the evaluation grid covers.
    """

    name: str
    task: str
    num_classes: int
    box: tuple[tuple[float, float], ...]
    sampler: Sampler
    options: dict

    @property
    def input_dim(self) -> int:
        return len(self.box)

    @property
    def noise_var(self) -> float | None:
        """Observation variance of a gaussian problem (its ``noise`` knob squared)."""
        return self.options["noise"] ** 2 if self.task == "gaussian" else None

    def sample(self, key: PRNGKey, n: int) -> tuple[Array, Array]:
        """``x [n, input_dim]`` float32 and ``y [n]`` (int32 labels, or float32 targets)."""
        if n < 1:
            raise ValueError(f"n must be a positive number of samples, got {n}")
        x, y = self.sampler(key, n, **self.options)
        y_dtype = jnp.float32 if self.task == "gaussian" else jnp.int32
        return jnp.asarray(x, jnp.float32).reshape(n, self.input_dim), jnp.asarray(y, y_dtype)

    def grid(self, resolution: int) -> Array:
        """``[resolution ** input_dim, input_dim]`` points on a regular grid over ``box``.

        Row-major over the first axis: for 2D, ``values.reshape(resolution, resolution)`` has
        x0 varying along columns and x1 along rows (``imshow(..., origin="lower")`` ready).
        """
        if resolution < 2:
            raise ValueError(f"grid resolution must be at least 2, got {resolution}")
        axes = [np.linspace(lo, hi, resolution) for lo, hi in self.box]
        mesh = np.meshgrid(*axes, indexing="xy")
        return jnp.asarray(np.stack([m.ravel() for m in mesh], axis=1), jnp.float32)


_REGISTRY: dict[str, tuple[str, int, tuple, Sampler]] = {}


def register(
    name: str, *, task: str, box: tuple[tuple[float, float], ...], num_classes: int | None = None
) -> Callable[[Sampler], Sampler]:
    """Decorator registering ``sampler(key, n, **knobs) -> (x, y)`` under ``name``."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {TASKS}")
    if task == "categorical" and (num_classes is None or num_classes < 2):
        raise ValueError("a categorical problem needs num_classes >= 2")
    classes = {"bernoulli": 2, "gaussian": 0}.get(task, num_classes)

    def wrap(sampler: Sampler) -> Sampler:
        if name in _REGISTRY:
            raise ValueError(f"problem {name!r} is already registered")
        _REGISTRY[name] = (task, classes, tuple(tuple(map(float, b)) for b in box), sampler)
        return sampler

    return wrap


def names() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str, **options) -> Problem:
    """The problem called ``name``, with knob overrides; unknown names or knobs raise."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown problem {name!r}; known problems: {', '.join(names())}")
    task, classes, box, sampler = _REGISTRY[name]
    knobs = {
        p.name: p.default
        for p in list(inspect.signature(sampler).parameters.values())[2:]
        if p.default is not inspect.Parameter.empty
    }
    unknown = set(options) - set(knobs)
    if unknown:
        raise ValueError(
            f"problem {name!r} has no option(s) {sorted(unknown)}; its options: {knobs}"
        )
    return Problem(name, task, classes, box, sampler, {**knobs, **options})


# ---------------------------------------------------------------------------------------------
# binary classification (Tables 5, 6; proxy bias, Table 3). Boundaries are symmetric under
# x -> -x, so the top and bottom halves of the box are mirror images (needed by the proxy study).


@register("linear", task="bernoulli", box=((-3, 3), (-3, 3)))
def linear(key: PRNGKey, n: int, sharpness: float = 2.0, angle: float = 30.0, extent: float = 2.0):
    """Labels from a logistic model: y ~ Bernoulli(sigmoid(sharpness * <w, x>)), |w| = 1,
    w at ``angle`` degrees, x ~ U[-extent, extent]^2; logistic regression is correctly specified."""
    kx, ky = jax.random.split(key)
    x = jax.random.uniform(kx, (n, 2), minval=-extent, maxval=extent)
    w = jnp.array([math.cos(math.radians(angle)), math.sin(math.radians(angle))])
    y = jax.random.bernoulli(ky, jax.nn.sigmoid(sharpness * x @ w))
    return x, y


@register("xor", task="bernoulli", box=((-3, 3), (-3, 3)))
def xor(key: PRNGKey, n: int, flip: float = 0.05, extent: float = 2.0):
    """y = [x0 * x1 > 0], x ~ U[-extent, extent]^2, each label flipped with probability ``flip``."""
    kx, kf = jax.random.split(key)
    x = jax.random.uniform(kx, (n, 2), minval=-extent, maxval=extent)
    y = (x[:, 0] * x[:, 1] > 0) ^ jax.random.bernoulli(kf, flip, (n,))
    return x, y


@register("rings", task="bernoulli", box=((-3, 3), (-3, 3)))
def rings(key: PRNGKey, n: int, radii: tuple = (1.0, 2.0), noise: float = 0.2):
    """Two concentric rings: class k at radius ``radii[k]`` + N(0, noise^2), uniform angle."""
    return _rings(key, n, radii, noise)


# ---------------------------------------------------------------------------------------------
# 4-class classification (Table 8, Figure 2; the scaling sweep, Table 10, uses rings4)


@register("clusters", task="categorical", num_classes=4, box=((-4, 4), (-4, 4)))
def clusters(key: PRNGKey, n: int, spread: float = 0.7, distance: float = 1.5):
    """Four isotropic Gaussian clusters (std ``spread``) centred at (+-distance, +-distance)."""
    kc, kx = jax.random.split(key)
    y = jax.random.randint(kc, (n,), 0, 4)
    centres = distance * jnp.array([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])
    return centres[y] + spread * jax.random.normal(kx, (n, 2)), y


@register("spirals", task="categorical", num_classes=4, box=((-3, 3), (-3, 3)))
def spirals(key: PRNGKey, n: int, turns: float = 0.75, noise: float = 0.15):
    """Four interleaved spiral arms: radius t ~ U[0.2, 2], angle 2 pi (turns t / 2 + k / 4)."""
    kc, kt, kx = jax.random.split(key, 3)
    y = jax.random.randint(kc, (n,), 0, 4)
    t = jax.random.uniform(kt, (n,), minval=0.2, maxval=2.0)
    angle = 2 * jnp.pi * (turns * t / 2 + y / 4)
    x = t[:, None] * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=1)
    return x + noise * jax.random.normal(kx, (n, 2)), y


@register("rings4", task="categorical", num_classes=4, box=((-5, 5), (-5, 5)))
def rings4(key: PRNGKey, n: int, radii: tuple = (1.0, 2.0, 3.0, 4.0), noise: float = 0.25):
    """Four concentric rings: class k at radius ``radii[k]`` + N(0, noise^2), uniform angle."""
    return _rings(key, n, radii, noise)


def _rings(key: PRNGKey, n: int, radii: tuple, noise: float):
    kc, ka, kr = jax.random.split(key, 3)
    y = jax.random.randint(kc, (n,), 0, len(radii))
    r = jnp.asarray(radii)[y] + noise * jax.random.normal(kr, (n,))
    angle = jax.random.uniform(ka, (n,), maxval=2 * jnp.pi)
    return r[:, None] * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=1), y


# ---------------------------------------------------------------------------------------------
# 1D regression (Table 9): training inputs cover part of the line, the grid extends beyond.


@register("linear_1d", task="gaussian", box=((-3, 3),))
def linear_1d(key: PRNGKey, n: int, slope: float = 0.8, intercept: float = 0.3, noise: float = 0.3):
    """y = slope x + intercept + N(0, noise^2), x ~ U[-1.5, 1.5]."""
    kx, ke = jax.random.split(key)
    x = jax.random.uniform(kx, (n,), minval=-1.5, maxval=1.5)
    return x[:, None], slope * x + intercept + noise * jax.random.normal(ke, (n,))


@register("nonlinear_1d", task="gaussian", box=((-3, 3),))
def nonlinear_1d(key: PRNGKey, n: int, frequency: float = 2.0, noise: float = 0.1):
    """y = sin(frequency x) + N(0, noise^2), x uniform on [-2, -0.5] U [0.5, 2] (a gap in the
    middle, so the reference shows in-between as well as outside uncertainty)."""
    kx, ks, ke = jax.random.split(key, 3)
    x = jax.random.uniform(kx, (n,), minval=0.5, maxval=2.0)
    x = jnp.where(jax.random.bernoulli(ks, 0.5, (n,)), x, -x)
    return x[:, None], jnp.sin(frequency * x) + noise * jax.random.normal(ke, (n,))
