"""GRPO on the chain task from an SFT warm start, penalized by a CT² detector and evaluated for
detectability (the AI Detectability Index of "Counter Turing Test (CT^2): AI-Generated Text
Detection is Not as Easy as You May Think -- Introducing AI Detectability Index", arXiv 2310.05030).

The recipe of experiments/chain_grpo.py (500 SFT steps on 500 demonstrations, then GRPO with 16
prompts × 8 samples, lr 3e-4, no KL, zero-variance groups masked out, token-mean loss) with:
  * reward = the verifier's final-answer reward − λ · the mean token log-likelihood of the response
    under the SFT warm start (the phase's reference; ``config.detect_penalty``, λ = 0.05): the
    likelihood detector's score, so the policy is paid for answers the warm start finds less
    typical of itself (``polrl.collectors.with_detectability_penalty``);
  * at every evaluation, ``eval/detect_auroc_<detector>`` (log-likelihood, perplexity, log-rank,
    entropy, burstiness; sentences end at ",") and ``eval/detect_adi`` of the greedy answers
    against the held-out demonstrations under the same scorer, and ``eval/detect_sampled_*`` of
    4 samples per prompt (``config.eval.detect``; ``polrl.detectability``);
  * the advantage r − mean_g(r), not divided by the group's reward std (``scale = "none"``): in a
    group whose answers are all right or all wrong the only reward spread is λ·d, and GRPO's
    division by the std would restore it to full strength whatever λ (benchmarks/frontier.md
    measures both).

Launch (CPU):
  python -m polrl.launch --config experiments/chain_grpo_ct2.py --workdir runs/chain_grpo_ct2
Smoke (seconds, run by the test suite):
  python -m polrl.launch --config experiments/chain_grpo_ct2.py:smoke --workdir /tmp/polrl/chain_ct2_smoke

<!-- report: frontier.ct2 -->
Expected result (benchmarks/frontier.md, from `python benchmarks/frontier_ct2.py`; raw:
benchmarks/results/frontier_ct2.jsonl; CPU AMD EPYC; 100 GRPO steps from each seed's SFT warm start,
3 seeds (0, 1, 2); 200 held-out prompts, accuracy the mean of each run's last 2 evaluations, AUROC
of the log-likelihood detector on greedy answers against the demonstrations at the last one): warm
start 46.7 ± 6.7%, AUROC 0.70 ± 0.03; this config 53.6 ± 11.3%, AUROC 0.46 ± 0.03; the same without
the penalty 43.8 ± 21.1%, AUROC 0.35 ± 0.23; chain_grpo.py (GRPO's std-normalised advantage) 47.5 ±
6.4%, AUROC 0.46 ± 0.03; the penalty with the std-normalised advantage 0.0 ± 0.0%, AUROC 0.00 ±
0.00.
<!-- /report -->"""
import ml_collections

from experiments import chain_grpo


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = chain_grpo.get_config(arg)
    c.detect_penalty = ml_collections.ConfigDict(dict(coef=0.05, detector="log_likelihood", model="reference",
                                                      separator=","))
    c.algorithm_kwargs.scale = "none"
    c.eval.update(detect=True, detect_separator=",", samples=4)
    if arg == "smoke":
        c.eval.samples = 2
    return c
