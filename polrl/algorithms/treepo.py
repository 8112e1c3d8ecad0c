"""TreePO: the tree-structured advantage over the sub-groups of a tree rollout."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from polrl import advantages, objectives
from polrl.algorithms.policy_gradient import check_options, pg_algorithm
from polrl.collectors.tree import FIELD
from polrl.core import ON_POLICY, Algorithm, Batch, Transform, stateless

WEIGHTINGS = ("average", "size")
PROVIDER = 'the tree collector: set config.collector = "tree" and collector_kwargs.segment_len'


def subgroup_advantages(reward_b: jax.Array, group_b: jax.Array, node_bd: jax.Array, group_size: int,
                        weighting: str = "average") -> jax.Array:
    """TreePO's advantage before normalization (arXiv 2508.17445, Eq. 5 / Eq. 6).

    Leaf i belongs to the sub-groups G_j(i) of the leaves that share its ancestor at depth j:
    the root group (j = 0: every leaf of the prompt, ``group_b``) and, for each depth d, the
    leaves whose ``node_bd[:, d]`` equals its own within the group (rows of a group are
    ``[k·L, (k+1)·L)``, L = ``group_size``). Sub-groups of one leaf below the root (a leaf's own
    last segment) carry no comparison and are left out, as in the paper's code. With
    A_ij = R_i − mean_{G_j(i)} R over the kept sub-groups J_i:

        "average" (Eq. 5, the paper's choice):    A_i = Σ_j A_ij / |J_i|
        "size"    (Eq. 6, sub-group size weights): A_i = Σ_j |G_j| A_ij / Σ_j |G_j|

    The paper's division by a standard deviation is the global normalization of
    REINFORCE++ (``whiten_advantage`` in the noun), applied after this. Returns A [B].
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"tree advantage: weighting={weighting!r}; use one of {WEIGHTINGS}")
    b, depth = node_bd.shape
    groups = b // group_size

    def term(key_b, keep_b, num):
        count = jax.ops.segment_sum(keep_b.astype(reward_b.dtype), key_b, num_segments=num)[key_b]
        mean = jax.ops.segment_sum(jnp.where(keep_b, reward_b, 0), key_b, num_segments=num)[key_b] / jnp.maximum(count, 1)
        weight = jnp.where(keep_b, 1.0 if weighting == "average" else count, 0.0)
        return weight * (reward_b - mean), weight

    num, den = term(group_b, jnp.ones((b,), bool), groups)
    for d in range(depth):
        node = node_bd[:, d]
        key = jnp.where(node >= 0, group_b * group_size + node, b)  # b: rows that ended before depth d + 1
        shared = jax.ops.segment_sum(jnp.ones((b,)), key, num_segments=b + 1)[key] >= 2
        a, w = term(key, (node >= 0) & shared, b + 1)
        num, den = num + a, den + w
    return num / den


def tree_advantage(*, weighting: str = "average") -> Transform:
    """``subgroup_advantages`` of ``reward_b`` over the tree in ``aux["tree_node_bd"]``,
    broadcast over the row's tokens (prepare transform; the tree comes from the tree collector).
    Rows not sampled in the tree (``source_b`` other than on-policy: expert rows appended by
    ``with_expert_rows``, whose node entries are padding) join their group at the root only."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"tree_advantage: weighting={weighting!r}; use one of {WEIGHTINGS}")

    def fn(batch: Batch) -> Batch:
        batch.require("reward_b", "group_b", by="tree_advantage")
        batch.require_aux(FIELD, by="tree_advantage", provider=PROVIDER)
        node = batch.aux[FIELD]
        if node.ndim != 2 or batch.batch_size % batch.group_size:
            raise ValueError(f"tree_advantage: aux[{FIELD!r}] has shape {node.shape} for {batch.batch_size} rows in groups "
                             f"of {batch.group_size}; it needs [rows, depth] from {PROVIDER}")
        if batch.source_b is not None:  # rows appended to the tree (expert, replay) hang at its root only
            node = jnp.where((batch.source_b == ON_POLICY)[:, None], node, -1)
        adv_b = subgroup_advantages(batch.reward_b, batch.group_b, node, batch.group_size, weighting)
        return batch.replace(adv_bt=adv_b[:, None] * batch.mask_bt)

    return stateless(fn)


def treepo(
    *,
    weighting: str = "average",
    eps_low: float = 0.2,
    eps_high: float = 0.28,
    filter_zero_variance: bool = True,
    **options,
) -> Algorithm:
    """TreePO (Li et al. 2025, "TreePO: Bridging the Gap of Policy Optimization and Efficacy and
    Inference Efficiency with Heuristic Tree-based Modeling", arXiv 2508.17445), §2.3.

    On the leaves of a tree rollout (``polrl.collectors.tree``, named by the config:
    ``collector = "tree"``), with DAPO's objective:

        A_i   = Σ_{j∈J_i} (R_i − mean_{G_j(i)} R) / |J_i|           (``subgroup_advantages``)
        Â_i   = (A_i − mean A) / std A                              (over the batch's valid tokens)
        L     = Σ_{i,t} max(−Â_i ρ_i,t, −Â_i clip(ρ_i,t, 1−ε_low, 1+ε_high)) / Σ_i |o_i|

    s.t. 0 < #correct < G: prompts whose leaves all score the same are masked out
    (``filter_zero_variance``; the paper resamples them away, DAPO's dynamic sampling). Defaults
    are the paper's: ε_low = 0.2, ε_high = 0.28, token-mean loss, no KL, lr 1e-6, mean pooling over
    sub-groups (``weighting="size"`` is its Eq. 6 variant). The global normalization is
    REINFORCE++'s whitening over the batch (the paper cites it for its Eq. 5 denominator).

    Other keywords: see ``pg_algorithm``.
    """
    check_options("treepo", options)
    prepare = [tree_advantage(weighting=weighting)]
    if filter_zero_variance:
        prepare.append(advantages.drop_zero_variance_groups())
    return pg_algorithm(prepare, objectives.clipped_policy_gradient(eps_low=eps_low, eps_high=eps_high),
                        whiten=True, **options)
