"""Classic control on vectorized gymnax environments, with the shared transforms.

``envs`` (vectorized gymnax with auto-reset and truncation), ``policies`` (NNX actor-critic),
``rollout`` (scan over steps of vmapped envs), ``batch`` (``ControlBatch``: the shared ``Batch``
for transitions), ``algorithms`` (nouns: ``ppo``, ``mdpo``), ``sampling_error``.

Trainer modules, each with ``make_run(config) -> seeds.Run`` (a config picks one with
``config.run``): ``train`` (on-policy PPO / MDPO: one jitted run, vmappable over seeds and hyper-
parameters; ``make_train``), ``props`` (PROPS: adaptive behaviour policy), ``marl`` (MAPPO / IPPO),
``volleyball`` (a two-team court game, MAPPO / IPPO / self-play), ``relic`` (in-context RL with
partial updates), ``unio4`` (offline then online), ``hnpg`` (hybrid NPG), ``pgd`` (policy-guided
trajectory diffusion as offline data). ``experiment.run(config, workdir)`` is the launcher's entry.
"""
from polrl.control import algorithms, envs, policies, rollout
from polrl.control.batch import ControlBatch
from polrl.control.experiment import run
from polrl.control.train import make_train

__all__ = ["ControlBatch", "algorithms", "envs", "make_train", "policies", "rollout", "run"]
