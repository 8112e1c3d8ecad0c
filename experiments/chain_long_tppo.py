"""T-PPO on the long chain task: responses generated 32 tokens per step and trained on as they grow.

"Truncated Proximal Policy Optimization" (arXiv 2506.15050) on the recipe of
``experiments/chain_long_ppo.py`` (the chain_long_grpo task, model, warm start, 16 prompts × 8
samples and 160-token budget; value head optimized apart from the policy at lr 1e-3, γ = 1, clip
0.2 with dual clip 3, clipped value loss, lr 1e-4, one update per batch). What T-PPO changes:

* partial rollouts (``collectors.partial_groups``): each step draws at most 32 tokens of every
  running response; a response unfinished at the window's end keeps its KV cache and continues at
  the next step with the updated policy; a group of 8 takes a new prompt once all its samples have
  finished;
* Extended GAE: each step trains the policy on the tokens just drawn; a response that finished
  this step is credited with its reward, one still running bootstraps from the value head at the
  window's end; λ = 1 (PPO keeps 0.95): Â_t = V(s_{e+1}) − V(s_t) on a running response's window,
  R − V(s_t) on its last (λ = 0.95 credits every token of a window through the critic's values at
  the tokens after it; in a single-seed trial without the correction it lost accuracy sooner);
* the value head trains on the finished responses only, every token of them, towards Monte-Carlo
  returns (λ_v = 1);
* the sampler/trainer correction ``token_truncate`` (TIS): a window after a response's first was
  drawn over keys and values cached by earlier policies, so its sampler log-probs μ differ from
  π_old = π_θ recomputed over the whole prefix; each token's advantage is weighted by
  min(π_old/μ, 2). PPO's complete responses are drawn by one policy (ρ = 1 up to rounding), so
  its recipe has none.

What the records show (benchmarks/guided.md, its ablation table): the recipe's three parts each
matter. With the value loss through the shared trunk (the first form of this comparison) the
token entropy of both arms rose over the run, T-PPO's most. With the critic apart but no
correction, T-PPO's runs gained at their first evaluation and then lost it and more, seed 0's
responses growing towards the budget: the windows of running responses take their credit from the
critic, V(s_{e+1}) − V(s_t), on tokens drawn over another policy's cache. With the correction
(this config) T-PPO's entropy stays flat and its accuracy stays near or above its warm start,
still below PPO's on every seed.

Advantages are not whitened (in both recipes): until the zero-initialised value head has learnt,
the windows of running responses get advantages near 0 and whitening would shift all of them by
the batch mean.

Where the time goes: a step draws at most 32 tokens per row instead of the longest response, but
its update still runs the policy over every row's whole response so far at the static width of
the budget (the window's tokens are selected by the mask, not cut out), as PPO's does; the paper's
second saving, computing only the window's tokens in the update, is not made here. So a T-PPO step
saves generation only, and each response needs about two steps.

Launch (CPU):
  python -m polrl.launch --config experiments/chain_long_tppo.py --workdir runs/chain_long_tppo
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/chain_long_tppo.py:smoke --workdir /tmp/polrl/chain_long_tppo_smoke

<!-- report: guided.tppo -->
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

from experiments import chain_long_ppo

WINDOW = 32  # tokens drawn per response and step, of the 160-token budget


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = chain_long_ppo.get_config(arg)
    c.algorithm = "tppo"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(chain_long_ppo.PPO_KWARGS, lambda_=1.0, value_lambda=1.0,
                                                        correction="token_truncate"))
    c.collector = "partial_groups"
    c.collector_kwargs = ml_collections.ConfigDict(dict(window=WINDOW, values=True))
    return c
