"""The core contract: PolicyState, Batch, Transform, chain, named_chain, Algorithm, Collector.

Everything in polrl is built from these things.

* ``PolicyState`` — one pytree with everything a run needs to resume: parameters, optimizer
  state, the frozen reference, per-transform states and the RNG. Static things (the model's
  graphdef, the config) never live in it.
* ``Batch`` — what flows through transforms. Field names carry their shape (``_b`` per
  sequence, ``_bt`` per response token, ``_bp`` per prompt token). Optional fields are ``None``
  when unused.
* ``Transform`` — an optax-style ``(init, apply)`` pair built by a factory that binds the
  hyper-parameters: ``apply(batch, state, **extra) -> (batch, state)``. ``extra`` carries
  ``step``, ``rng`` …; transforms ignore extras they do not use. A transform also *declares*
  what the trainer must compute for it (``needs``, e.g. ``{"ref_logp"}``), so the model is never
  run inside a transform and the union of needs is computed once.
* ``chain`` / ``named_chain`` compose transforms like ``optax.chain``.
* ``Algorithm`` — ``(prepare, objective, optimizer)`` plus the static shape of the update loop
  (epochs × minibatches) and, when the method needs data of its own, a collector wrapper.
  ``prepare`` runs once per rollout batch outside the gradient (advantages, filters, weights);
  ``objective`` runs inside ``value_and_grad`` on each minibatch, after the scoring forward has
  filled ``logp_bt`` (and ``entropy_bt``/``value_bt``), adds named per-token loss terms to
  ``batch.terms`` and ends with an explicit aggregation that turns them into scalars in
  ``batch.losses``. The loss is ``Σ batch.losses``.
* ``Collector`` — how a training step's Batch is acquired (sampling groups, demonstrations,
  preference pairs, replay, multi-turn environments, trees): composable like transforms, with
  its own state; the trainer is one loop of collect → prepare → update.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import optax

Array = jax.Array

# What a transform may ask the trainer to compute before ``prepare`` (outside the gradient):
# These are computations of the model, not data: data a method needs (expert rows, a greedy
# baseline, replayed rows) comes from its collector, in Batch fields or ``Batch.aux``.
#   "ref_logp"        — log-probs of the response under the frozen reference parameters;
#   "values"          — the value head at rollout time (``old_value_bt``) and during the update
#                       (``value_bt``);
#   "detached_values" — with "values": the update's ``value_bt`` is computed on the hidden states
#                       under stop_gradient, so the value loss trains the value head alone and
#                       the policy's parameters get the policy loss's gradient only (a critic
#                       optimized apart from the policy, ``optim.with_value_head_optimizer``);
#   "old_logp"        — π_old recomputed by the trainer (``old_logp_bt``) even with one update per
#                       batch (importance corrections between sampler and trainer, replay);
#   "logits"          — the full next-token logits at each response position in the update
#                       (``logits_btv``, differentiable; objectives over the whole vocabulary);
#   "kl_to_old"       — the exact KL(π_θ(·|s_t) ‖ π_old(·|s_t)) of the full distributions at each
#                       position in the update (``kl_to_old_bt``, differentiable; filled by
#                       ``polrl.control`` on ``ControlBatch``; MDPO's mirror-descent term);
#   "old_mean_logp"   — the vocabulary mean of the log-probs m(s_t) = (1/V) Σ_v log π(v|s_t) at
#                       each response position: π_old's in ``aux["old_mean_logp_bt"]``, from the
#                       forward in which prepare recomputes ``old_logp_bt`` (same LM-head chunks,
#                       one more reduction over V), and π_θ's, without gradient, in
#                       ``aux["mean_logp_bt"]`` from the update's scoring forward. Only when π_old
#                       is recomputed: with ``old_logp_bt`` None, π_old = π_θ and neither is
#                       filled (ROVER's next-state value ρ·(m_θ − m_old)).
KNOWN_NEEDS = frozenset(
    {"ref_logp", "values", "detached_values", "old_logp", "logits", "kl_to_old", "old_mean_logp"})

# Where a row of a Batch comes from (``Batch.source_b``): the policy's own sample of this step
# (ON_POLICY) or of an earlier version (REPLAY), a labelled answer with no sampling policy
# (EXPERT), a sample of another model of the run (TEACHER: a frozen model of ``config.models``),
# or the policy's sample under guidance the evaluation never gives (GUIDED: e.g. a hint in its
# prompt).
ON_POLICY, EXPERT, REPLAY, TEACHER, GUIDED = 0, 1, 2, 3, 4
SOURCE_NAMES = {ON_POLICY: "on_policy", EXPERT: "expert", REPLAY: "replay", TEACHER: "teacher", GUIDED: "guided"}


@flax.struct.dataclass
class PolicyState:
    """Everything a run needs to resume, as one pytree.

    Attributes:
      step: int32 scalar, number of update iterations applied so far.
      rng: PRNG key, split every iteration.
      params: ``nnx.State`` of the policy's parameters (the model's graphdef is static and lives
        outside the state).
      opt_state: the optax state for ``params``.
      ref_params: frozen reference/anchor parameters (``None`` when no transform needs them).
      prepare_state: state of ``Algorithm.prepare`` (e.g. running statistics).
      objective_state: state of ``Algorithm.objective`` (e.g. an adaptive KL coefficient).
      collector_state: state of the phase's ``Collector`` (e.g. a replay buffer).
      models: the run's frozen auxiliary models' parameters by name (``config.models``: a
        reward model, a process reward model, a teacher, a target; ``{}`` when there are none).
        Laid out like ``params``, passed to the compiled step as arguments, never checkpointed:
        a run reloads them from their source (``polrl.train.auxiliary``). A model trained during
        the run is the policy of a phase, or a transform's or collector's state.
    """

    step: Array
    rng: Array
    params: Any
    opt_state: Any
    ref_params: Any = None
    prepare_state: Any = None
    objective_state: Any = None
    collector_state: Any = None
    models: Any = None


@flax.struct.dataclass
class Batch:
    """One batch of sequences, as it flows through transforms.

    Sequences are ``prompt_bp`` (left-padded, ``prompt_valid_bp`` marks real tokens) followed by
    ``response_bt`` (right-padded). Every per-token field (``_bt``) is aligned with
    ``response_bt``: ``logp_bt[b, t] = log π(response_bt[b, t] | prompt, response_bt[b, :t])``.

    Rollout fields: ``reward_b`` (scalar reward), ``group_b`` (int32 group id in ``[0, B)``,
    e.g. the prompt index; DPO pairs are groups of two), ``behavior_logp_bt`` (the log-probs of
    the policy that produced the row: the sampler's for on-policy rows, the stored ones for
    replayed rows, 0 for expert rows whose policy is unknown), ``old_value_bt`` (value head at
    rollout time), ``source_b`` (``ON_POLICY`` / ``EXPERT`` / ``REPLAY`` / ``TEACHER`` /
    ``GUIDED``; ``None`` = all on-policy), ``version_b`` (``PolicyState.step`` of the policy that produced the row; the
    staleness of a row is ``step − version_b``), ``aux`` (name → per-row array with leading
    dimension B: whatever else a collector provides for a method, e.g. ``greedy_reward_b`` for
    ReMax or ``turn_bt`` for a multi-turn rollout; names carry their shape suffix).
    Prepare fields: ``old_logp_bt`` (recomputed π_old; ``None`` means "the parameters have not
    moved since the rollout", and the objective uses ``stop_gradient(logp_bt)``),
    ``ref_logp_bt``, ``adv_bt``, ``return_bt``.
    Score fields (filled by the scoring forward inside the gradient): ``logp_bt``,
    ``entropy_bt``, ``value_bt``, and ``logits_btv`` (temperature-scaled logits, only when a
    transform needs ``logits``).
    Objective fields: ``terms`` (name → per-token loss ``[B, T]``, waiting for aggregation),
    ``losses`` (name → scalar), ``metrics`` (name → scalar, logged).

    ``group_size`` (static) says that rows ``[k·G, (k+1)·G)`` form group k; minibatches then
    keep whole groups together and renumber ``group_b`` within the minibatch, so objectives that
    compare rows of a group (DPO pairs) see complete groups. 1 means rows are independent.
    """

    prompt_bp: Array
    prompt_valid_bp: Array
    response_bt: Array
    mask_bt: Array
    reward_b: Array | None = None
    group_b: Array | None = None
    behavior_logp_bt: Array | None = None
    old_value_bt: Array | None = None
    source_b: Array | None = None
    version_b: Array | None = None
    aux: dict = flax.struct.field(default_factory=dict)
    old_logp_bt: Array | None = None
    ref_logp_bt: Array | None = None
    adv_bt: Array | None = None
    return_bt: Array | None = None
    logp_bt: Array | None = None
    entropy_bt: Array | None = None
    value_bt: Array | None = None
    logits_btv: Array | None = None
    terms: dict = flax.struct.field(default_factory=dict)
    losses: dict = flax.struct.field(default_factory=dict)
    metrics: dict = flax.struct.field(default_factory=dict)
    group_size: int = flax.struct.field(pytree_node=False, default=1)

    @property
    def batch_size(self) -> int:
        return self.response_bt.shape[0]

    def require(self, *names: str, by: str) -> None:
        """Raises a clear error when a field a transform reads is missing."""
        missing = [n for n in names if getattr(self, n) is None]
        if missing:
            raise ValueError(
                f"{by} needs Batch field(s) {missing}, which are None. Fill them before this "
                f"transform (the trainer fills ref_logp_bt / old_value_bt when the algorithm "
                f"declares the need; reward_b and group_b come from the rollout)."
            )

    def require_aux(self, *names: str, by: str, provider: str) -> None:
        """Raises a clear error when an ``aux`` field a transform reads is missing."""
        missing = [n for n in names if n not in self.aux]
        if missing:
            raise ValueError(
                f"{by} needs Batch.aux field(s) {missing}, which the phase's collector does not "
                f"provide; collect with {provider}"
            )

    def add_term(self, name: str, loss_bt: Array) -> "Batch":
        if name in self.terms or name in self.losses:
            raise ValueError(f"loss term {name!r} is added twice; give the second one another name")
        return self.replace(terms={**self.terms, name: loss_bt})

    def add_loss(self, name: str, loss: Array) -> "Batch":
        if name in self.terms or name in self.losses:
            raise ValueError(f"loss {name!r} is added twice; give the second one another name")
        return self.replace(losses={**self.losses, name: loss})

    def add_metrics(self, **metrics: Array) -> "Batch":
        return self.replace(metrics={**self.metrics, **metrics})


class Transform(NamedTuple):
    """An optax-style pair of pure functions over a Batch.

    Attributes:
      init: ``(example=None) -> state``. ``example`` is a Batch (arrays or
        ``jax.ShapeDtypeStruct``) shaped like the rollout batches the transform will see; only
        transforms whose state depends on shapes (a replay buffer) read it.
      apply: ``(batch, state, **extra) -> (batch, state)``.
      needs: what the trainer must compute for this transform (subset of ``KNOWN_NEEDS``).
    """

    init: Callable[[], Any]
    apply: Callable[..., tuple[Batch, Any]]
    needs: frozenset = frozenset()


def _no_state(example=None) -> tuple:
    del example
    return ()


def stateless(fn: Callable[..., Batch], needs=()) -> Transform:
    """Builds a Transform from ``fn(batch, **extra) -> batch`` that keeps no state.

    ``fn`` may take any of the extras as keyword-only arguments; extras it does not name are
    dropped here, so every transform ignores unknown extras.
    """
    params = inspect.signature(fn).parameters
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    wanted = {n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}

    def apply(batch, state, **extra):
        kwargs = extra if takes_all else {k: v for k, v in extra.items() if k in wanted}
        return fn(batch, **kwargs), state

    transform = Transform(_no_state, apply, frozenset(needs))
    _check_needs([transform])
    return transform


def _check_needs(transforms) -> None:
    for t in transforms:
        unknown = set(t.needs) - KNOWN_NEEDS
        if unknown:
            raise ValueError(f"unknown needs {sorted(unknown)}; known: {sorted(KNOWN_NEEDS)}")


def chain(*transforms: Transform) -> Transform:
    """Applies ``transforms`` in order, threading the batch; the state is a tuple of states."""

    _check_needs(transforms)

    def init(example=None):
        return tuple(t.init(example) for t in transforms)

    def apply(batch, state, **extra):
        new_state = []
        for t, s in zip(transforms, state, strict=True):
            batch, s = t.apply(batch, s, **extra)
            new_state.append(s)
        return batch, tuple(new_state)

    needs = frozenset().union(*(t.needs for t in transforms))
    return Transform(init, apply, needs)


def named_chain(*named: tuple[str, Transform]) -> Transform:
    """Like ``chain``; the state is a dict keyed by the given names (readable checkpoints)."""
    names = [n for n, _ in named]
    _check_needs([t for _, t in named])
    if len(set(names)) != len(names):
        raise ValueError(f"named_chain got duplicate names {names}")

    def init(example=None):
        return {n: t.init(example) for n, t in named}

    def apply(batch, state, **extra):
        new_state = {}
        for n, t in named:
            batch, new_state[n] = t.apply(batch, state[n], **extra)
        return batch, new_state

    needs = frozenset().union(*(t.needs for _, t in named))
    return Transform(init, apply, needs)


class Algorithm(NamedTuple):
    """A policy-optimization method: what to compute once per batch, what to minimize, how.

    Attributes:
      prepare: Transform run once per rollout batch, outside the gradient.
      objective: Transform run on each minibatch inside ``value_and_grad``; it must leave every
        per-token term aggregated (``batch.terms`` empty) and the scalar losses in
        ``batch.losses``.
      optimizer: the optax transformation for the policy parameters.
      num_epochs: passes over each rollout batch.
      num_minibatches: minibatches per pass (the batch size must be divisible by it).
      collector: ``Collector -> Collector``, the data this method adds to whatever the phase
        collects (expert rows, dynamic sampling, a greedy baseline, replay), or None. The
        trainer wraps the phase's collector with it.
      trains_policy: False for a noun that trains a scorer on the policy's model (a reward or
        process reward model's value head): the trainer does not evaluate such a phase's model
        as a policy (no ``eval/`` metrics), since its answers say nothing about the scorer.
    """

    prepare: Transform
    objective: Transform
    optimizer: optax.GradientTransformation
    num_epochs: int = 1
    num_minibatches: int = 1
    collector: Callable[["Collector"], "Collector"] | None = None
    trains_policy: bool = True

    @property
    def needs(self) -> frozenset:
        return self.prepare.needs | self.objective.needs

    @property
    def updates_per_batch(self) -> int:
        return self.num_epochs * self.num_minibatches


class Collector(NamedTuple):
    """How a training step's Batch is acquired (``polrl.collectors`` builds them).

    Attributes:
      init: ``(prompts) -> state``, the collector's initial state (``()`` when stateless) for
        steps of ``prompts`` prompts; it lives in ``PolicyState.collector_state`` (checkpointed).
      collect: ``(collector_state, policy_state, data, rng) -> (batch, collector_state, metrics)``.
        ``data`` holds the step's prompts (``prompt_bp``, ``prompt_valid_bp``, ``answer_ba``,
        ``answer_valid_ba``; with ``host``, also ``examples``: the example dicts); the policy
        state gives the parameters (and the reference, the step as the rows' version).
      example: ``(prompts) -> Batch`` of ``jax.ShapeDtypeStruct``: the shapes ``collect``
        returns for steps of ``prompts`` prompts (shape-dependent transform states, and the
        trainer's check of the algorithm against the data before compiling).
      reads: ``(prompts) -> int``, how many prompts ``collect`` reads for a step of
        ``prompts`` (dynamic sampling reads more than it keeps).
      needs: what ``collect`` uses from the policy state besides the parameters:
        ``"reference"`` keeps ``ref_params`` in the state (a collector reading a named model,
        ``PolicyState.models``, needs nothing declared: every phase holds them).
      host: ``collect`` runs host code (a verifier on strings, tools): the trainer calls it
        outside ``jit`` (its device parts jit themselves) instead of compiling it into the step.
      eval_prefix: None, or ``(collector_state) -> (tokens [L], valid [L])``: tokens the collector
        keeps in its state to put before every held-out prompt (INSPO's best instruction); the
        trainer then evaluates with them (``eval/…``) and without them (``eval/bare/…``).
    """

    init: Callable[[int], Any]
    collect: Callable[..., tuple[Batch, Any, dict]]
    example: Callable[[int], Batch]
    reads: Callable[[int], int] = lambda prompts: prompts
    needs: frozenset = frozenset()
    host: bool = False
    eval_prefix: Callable[[Any], tuple[Array, Array]] | None = None


def own_rows(batch: Batch) -> Array:
    """[B] float32: 1 for the rows the policy sampled unaided (``ON_POLICY`` or ``REPLAY``; every
    row when ``source_b`` is None), 0 for expert, teacher and guided rows — the rows whose
    statistics describe the policy itself (rollout accuracy, staleness, importance ratios)."""
    if batch.source_b is None:
        return jnp.ones((batch.batch_size,), jnp.float32)
    return ((batch.source_b == ON_POLICY) | (batch.source_b == REPLAY)).astype(jnp.float32)


def total_loss(batch: Batch) -> Array:
    """Σ of the scalar losses; errors if a per-token term was never aggregated."""
    if batch.terms:
        raise ValueError(
            f"loss terms {sorted(batch.terms)} were never aggregated: end the objective with "
            f"polrl.objectives.aggregate(mode)"
        )
    if not batch.losses:
        raise ValueError("the objective produced no loss")
    return sum(batch.losses.values(), jnp.zeros((), jnp.float32))
