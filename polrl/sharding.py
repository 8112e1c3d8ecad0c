"""Device meshes, logical-axis rules, and the shardings of PolicyState, batches and activations.

A mesh has up to four axes (MaxText / levanter style), in this order:

    data    pure data parallelism: parameters replicated, batch split;
    fsdp    batch split AND parameters / optimizer state split (ZeRO-3 / FSDP: XLA all-gathers a
            weight where it is used and reduce-scatters its gradient);
    expert  expert parallelism: mixture-of-experts weights split by expert, batch split;
    tensor  tensor (model) parallelism: heads, MLP width and vocabulary split (Megatron-style).

Models name their parameter axes (``vocab``, ``embed``, ``q_heads``, ``kv_heads``, ``head_dim``,
``mlp``, ``norm``, ``expert``; see ``polrl.models.transformer``) and activations name their batch
axis ``batch``. An ordered rule set maps logical names to mesh axes; the first rule for a name
whose mesh axes all exist in the mesh, are unused in that array and whose size divides the
dimension wins, and a name with no fitting rule is replicated (INFERRED design choice: a
dimension the axis does not divide, e.g. one KV head over tensor = 2, is replicated rather than
padded).

Expert parallelism ("GShard: Scaling Giant Models with Conditional Computation and Automatic
Sharding", arXiv:2006.16668): mixture-of-experts weights (``polrl.models.moe``) carry a logical
``expert`` axis, which both rule sets map to the ``expert`` mesh axis, so each expert group holds
E / expert of the experts (their ``embed`` / ``mlp`` axes split over fsdp / tensor as usual).
Everything outside the experts is not split by expert, so the expert axis also splits the batch:
the batch rule is data × fsdp × expert, as GShard's tokens are split over the devices that hold
the experts. ``mesh.expert`` = 1 (the default) builds the three-axis mesh ``(data, fsdp,
tensor)``, whose rules fall back to the batch over data × fsdp: every PartitionSpec is what it
is without expert parallelism. INFERRED: the axis order (batch axes first, tensor innermost, as
in the three-axis mesh, so that a process's batch rows stay one contiguous slice and
tensor-parallel partners are neighbouring devices); a dimension ``mesh.expert`` does not divide
(e.g. 3 experts over 2) is replicated like any other, and on a dense model the expert axis is
a second data axis. The layer computes every expert densely
(``polrl.models.moe``), so XLA chooses how tokens meet the experts; no all-to-all dispatch is
written here.

Two rule sets: ``UPDATE_RULES`` (parameters at rest and during the update: FSDP × tensor ×
expert) and ``ROLLOUT_RULES`` (parameters while sampling: tensor and expert parallel only,
replicated over data and fsdp, so the decode loop does not all-gather weights at every token).
The sampler reshards update → rollout once per rollout inside the jitted step
(``reshard_for_rollout``).

Pure step functions never call mesh APIs: they call ``constrain`` / ``constrain_batch`` /
``reshard_for_rollout``, which are identities unless a ``Layout`` is active (``Layout.jit``
activates it while tracing). The trainer always has a Layout; on one device it is a 1-device
mesh.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
from typing import Any, Callable, Sequence

import jax
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec

# Every mesh axis, in mesh order; ``expert`` is left out of a mesh where it has size 1.
MESH_AXES = ("data", "fsdp", "expert", "tensor")

Rules = tuple[tuple[str, Any], ...]

# Parameters at rest and in the update: FSDP over the model width, tensor parallel over heads,
# MLP width and vocabulary, expert parallel over experts; activations' batch over data × fsdp ×
# expert (data × fsdp on a mesh without an expert axis).
UPDATE_RULES: Rules = (
    ("batch", ("data", "fsdp", "expert")),
    ("batch", ("data", "fsdp")),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("q_heads", "tensor"),
    ("kv_heads", "tensor"),
    ("mlp", "tensor"),
    ("expert", "expert"),
)

# Parameters while sampling: tensor and expert parallel only (replicated over data and fsdp).
ROLLOUT_RULES: Rules = (
    ("batch", ("data", "fsdp", "expert")),
    ("batch", ("data", "fsdp")),
    ("vocab", "tensor"),
    ("q_heads", "tensor"),
    ("kv_heads", "tensor"),
    ("mlp", "tensor"),
    ("expert", "expert"),
)


def mesh_shape(data: int, fsdp: int, tensor: int, num_devices: int, *, expert: int = 1) -> dict[str, int]:
    """The size of every mesh axis (``MESH_AXES`` order), ``-1`` (at most one axis: "all remaining
    devices") resolved and the product checked.

    Raises a ValueError naming ``mesh.data`` / ``mesh.fsdp`` / ``mesh.expert`` / ``mesh.tensor``
    when the sizes are not positive or their product is not ``num_devices``.
    """
    sizes = {"data": data, "fsdp": fsdp, "expert": expert, "tensor": tensor}
    bad = [f"mesh.{k}={v}" for k, v in sizes.items() if not isinstance(v, int) or (v < 1 and v != -1)]
    if bad:
        raise ValueError(f"{', '.join(bad)}: mesh sizes must be positive ints or -1 (fill)")
    fill = [k for k, v in sizes.items() if v == -1]
    if len(fill) > 1:
        raise ValueError(f"only one of mesh.data/fsdp/expert/tensor may be -1, got -1 for {fill}")
    known = math.prod(v for v in sizes.values() if v != -1)
    if fill:
        if num_devices % known:
            raise ValueError(
                f"mesh.{fill[0]}=-1 cannot fill {num_devices} devices: the other mesh sizes multiply "
                f"to {known}, which does not divide {num_devices}; change mesh.data/fsdp/expert/tensor")
        sizes[fill[0]] = num_devices // known
    if math.prod(sizes.values()) != num_devices:
        named = [k for k in sizes if k != "expert" or sizes[k] != 1]  # without expert: the 3-axis message
        raise ValueError(
            f"{' × '.join(f'mesh.{k}' for k in named)} = {' × '.join(str(sizes[k]) for k in named)} = "
            f"{math.prod(sizes.values())}, but jax.device_count() = {num_devices}; make the product "
            f"equal the device count (one size may be -1)")
    return sizes


def make_mesh(data: int, fsdp: int, tensor: int, devices: Sequence | None = None, *,
              expert: int = 1) -> jax.sharding.Mesh:
    """A ``('data', 'fsdp', 'expert', 'tensor')`` mesh over ``devices`` (default: all), ``-1``
    filling; without the ``expert`` axis where it has size 1 (the three-axis mesh).

    Axis types are ``Auto`` (sharding propagated by XLA from the jit in/out shardings and the
    constraints), passed explicitly since recent ``jax.make_mesh`` defaults to ``Explicit``.
    """
    devices = list(jax.devices() if devices is None else devices)
    sizes = mesh_shape(data, fsdp, tensor, len(devices), expert=expert)
    axes = tuple(a for a in MESH_AXES if a != "expert" or sizes[a] > 1)
    auto = jax.sharding.AxisType.Auto
    return jax.make_mesh(tuple(sizes[a] for a in axes), axes, axis_types=(auto,) * len(axes), devices=devices)


def logical_spec(names: Sequence[str | None], shape: Sequence[int], rules: Rules,
                 mesh: jax.sharding.Mesh) -> PartitionSpec:
    """The PartitionSpec of an array whose axes have logical ``names``, under ordered ``rules``.

    For each axis, the first rule for its name whose mesh axes all exist in ``mesh``, are not
    yet used by this array and whose total size divides the axis length is taken; otherwise the
    axis is replicated.
    """
    assert len(names) == len(shape), (names, shape)
    used: set[str] = set()
    spec = []
    for name, size in zip(names, shape):
        chosen = None
        for rule_name, axes in rules:
            if rule_name != name or axes is None:
                continue
            axes = (axes,) if isinstance(axes, str) else tuple(axes)
            if not set(axes) <= set(mesh.axis_names):
                continue
            width = math.prod(mesh.shape[a] for a in axes)
            if used.isdisjoint(axes) and size % width == 0:
                chosen = axes
                break
        if chosen is None:
            spec.append(None)
        else:
            used.update(chosen)
            spec.append(chosen[0] if len(chosen) == 1 else chosen)
    return PartitionSpec(*spec)


def _is_variable(x) -> bool:
    return isinstance(x, nnx.Variable)


def tree_shardings(tree: Any, rules: Rules, mesh: jax.sharding.Mesh) -> Any:
    """NamedShardings for every array of ``tree`` (same structure).

    ``nnx.Variable`` leaves with logical axis names (``out_sharding`` metadata) follow
    ``rules``, wherever they sit (parameters, the reference, optax moments, which optax builds
    with the parameters' Variable wrappers); every other array is replicated. A Variable holding
    no array (the other parts' places in ``optax.multi_transform``'s states) is kept as it is.
    """
    replicated = NamedSharding(mesh, PartitionSpec())

    def one(x):
        if _is_variable(x):
            names = x.get_metadata().get("out_sharding")
            value = x.get_value()
            if not hasattr(value, "shape"):  # no array: e.g. optax's MaskedNode of a part's state
                return x
            if names is None or len(names) != len(value.shape):
                return x.replace(replicated)
            return x.replace(NamedSharding(mesh, logical_spec(names, value.shape, rules, mesh)))
        return replicated

    return jax.tree.map(one, tree, is_leaf=_is_variable)


# ----------------------------------------------------------------------------- in-jit helpers

_ACTIVE: contextvars.ContextVar["Layout | None"] = contextvars.ContextVar("polrl_layout", default=None)


def constrain(x: jax.Array, names: Sequence[str | None], *, rollout: bool = False) -> jax.Array:
    """``x`` constrained to logical axis ``names`` under the active layout (identity without one).

    ``rollout=True`` uses the rollout rules (inside the sampler).
    """
    layout = _ACTIVE.get()
    if layout is None:
        return x
    rules = layout.rollout_rules if rollout else layout.update_rules
    spec = logical_spec(names, x.shape, rules, layout.mesh)
    return jax.lax.with_sharding_constraint(x, NamedSharding(layout.mesh, spec))


def constrain_batch(tree: Any, *, rollout: bool = False) -> Any:
    """Every array of ``tree`` with a leading axis constrained to ``batch`` on that axis."""
    if _ACTIVE.get() is None:
        return tree
    return jax.tree.map(
        lambda x: constrain(x, ("batch",) + (None,) * (x.ndim - 1), rollout=rollout) if x.ndim else x, tree)


def reshard_for_rollout(params: Any) -> Any:
    """Parameters moved from the update layout to the rollout layout (identity without one)."""
    layout = _ACTIVE.get()
    if layout is None:
        return params
    return jax.lax.with_sharding_constraint(params, layout.rollout_shardings(params))


# ----------------------------------------------------------------------------- host side

def _local_rows(x: jax.Array) -> np.ndarray:
    """The rows (leading axis) of a batch-sharded array that live on this process, in order."""
    if x.is_fully_addressable:
        return np.asarray(x)
    index = {}
    for shard in x.addressable_shards:
        rows = shard.index[0]
        index.setdefault((rows.start or 0, rows.stop), shard)
    keys = sorted(index)
    return np.concatenate([np.asarray(index[k].data) for k in keys], axis=0)


def to_host(tree: Any) -> Any:
    """numpy values of a tree of (possibly multi-process) arrays, the same on every process.

    Fully addressable arrays are copied; replicated ones read from a local copy; arrays split
    across processes are all-gathered.
    """

    def one(x):
        if x.sharding.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))

    leaves = jax.tree.leaves(tree)
    if all(not isinstance(x, jax.Array) or x.is_fully_addressable for x in leaves):
        return jax.device_get(tree)  # one transfer for the whole tree
    return jax.tree.map(lambda x: one(x) if isinstance(x, jax.Array) and not x.is_fully_addressable
                        else np.asarray(x), tree)


@dataclasses.dataclass(frozen=True)
class Layout:
    """A mesh with its update and rollout rule sets; builds the trainer's jitted functions."""

    mesh: jax.sharding.Mesh
    update_rules: Rules = UPDATE_RULES
    rollout_rules: Rules = ROLLOUT_RULES

    @property
    def batch_shards(self) -> int:
        """How many slices the batch axis is split into (the product of its mesh axes)."""
        return math.prod(self.mesh.shape[a] for a in self.batch_axes)

    @property
    def batch_axes(self) -> tuple[str, ...]:
        """The mesh axes the batch is split over: those of the first ``batch`` update rule whose
        axes all exist in the mesh (data × fsdp × expert, or data × fsdp without an expert axis)."""
        for name, axes in self.update_rules:
            if name == "batch" and axes is not None:
                axes = (axes,) if isinstance(axes, str) else tuple(axes)
                if set(axes) <= set(self.mesh.axis_names):
                    return axes
        return ()

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())

    def batch_sharding(self, ndim: int = 1) -> NamedSharding:
        """Leading axis over the batch rule's mesh axes, other axes replicated."""
        axes = self.batch_axes
        lead = None if not axes else (axes[0] if len(axes) == 1 else axes)
        return NamedSharding(self.mesh, PartitionSpec(lead, *([None] * (ndim - 1))))

    def state_shardings(self, tree: Any) -> Any:
        """Shardings of a PolicyState (or any parameter tree) in the update layout."""
        return tree_shardings(tree, self.update_rules, self.mesh)

    def rollout_shardings(self, params: Any) -> Any:
        """Shardings of a parameter tree in the rollout layout."""
        return tree_shardings(params, self.rollout_rules, self.mesh)

    @contextlib.contextmanager
    def active(self):
        """Makes ``constrain`` & co. use this layout (while tracing)."""
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)

    def put(self, tree: Any, shardings: Any) -> Any:
        """``tree`` (the same on every process) laid out with ``shardings``."""
        return jax.device_put(tree, shardings)

    def process_rows(self, global_rows: int) -> tuple[int, int]:
        """The contiguous rows ``[start, stop)`` of a batch of ``global_rows`` this process holds."""
        indices = self.batch_sharding(1).addressable_devices_indices_map((global_rows,))
        spans = sorted({(s[0].start or 0, global_rows if s[0].stop is None else s[0].stop) for s in indices.values()})
        start, stop = spans[0][0], spans[-1][1]
        if sum(b - a for a, b in spans) != stop - start or global_rows % (stop - start):
            raise ValueError(f"this process's batch rows {spans} are not one contiguous, even slice "
                             f"of {global_rows}; order the mesh devices by process")
        return start, stop

    def from_process_rows(self, local: Any, global_rows: int) -> Any:
        """A global batch-sharded array from this process's rows (``process_rows``)."""
        def one(x):
            x = np.asarray(x)
            return jax.make_array_from_process_local_data(
                self.batch_sharding(x.ndim), x, (global_rows,) + x.shape[1:])
        return jax.tree.map(one, local)

    def from_global(self, tree: Any) -> Any:
        """A global batch-sharded array from host data every process holds in full."""
        def one(x):
            x = np.asarray(x)
            return jax.make_array_from_callback(x.shape, self.batch_sharding(x.ndim), lambda idx: x[idx])
        return jax.tree.map(one, tree)

    local_rows = staticmethod(_local_rows)

    def jit(self, fn: Callable, in_kinds: Sequence[str], out_kinds: Sequence[str] | str,
            donate_argnums: tuple[int, ...] = ()) -> Callable:
        """``jax.jit(fn)`` with explicit in/out shardings, traced with this layout active.

        Kinds: ``"state"`` (a PolicyState: the update rules), ``"params"`` (an input parameter
        tree, laid out like the state but not returned), ``"batch"``
        (every leaf split over the batch on its leading axis; leaves must have one) and
        ``"replicated"``. An output of kind ``"state"`` gets the sharding of the first
        ``"state"`` input, so the state keeps its layout from step to step. The shardings are
        derived from the arguments of the first call.
        """
        single = isinstance(out_kinds, str)
        outs = (out_kinds,) if single else tuple(out_kinds)

        def traced(*args):
            with self.active():
                return fn(*args)

        def build(args):
            state = next((self.state_shardings(a) for a, k in zip(args, in_kinds, strict=True) if k == "state"), None)

            def sharding_of(kind, arg=None):
                if kind == "state":
                    return state if arg is None else self.state_shardings(arg)
                if kind == "params" and arg is not None:
                    return self.state_shardings(arg)
                if kind == "batch":
                    return self.batch_sharding(1)
                if kind == "replicated":
                    return self.replicated
                raise ValueError(f"sharding kind {kind!r} is not valid here; use 'state', 'params' (inputs), "
                                 f"'batch' or 'replicated'")

            in_sh = tuple(sharding_of(k, a) for k, a in zip(in_kinds, args, strict=True))
            out_sh = tuple(sharding_of(k) for k in outs)
            return jax.jit(traced, in_shardings=in_sh, out_shardings=out_sh[0] if single else out_sh,
                           donate_argnums=donate_argnums)

        jitted = []

        def jit_for(args):
            if not jitted:
                jitted.append(build(args))
            return jitted[0]

        def call(*args):
            return jit_for(args)(*args)

        call.lower = lambda *args: jit_for(args).lower(*args)  # AOT: .compile().cost_analysis()
        return call


