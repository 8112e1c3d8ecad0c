"""The bound on compiled programs (``polrl.train.programs``): the jit caches are cleared exactly
when the process holds more than the given fraction of its memory-mapping cap."""
import jax
import pytest

from polrl.train import programs


def test_mapping_counts_reads_this_process():
    counts = programs.mapping_counts()
    if counts is None:
        pytest.skip("/proc does not tell the mapping counts here")
    held, cap = counts
    assert 0 < held < cap


@pytest.mark.parametrize("held, cleared", [(32_765, False), (32_766, True), (None, False)])
def test_caches_are_cleared_past_the_fraction(monkeypatch, held, cleared):
    calls = []
    monkeypatch.setattr(programs, "mapping_counts", lambda: None if held is None else (held, 65_530))
    monkeypatch.setattr(jax, "clear_caches", lambda: calls.append(1))
    assert programs.bound_compiled_programs(0.5) is cleared
    assert len(calls) == int(cleared)

