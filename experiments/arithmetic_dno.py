"""DNO (Direct Nash Optimization, practical DNO-Prct) on embedded arithmetic: iterated DPO, each
iteration against the previous iterate.

"Direct Nash Optimization: Teaching Language Models to Self-Improve with General Preferences"
(Rosset et al. 2024, arXiv 2404.03715). For t = 1..T: sample K responses per prompt from π_t,
rank them together with the gold (teacher) response by the annotator, keep the best and the worst
as a pair when their margin is large, and train

    π_{t+1} = argmax_π  E log σ( η [log π(y⁺|x)/π_t(y⁺|x) − log π(y⁻|x)/π_t(y⁻|x)] ),

DPO's loss with π_t as the reference. There is no `dno` noun: DNO is the `dpo` noun (the same
loss, η = DPO's β) + the `preference_pairs` collector sampling from the phase's reference
(`policy="reference"`, i.e. π_t) with `gold=True` and `margin` + one `config.phases` entry per
iteration; each phase starts from the previous phase's final parameters, which become its
reference, so iteration t samples from and is anchored to π_t.

Launch:
  python -m polrl.launch --config experiments/arithmetic_dno.py --workdir /tmp/polrl/arithmetic_dno
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_dno.py:smoke --workdir /tmp/polrl/dno_smoke

Recipe: the arithmetic_grpo warm start; T = 3 iterations (phases dno_1, dno_2, dno_3) splitting
total_steps (3000 here; a benchmark that sets total_steps = 600 runs 200 + 200 + 200: the
iteration lengths are references to total_steps, the last one taking the remainder). Each step
samples 8 answers for each of 32 prompts from π_t, ranks them and the prompt's gold answer with the
exact-match verifier, pairs the best with the worst; margin 1.0 keeps only right-vs-wrong pairs
(with a 0/1 verifier every untied pair has margin 1, so the filter drops exactly the ties; with a
graded annotator, e.g. config.reward_model, it drops the small margins). β = 0.1, lr 3e-4 (the
arithmetic_dpo recipe). The gold answer is chosen only for prompts none of whose samples is right:
those pairs (teacher vs student) are where the plain arithmetic_dpo recipe gets a tie.

INFERRED: the paper samples each iteration's pairs once from π_t and trains on that data set;
here each iteration is a fixed number of steps, every step sampling fresh prompts of the train
split (in the iteration's own order) from the frozen π_t, which draws from the same distribution
(batched on-policy: the sampler is π_t, not the policy being trained). The paper's annotator is an LLM judge (GPT-4);
here the verifier (or a reward model) scores, so the margin threshold is on that score.

<!-- report: preference.dno -->
Expected result (benchmarks/preference.md, written by `python benchmarks/preference.py` from
benchmarks/results/preference.jsonl; CPU AMD EPYC; held-out greedy exact match on 500 prompts, the
mean of a run's last 3 evaluations; every arm of a seed from the same SFT warm start; 600 steps;
mean ± std over 3 seeds (0, 1, 2), three iterations of a third each): SFT warm start 30.9 ± 3.9% →
48.0 ± 5.0% (one DPO iteration on the warm model's pairs, the same steps: 38.5 ± 4.0%; one iteration
with the same gold answers and margin: 52.0 ± 6.6%; on the current policy's pairs: 56.0 ± 4.2%).
<!-- /report -->

What it shows: per iteration, pairs_kept (the fraction of prompts whose pair carries a preference;
it falls as π_t improves and fewer prompts have a wrong sample), pref_accuracy / pref_margin against
π_t, and the held-out greedy accuracy (eval/accuracy) at the end of each iteration beside the warm
start's.
"""
import ml_collections

from experiments import arithmetic_grpo

ITERATIONS = 3


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_grpo.get_config(arg)
    c.algorithm = "dpo"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(beta=0.1, learning_rate=c.algorithm_kwargs.learning_rate))
    c.collector = "preference_pairs"
    c.collector_kwargs = ml_collections.ConfigDict(dict(policy="reference", gold=True, margin=1.0))
    # Iteration lengths follow total_steps (references resolved when the spec is built).
    per = c.get_ref("total_steps") // ITERATIONS
    last = c.get_ref("total_steps") - (ITERATIONS - 1) * per
    c.phases = [ml_collections.ConfigDict(dict(name=f"dno_{t}", steps=per if t < ITERATIONS else last))
                for t in range(1, ITERATIONS + 1)]
    return c