def layout_from_config(mesh_config: Any, *, devices: Sequence | None = None) -> Layout:
    """The Layout of a ``mesh`` config section.

    ``mesh`` fields: ``data``, ``fsdp``, ``tensor``, ``expert`` (-1 fills; default 1 each),
    optional ``update_rules`` / ``rollout_rules`` (sequences of ``(logical name, mesh axes)``).
    No section, or 1 × 1 × 1 × 1, is a 1-device mesh on the first device (single-process runs
    only); any other shape must use every device.
    """
    get = (lambda k, d=None: d) if mesh_config is None else (
        mesh_config.get if hasattr(mesh_config, "get") else lambda k, d=None: getattr(mesh_config, k, d))
    sizes = {k: get(k, 1) for k in MESH_AXES}
    devices = list(jax.devices() if devices is None else devices)
    if all(v == 1 for v in sizes.values()):
        if jax.process_count() > 1:
            raise ValueError(f"a multi-process run ({jax.process_count()} processes) needs a mesh over every "
                             f"device; set e.g. mesh.fsdp=-1")
        devices = devices[:1]
    mesh = make_mesh(sizes["data"], sizes["fsdp"], sizes["tensor"], devices=devices, expert=sizes["expert"])
    return Layout(mesh, _rules(get("update_rules", None), UPDATE_RULES, "mesh.update_rules"),
                  _rules(get("rollout_rules", None), ROLLOUT_RULES, "mesh.rollout_rules"))


def _rules(value, default: Rules, field: str) -> Rules:
    if value is None:
        return default
    rules = []
    for item in value:
        if len(item) != 2:
            raise ValueError(f"{field}: each rule is (logical name, mesh axes), got {item!r}")
        name, axes = item
        flat = () if axes is None else ((axes,) if isinstance(axes, str) else tuple(axes))
        unknown = [a for a in flat if a not in MESH_AXES]
        if unknown:
            raise ValueError(f"{field}: rule {item!r} names unknown mesh axes {unknown}; use {MESH_AXES}")
        rules.append((name, axes if isinstance(axes, (str, type(None))) else tuple(axes)))
    return tuple(rules)
