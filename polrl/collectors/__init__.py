"""Collectors: how each training step's Batch is acquired, composable like transforms.

A base collector is built from the run's ``Context`` (``factory(ctx, **kwargs)``, named in a
config by ``config.collector``); a wrapper is ``(collector, ctx) -> collector`` and adds data to
whatever it wraps (an algorithm names the wrappers its method needs in ``Algorithm.collector``).

Base: ``demonstrations`` (labelled answers, SFT), ``group_samples`` (G samples per prompt,
scored by the verifier), ``preference_pairs`` (best vs worst of G samples), ``offline_pairs`` /
``offline_unpaired`` (a fixed preference data set: pairs, or labelled completions for KTO),
``checkpoint_pool`` (SePPO: the labelled answer against a sample of a pool of earlier checkpoints).
``revised_pairs`` (OPA-DPO: the policy's own response and its minimal revision, as a pair).
``mcts_pairs`` (MCTS-DPO: step-level pairs, highest- vs lowest-Q child of each node of a tree search).
``step_labels`` (Math-Shepherd: the reference's samples with Monte-Carlo labels of their steps, for a PRM).
``dialogue_tree`` (DialTree-RPO: an attacker's dialogues with a frozen target model, branched at every turn and pruned).
``hinted_groups`` (GHPO: ``group_samples`` with ``with_hints``, the beginning of the labelled answer after the prompts no sample solves).
``label_guided_groups`` (GHPO's label control: ``group_samples`` with ``with_unsolved_labels``, the labelled answer in place of k samples of the groups no sample solves).
``masked_groups`` (NLPO: G samples per prompt under the top-p nucleus of a delayed copy of the policy, the mask kept per token).
``partial_groups`` (T-PPO's partial rollouts: G samples per prompt drawn W tokens per step, unfinished rows continued from their cache).
Wrappers: ``with_expert_rows`` (labelled answers in every group: CHORD, RL-PLUS),
``with_judge_rows`` (SPARK: the step's samples recycled into judge rows for the same model),
``with_self_judge`` (the policy's own verdict π("y" | x ++ y ++ " ok?") as the reward),
``dynamic_sampling`` (DAPO), ``with_greedy_baseline`` (ReMax), ``with_replay`` (ReMix),
``stale`` (rows from the policy of k updates ago: staleness as a controlled variable, the
config's ``staleness``), ``with_score_position`` (rows one column wider, where a reward model
reads r(x, y): the ``reward_model`` noun), ``with_reward_model`` (a frozen reward model's score as
the reward: RLHF, the config's ``reward_model``), ``with_density_ratio`` (CDR: the log density
ratio of a strong over a weak frozen policy as the reward, the config's ``density_ratio``),
``with_distributional_reward`` (DRAGON: each group scored as a set against exemplar sets, the
leave-one-out change of the set score as each sample's reward: the ``dragon`` noun),
``with_reward_goals`` (RA-DPO: each pair relabelled into two goal-conditioned pairs: the ``ra_dpo`` noun).
``with_teacher_logits`` (a frozen teacher's logits at every response position) and ``with_student_fraction``
(the student's samples with probability λ, else the teacher's): GKD, the ``gkd`` noun.
``with_distilled_corpus`` (DED: the student's samples replaced by several distinct right answers of the teacher whose quick distillation helps the student most: the ``ded`` noun).
``with_multi_guidance`` (AMPO: up to k solutions of a pool of frozen teachers, ranked by the policy's comprehension, in the groups no sample solves: the ``ampo`` noun).
``with_instruction_population`` (INSPO: every question under an instruction drawn from a scored population the policy prunes and refills from its failures: the ``inspo`` noun).
``with_borrowed_reasoning`` (SOPHIA: a frozen teacher's reasonings continued by the policy, the reasoning credited with the mean outcome of its continuations: the ``sophia`` noun).
``with_detectability_penalty`` (CT²: the reward minus λ · a detector's score of the response under a frozen scorer, the config's ``detect_penalty``).

A collector that reads another model than the policy takes the model's name (a run's frozen
models are ``Context.models`` / ``PolicyState.models``, from ``config.models``; "reference" is the
phase's reference) and reads it with ``context.named_model``.
"""
from polrl.collectors.checkpoint_pool import checkpoint_pool
from polrl.collectors.action_mask import masked_groups
from polrl.collectors.context import Context, NamedModel
from polrl.collectors.density_ratio import with_density_ratio
from polrl.collectors.detectability_penalty import with_detectability_penalty
from polrl.collectors.distributional_reward import with_distributional_reward
from polrl.collectors.distilled_corpus import with_distilled_corpus
from polrl.collectors.demonstrations import demonstration_batch, demonstrations
from polrl.collectors.dynamic_sampling import dynamic_sampling, keep_informative_groups
from polrl.collectors.expert_rows import with_expert_rows
from polrl.collectors.greedy_baseline import with_greedy_baseline
from polrl.collectors.hints import hinted_groups, with_hints
from polrl.collectors.unsolved_labels import label_guided_groups, with_unsolved_labels
from polrl.collectors.instruction_population import with_instruction_population
from polrl.collectors.multi_guidance import with_multi_guidance
from polrl.collectors.semi_off_policy import with_borrowed_reasoning
from polrl.collectors.judge_rows import with_judge_rows, with_self_judge
from polrl.collectors.offline_pairs import offline_pairs, offline_unpaired
from polrl.collectors.partial_rollouts import partial_groups
from polrl.collectors.group_samples import group_samples, rollout_metrics
from polrl.collectors.mcts_pairs import mcts_pairs
from polrl.collectors.preference_pairs import best_and_worst, preference_pairs
from polrl.collectors.replay import with_replay
from polrl.collectors.revised_pairs import revised_pairs
from polrl.collectors.reward_goals import with_reward_goals
from polrl.collectors.reward_model import with_reward_model
from polrl.collectors.score_position import with_score_position
from polrl.collectors.stale import stale
from polrl.collectors.student_fraction import with_student_fraction
from polrl.collectors.teacher_logits import with_teacher_logits
from polrl.collectors.step_labels import step_labels
from polrl.collectors.step_candidates import step_candidates
from polrl.collectors.tree import tree
from polrl.collectors.dialogue_tree import dialogue_tree
from polrl.collectors.turns import turns

