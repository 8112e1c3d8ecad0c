"""polrl: policy optimization across the on-policy ↔ off-policy spectrum, in JAX.

The core contract (``PolicyState``, ``Batch``, ``Transform``, ``chain``, ``named_chain``,
``Algorithm``, ``Collector``) is re-exported here; kernels live in ``polrl.ops``, transforms in
``polrl.advantages`` / ``polrl.objectives``, algorithm nouns in ``polrl.algorithms``, collectors
in ``polrl.collectors``, the rollout engine in ``polrl.rollout``.
"""
from polrl import advantages, algorithms, objectives, ops
from polrl.core import EXPERT, ON_POLICY, REPLAY, Algorithm, Batch, Collector, PolicyState, Transform, chain, named_chain, stateless, total_loss

__all__ = [
    "EXPERT",
    "ON_POLICY",
    "REPLAY",
    "Algorithm",
    "Batch",
    "Collector",
    "PolicyState",
    "Transform",
    "advantages",
    "algorithms",
    "chain",
    "named_chain",
    "objectives",
    "ops",
    "stateless",
    "total_loss",
]
__version__ = "0.1.0"
