"""Collectors: how each training step's Batch is acquired, composable like transforms.

A base collector is built from the run's ``Context`` (``factory(ctx, **kwargs)``, named in a
config by ``config.collector``); a wrapper is ``(collector, ctx) -> collector`` and adds data to
whatever it wraps (an algorithm names the wrappers its method needs in ``Algorithm.collector``).

Base: ``demonstrations`` (labelled answers, SFT), ``group_samples`` (G samples per prompt,
scored by the verifier), ``preference_pairs`` (best vs worst of G samples).
Wrappers: ``with_expert_rows`` (labelled answers in every group: CHORD, RL-PLUS),
``dynamic_sampling`` (DAPO), ``with_greedy_baseline`` (ReMax), ``with_replay`` (ReMix),
``stale`` (rows from the policy of k updates ago: staleness as a controlled variable, the
config's ``staleness``).
"""
from polrl.collectors.context import Context
from polrl.collectors.demonstrations import demonstration_batch, demonstrations
from polrl.collectors.dynamic_sampling import dynamic_sampling, keep_informative_groups
from polrl.collectors.expert_rows import with_expert_rows
from polrl.collectors.greedy_baseline import with_greedy_baseline
from polrl.collectors.group_samples import group_samples, rollout_metrics
from polrl.collectors.preference_pairs import best_and_worst, preference_pairs
from polrl.collectors.replay import with_replay
from polrl.collectors.stale import stale
from polrl.collectors.tree import tree
from polrl.collectors.turns import turns

__all__ = [
    "Context",
    "best_and_worst",
    "compose",
    "demonstration_batch",
    "demonstrations",
    "dynamic_sampling",
    "group_samples",
    "keep_informative_groups",
    "preference_pairs",
    "rollout_metrics",
    "stale",
    "tree",
    "turns",
    "with_expert_rows",
    "with_greedy_baseline",
    "with_replay",
]


def compose(*wrappers):
    """One wrapper applying ``wrappers`` in order (the first wraps the base collector)."""

    def wrap(collector, ctx):
        for w in wrappers:
            collector = w(collector, ctx)
        return collector

    return wrap