__all__ = [
    "Context",
    "NamedModel",
    "best_and_worst",
    "checkpoint_pool",
    "compose",
    "demonstration_batch",
    "demonstrations",
    "dialogue_tree",
    "dynamic_sampling",
    "group_samples",
    "hinted_groups",
    "keep_informative_groups",
    "label_guided_groups",
    "masked_groups",
    "mcts_pairs",
    "offline_pairs",
    "offline_unpaired",
    "partial_groups",
    "preference_pairs",
    "revised_pairs",
    "rollout_metrics",
    "stale",
    "step_labels",
    "step_candidates",
    "tree",
    "turns",
    "with_density_ratio",
    "with_detectability_penalty",
    "with_distributional_reward",
    "with_distilled_corpus",
    "with_expert_rows",
    "with_greedy_baseline",
    "with_hints",
    "with_instruction_population",
    "with_judge_rows",
    "with_borrowed_reasoning",
    "with_multi_guidance",
    "with_replay",
    "with_reward_goals",
    "with_reward_model",
    "with_score_position",
    "with_self_judge",
    "with_student_fraction",
    "with_teacher_logits",
    "with_unsolved_labels",
]


def compose(*wrappers):
    """One wrapper applying ``wrappers`` in order (the first wraps the base collector)."""

    def wrap(collector, ctx):
        for w in wrappers:
            collector = w(collector, ctx)
        return collector

    return wrap
