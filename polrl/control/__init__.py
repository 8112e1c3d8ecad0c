"""Classic control on vectorized gymnax environments, with the shared transforms.

``envs`` (vectorized gymnax with auto-reset and truncation), ``policies`` (NNX actor-critic),
``rollout`` (scan over steps of vmapped envs), ``batch`` (``ControlBatch``: the shared ``Batch``
for transitions), ``algorithms`` (nouns: ``ppo``, ``mdpo``), ``train`` (``make_train``: one jitted
run, vmappable over seeds and hyper-parameters), ``props`` (PROPS: adaptive behaviour policy),
``sampling_error``, ``experiment`` (``run(config, workdir)``, the launcher's entry).
"""
from polrl.control import algorithms, envs, policies, rollout
from polrl.control.batch import ControlBatch
from polrl.control.experiment import run
from polrl.control.props import make_train_props
from polrl.control.train import make_train

__all__ = ["ControlBatch", "algorithms", "envs", "make_train", "make_train_props", "policies", "rollout", "run"]
