"""DialTree-RPO on the target-says task: an attacker learns to make a frozen arithmetic model say a number.

DialTree-RPO ("Tree-based Dialogue Reinforced Policy Optimization for Red-Teaming Attacks", arXiv
2510.02286) on a synthetic red-teaming task (``polrl.tasks.target_says``): a goal "17:?9?" asks
the attacker (the policy) to make the target say 17 with an expression "b+9+c="; the target is
the frozen SFT warm start of experiments/arithmetic_grpo.py (sums of three one-digit numbers),
which reads the attacker's turn as its prompt and replies with a number; the judge is the rule
reply = X. The attacker sees each reply and may try again, up to 3 turns.

Recipe:
  1. Cold start: SFT of the attacker on 2000 labelled goals (one right expression each), 500 steps.
  2. DialTree-RPO: each step 8 train goals, a dialogue tree per goal (``dialogue_tree``: 3 turns,
     4 children per live dialogue, per parent the 2 best-scored children go on, at most 4 live
     dialogues; malformed or off-goal turns end their dialogue), the ``dialtree_rpo`` loss (GRPO
     over each goal's dialogues, the adaptive mask on the format tokens "+" and "="), lr 3e-4,
     k3 KL β = 0.01 to the cold start.
  The paper's comparison without the tree is ``get_config("no_tree")``: the same attacker, noun
  and target with 9 independent 3-turn dialogues per goal (27 target calls at most, against the
  tree's 28; ``dialogue_tree.max_target_calls``).
Models: attacker and target as experiments/arithmetic_grpo.py's (2 layers, d_model 128).

Launch (after training the target with the launch command of experiments/arithmetic_grpo.py,
which writes runs/arithmetic_grpo/checkpoints/sft_warmup):
  python -m polrl.launch --config experiments/target_says_dialtree_rpo.py --workdir runs/target_says_dialtree_rpo
Smoke (seconds, run by the test suite; its target is the committed smoke checkpoint
experiments/data/arithmetic_cdr_smoke/weak, an SFT warm start of experiments/arithmetic_grpo.py:smoke):
  python -m polrl.launch --config experiments/target_says_dialtree_rpo.py:smoke --workdir /tmp/polrl/dialtree_smoke

<!-- report: guided.dialtree_rpo -->
Expected result (benchmarks/guided.md, from `python benchmarks/guided_dialtree.py`; raw:
benchmarks/results/guided_dialtree.jsonl; CPU AMD EPYC; both arms 300 steps from the same cold start
and target, 3 seeds (0, 1, 2)): held-out success of the greedy attacker without a tree (one dialogue
of up to 3 turns on each of the 103 held-out goals): cold start 31.1 ± 8.9%, DialTree-RPO 13.9 ±
8.5%, no tree 28.2 ± 9.3%; first-turn success 13.9 ± 8.5% and 28.2 ± 9.3%. Target calls per goal and
step: 2.5 with the tree, 7.0 without (at most 28 and 27).
<!-- /report -->

When held-out success equals first-turn success, the greedy attacker never succeeds after its
first turn; the tree's mean target calls fall below its maximum because pruning by format ends most
branches early. The
trainer's own eval/accuracy is the attacker's first turn scored against a perfect target (an
expression of the goal's pattern whose exact value is X), not the success against this target.
"""
import pathlib

import ml_collections

from experiments import arithmetic_grpo
from polrl.tasks import CharTokenizer

SMOKE_TARGET = pathlib.Path(__file__).resolve().parent / "data" / "arithmetic_cdr_smoke" / "weak"
TREE = dict(target="target", max_turns=3, branch=4, width=4, top_k=2)
NO_TREE = dict(target="target", max_turns=3, branch=1, width=9, top_k=9, init_branches=9)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    smoke = arg in ("smoke", "no_tree_smoke")
    if arg not in (None, "", "smoke", "no_tree", "no_tree_smoke"):
        raise ValueError(f"unknown config arg {arg!r}; use '', 'smoke', 'no_tree' or 'no_tree_smoke'")
    target = arithmetic_grpo.get_config("smoke" if smoke else None)
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.total_steps = 300
    c.eval_every = 50
    c.checkpoint_every = 100
    c.log_every = 1

    c.task = ml_collections.ConfigDict(dict(name="target_says", data_dir="", num_train=5_000, num_test=500,
                                            test_fraction=0.2, seed=0))
    c.model = ml_collections.ConfigDict(target.model.to_dict())
    c.demos = ml_collections.ConfigDict(dict(num=2_000, batch_size=64))
    c.warmup = ml_collections.ConfigDict(dict(steps=500, learning_rate=2e-3))
    c.models = ml_collections.ConfigDict(dict(target=dict(
        path="runs/arithmetic_grpo/checkpoints/sft_warmup", model=target.model.to_dict(), value_head=False)))

    c.algorithm = "dialtree_rpo"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(learning_rate=3e-4, kl_coef=0.01,
                                                        format_tokens=CharTokenizer().encode("+=")))
    c.collector = "dialogue_tree"
    c.collector_kwargs = ml_collections.ConfigDict(NO_TREE if arg in ("no_tree", "no_tree_smoke") else TREE)
    c.rollout = ml_collections.ConfigDict(dict(batch_size=8, group_size=1, max_new_tokens=0, temperature=1.0,
                                               top_k=0, top_p=1.0))
    c.eval = ml_collections.ConfigDict(dict(num_examples=500, batch_size=250))
    c.mesh = ml_collections.ConfigDict(dict(data=1, fsdp=1, tensor=1, expert=1))
    c.guards = ml_collections.ConfigDict(dict(max_nonfinite_steps=5))

    if smoke:
        c.total_steps = 3
        c.eval_every = 2
        c.checkpoint_every = 2
        c.demos.update(num=64, batch_size=16)
        c.warmup.steps = 3
        c.task.update(num_train=500, num_test=100)
        c.rollout.batch_size = 2
        c.eval.update(num_examples=32, batch_size=32)
        c.models.target.path = str(SMOKE_TARGET)
    return c
