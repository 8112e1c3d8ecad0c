"""How every benchmark report writes a figure over seeds."""
from __future__ import annotations

import statistics


def mean_std(xs, scale: float = 1.0, digits: int = 1) -> str:
    """``mean ± std`` of ``scale · x`` over the values (sample std), ``x (1 seed)`` for a single
    value, ``–`` for none; ``None`` values (not measured) are left out."""
    xs = [scale * x for x in xs if x is not None]
    if not xs:
        return "–"
    if len(xs) == 1:
        return f"{xs[0]:.{digits}f} (1 seed)"
    return f"{statistics.mean(xs):.{digits}f} ± {statistics.stdev(xs):.{digits}f}"
