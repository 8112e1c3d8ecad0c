"""PPO with a value head on the long chain task: the baseline of ``chain_long_tppo``.

The task, model, SFT warm start, prompts (16 × 8 samples per step) and generation budget (160
tokens) of ``experiments/chain_long_grpo.py``, with PPO (Schulman et al. 2017) on complete
responses: a scalar value head on the policy's last hidden state (zero-initialised on the warm
model), token-level GAE (γ = 1, λ = 0.95) of the final-answer reward, value targets G_t = Â_t +
V_t, clip 0.2 with dual clip 3, clipped value loss (coefficient 0.5, clip 0.2), β = 0,
``token_mean``. Settings shared with ``chain_long_tppo`` so that the two differ only in how
responses are generated and credited: lr 1e-4, one update per batch (as chain_long_grpo: π_old =
π_θ, the clip inactive), advantages not whitened (``chain_long_tppo``'s docstring says why), and
the critic optimized apart from the policy (``critic_learning_rate=1e-3``,
``algorithms.policy_gradient.separate_critic``): the value loss trains the value head alone, on
the trunk's hidden states under stop_gradient, with its own AdamW at 1e-3, and never moves the
policy. With the value loss reaching the shared trunk (the default; this recipe's earlier form,
whose 3-seed records are kept in benchmarks/results/guided_tppo_shared_critic.jsonl) the policy's
token entropy rose over every run and its sampled accuracy fell, in both arms and most in T-PPO's,
whose Monte-Carlo value targets leave an error no critic can remove (the reward's own variance).

Launch (CPU):
  python -m polrl.launch --config experiments/chain_long_ppo.py --workdir runs/chain_long_ppo
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/chain_long_ppo.py:smoke --workdir /tmp/polrl/chain_long_ppo_smoke

<!-- report: guided.tppo_ppo -->
Expected result (benchmarks/guided.md, from `python benchmarks/guided_tppo.py --steps 100
--eval_every 25`; raw: benchmarks/results/guided_tppo.jsonl; CPU AMD EPYC; 100 steps of
chain_long_tppo.py and of chain_long_ppo.py from each seed's SFT warm start, 3 seeds (0, 1, 2);
held-out greedy exact match of the final answer on 500 prompts, each run's mean of its last 3
evaluations): warm start 73.5 ± 12.2% → T-PPO 82.4 ± 2.2%, PPO 91.6 ± 6.0% (paired differences
-14.3, -11.8, -1.5 points). Training time (the steps' collect + update, evaluations excluded): T-PPO
182 ± 5 s, PPO 207 ± 12 s; responses finished per step: 55.7 ± 0.6 and 128.0 ± 0.0.
<!-- /report -->
"""
import ml_collections

from experiments import chain_long_grpo

# shared with chain_long_tppo: the PPO part of both recipes
PPO_KWARGS = dict(learning_rate=1e-4, critic_learning_rate=1e-3, num_epochs=1, num_minibatches=1, lambda_=0.95,
                  whiten=False)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = chain_long_grpo.get_config(arg)
    c.algorithm = "ppo"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(PPO_KWARGS))
    return c
