"""Light-R1's curriculum on embedded arithmetic: SFT stage 1 → SFT stage 2 on the hard subset → DPO
on hard prompts → GRPO, one run of `config.phases`.

"Light-R1: Curriculum SFT, DPO and RL for Long COT from Scratch and Beyond" (Wen et al. 2025,
arXiv 2503.10460). Its stages: SFT stage 1 on ~76k problems whose DeepSeek-R1 responses were
verified and whose difficulty — the pass rate of a reference model (DeepScaleR-1.5B-Preview)
sampled on each problem — passed a filter; SFT stage 2 on ~3k harder problems, mostly a subset
of stage 1's; DPO on top of stage 2 with pairs from the stage-2 model's own samples: chosen = a
verified correct response (DeepSeek-R1's), rejected = the model's incorrect one,

    L_DPO = −E log σ( β [log π(y⁺|x)/π_ref(y⁺|x) − log π(y⁻|x)/π_ref(y⁻|x)] ),  π_ref = the stage-2 model;

then GRPO (group-normalized advantages Â_i = (r_i − mean r)/std r over G samples of a prompt,
exact-match reward) to improve further.

Here each stage is a phase, started from (and anchored to) the previous phase's final parameters:
  sft_warmup   SFT stage 1: the arithmetic_grpo warm start (300 demos, 200 steps of 64).
  sft_stage2   SFT on the hard demos (`difficulty.min = 2`: answers of two digits, the sums that
               carry), total_steps // 10 steps, batch demos.batch_size, the warm-up's lr.
  dpo          DPO (β = 0.1, lr 3e-4: the arithmetic_dpo recipe) on hard train prompts;
               `preference_pairs(policy="reference", gold=True)`: 8 samples per prompt from the
               frozen stage-2 model (the phase's reference), plus the prompt's labelled answer as
               a last candidate, ranked by the exact-match verifier; the pair is the best (a right
               sample, or the labelled answer when no sample is right) against the worst (a wrong
               sample); a prompt whose samples are all right gives a tie, which DPO ignores.
               total_steps // 5 steps of 32 prompts.
  grpo         the arithmetic_grpo main phase (lr 3e-4, k3 KL β = 0.01 to the phase's reference,
               i.e. the DPO model, zero-variance groups masked out) on every train prompt, the
               remaining total_steps − total_steps // 10 − total_steps // 5 steps.
The phase lengths are references to total_steps (resolved when the spec is built), so a
benchmark that sets total_steps = 600 runs 60 + 120 + 420 main-phase steps, GRPO's 600-step
budget after the same warm start.

INFERRED: difficulty is the task's `polrl.tasks.arithmetic.difficulty` (the answer's digit count),
standing in for the paper's pass rate of a reference model: it needs no model, and for these sums
of three one-digit operands two-digit answers are the problems that need a carry. The paper's
stage-2 size (~4% of stage 1) is not reproduced: the hard subset is every demo with a two-digit
answer. The paper's chosen responses are DeepSeek-R1's verified ones; here the labelled answer
stands in for the teacher, and a right sample of the model is chosen instead when one exists
(DNO's gold candidate). The pairs are drawn each step from the frozen stage-2 model on fresh hard
prompts rather than once as a data set (the same distribution). The stage-2 learning rate equals
stage 1's. The paper runs GRPO on another model (Light-R1-14B-DS, a distilled model fine-tuned on
the stage-2 data), not after its DPO model; chaining all four stages in one run, with GRPO on every
train prompt (no offline pass-rate filter; zero-variance masking drops the prompts the policy
always or never solves), is this experiment's composition.

Launch:
  python -m polrl.launch --config experiments/arithmetic_light_r1.py --workdir /tmp/polrl/arithmetic_light_r1
Smoke (run by the test suite):
  python -m polrl.launch --config experiments/arithmetic_light_r1.py:smoke --workdir /tmp/polrl/light_r1_smoke

<!-- report: preference.light_r1 -->
Expected result (benchmarks/preference.md, written by `python benchmarks/preference.py` from
benchmarks/results/preference.jsonl; CPU AMD EPYC; held-out greedy exact match on 500 prompts, the
mean of a run's last 3 evaluations; every arm of a seed from the same SFT warm start; 600 steps;
mean ± std over 3 seeds (0, 1, 2), of which SFT stage 2, DPO and GRPO take a tenth, a fifth and the
rest): SFT warm start 30.9 ± 3.9% → 70.5 ± 4.3% (GRPO alone for the same steps: 58.9 ± 3.2%; DPO
with the same gold answers, one phase: 52.0 ± 6.6%; SFT on the train split's labelled answers: 83.0
± 4.1%).
<!-- /report -->

What it shows: the held-out greedy accuracy (eval/accuracy) at the end of each phase beside the warm
start's, DPO's pairs_kept (the fraction of hard prompts with a wrong sample) and pref_accuracy, and
GRPO's reward.
"""
import ml_collections

from experiments import arithmetic_grpo

HARD = 2  # arithmetic.difficulty: the answer's digit count; 2 = a sum that carries
SFT_STAGE2_DIVISOR = 10  # sft_stage2 runs total_steps // 10 steps
DPO_DIVISOR = 5  # dpo runs total_steps // 5 steps; grpo the rest


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = arithmetic_grpo.get_config(arg)
    if arg == "smoke":
        c.total_steps = 10  # 1 + 2 + 7: every phase runs
    total = c.get_ref("total_steps")
    sft_steps, dpo_steps = total // SFT_STAGE2_DIVISOR, total // DPO_DIVISOR
    hard = ml_collections.ConfigDict(dict(min=HARD))
    c.phases = [
        ml_collections.ConfigDict(dict(
            name="sft_stage2", steps=sft_steps, algorithm="sft",
            algorithm_kwargs=dict(learning_rate=c.warmup.learning_rate),
            collector="demonstrations", data="demos", difficulty=hard)),
        ml_collections.ConfigDict(dict(
            name="dpo", steps=dpo_steps, algorithm="dpo", algorithm_kwargs=dict(beta=0.1, learning_rate=3e-4),
            collector="preference_pairs", collector_kwargs=dict(policy="reference", gold=True),
            data="train", difficulty=hard)),
        ml_collections.ConfigDict(dict(name="grpo", steps=total - sft_steps - dpo_steps)),
    ]
    return c
