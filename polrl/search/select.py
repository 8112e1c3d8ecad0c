"""The compute-optimal choice of a test-time search per difficulty, from a calibration table.

"Scaling LLM Test-Time Compute Optimally can be More Effective than Scaling Model Parameters"
(Snell et al., arXiv 2408.03314, §3.1) picks, for each difficulty bin of a prompt, the search
hyperparameters θ that maximise the expected accuracy on a calibration split under a compute
budget; "Can 1B LLM Surpass 405B LLM? Rethinking Compute-Optimal Test-Time Scaling" (Liu et al.,
arXiv 2502.06703, §3) does the same with the PRM as part of the setting. Here θ = (method,
budget N) and the budget is inference FLOPs per prompt:

    θ*(bin, C) = argmax_{θ : F(θ, bin) ≤ C} Acc(θ, bin),

Acc and F the accuracy and the mean FLOPs per prompt of θ on the calibration prompts of the bin
(``polrl.search.evaluate.evaluate``'s ``accuracy_by_difficulty`` / ``flops_by_difficulty``).

INFERRED (the papers leave them open): ties in accuracy go to the fewer FLOPs, then the smaller
budget, then the method name; a bin with no θ within C is an error rather than a fallback.
"""
from __future__ import annotations

from typing import Hashable, Mapping

Table = Mapping[tuple[str, int, Hashable], tuple[float, float]]


def compute_optimal(table: Table, flop_budget: float) -> dict:
    """{bin: (method, budget, accuracy, flops)}: per difficulty bin, the (method, budget) of
    ``table`` {(method, budget, bin): (accuracy, flops per prompt)} with the highest accuracy among
    those spending at most ``flop_budget`` FLOPs per prompt (ties: fewer FLOPs, smaller budget,
    method name)."""
    bins: dict = {}
    for (method, budget, key), (accuracy, flops) in table.items():
        bins.setdefault(key, []).append((method, budget, accuracy, flops))
    chosen = {}
    for key, rows in bins.items():
        fits = [row for row in rows if row[3] <= flop_budget]
        if not fits:
            cheapest = min(row[3] for row in rows)
            raise ValueError(f"compute_optimal: no (method, budget) of bin {key!r} fits flop_budget={flop_budget!r}; "
                             f"the cheapest needs {cheapest!r}: raise flop_budget")
        chosen[key] = min(fits, key=lambda row: (-row[2], row[3], row[1], row[0]))
    return chosen


def table_from_results(results: Mapping[tuple[str, int], dict]) -> dict:
    """The selector's table from ``{(method, budget): evaluate(...) result}``:
    {(method, budget, bin): (accuracy of the bin, mean FLOPs per prompt of the bin)}."""
    return {(method, budget, key): (accuracy, result["flops_by_difficulty"][key])
            for (method, budget), result in results.items()
            for key, accuracy in result["accuracy_by_difficulty"].items()}
