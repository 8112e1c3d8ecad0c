"""INSPO's instruction population (``polrl.collectors.instruction_population``) and noun: score
updates, pruning and refill against hand-computed values, the selection draw against a brute-force
Gumbel argmax and its frequencies against the softmax, the prompt layouts, the state's orbax round
trip and jit == no-jit. The full collector's contract (jit == eager, example == collect) is
``tests/test_collectors.py``'s case."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl import algorithms
from polrl.collectors import instruction_population as ip
from polrl.core import Batch
from polrl.train.checkpoint import PhaseCheckpointer
from polrl.train.trainer import with_token_prefix

PAD, EOS = 0, 2


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


def _pop(scores=(0.5, 0.2, 0.0, 0.9), alive=(True, True, False, True), uses=(2.0, 4.0, 0.0, 1.0)):
    tokens = np.arange(4 * 3).reshape(4, 3) + 3
    valid = np.array([[True, True, False], [True, False, False], [False] * 3, [True, True, True]])
    pop = ip.population_state(tokens, valid)
    assert np.asarray(pop["alive_n"]).tolist() == [True, True, False, True]
    return {**pop, "alive_n": jnp.asarray(alive), "score_n": jnp.asarray(scores, jnp.float64),
            "uses_n": jnp.asarray(uses, jnp.float64)}


def test_running_mean_score_update_by_hand():
    pop = _pop()
    slot_b = jnp.asarray([0, 0, 3, 3, 3, 0])
    reward_b = jnp.asarray([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    out = ip.update_scores(pop, slot_b, reward_b)
    # slot 0: (2·0.5 + 1 + 0 + 1) / (2 + 3) = 0.6; slot 3: (1·0.9 + 2) / 4 = 0.725; others unchanged
    np.testing.assert_allclose(np.asarray(out["score_n"]), [0.6, 0.2, 0.0, 0.725], rtol=1e-12)
    np.testing.assert_array_equal(np.asarray(out["uses_n"]), [5.0, 4.0, 0.0, 4.0])
    # a fresh instruction (n = 0) takes the mean of its first rewards, whatever its prior
    fresh = ip.update_scores({**pop, "uses_n": jnp.zeros(4)}, jnp.asarray([1, 1]), jnp.asarray([1.0, 0.0]))
    assert float(fresh["score_n"][1]) == 0.5


def test_pruning_takes_empty_slots_then_lowest_scores():
    pop = _pop()
    np.testing.assert_array_equal(np.asarray(ip.slots_to_refill(pop, 1)), [2])
    np.testing.assert_array_equal(np.asarray(ip.slots_to_refill(pop, 3)), [2, 1, 0])
    tie = _pop(scores=(0.3, 0.3, 0.0, 0.9), alive=(True, True, True, True))
    np.testing.assert_array_equal(np.asarray(ip.slots_to_refill(tie, 2)), [2, 0])  # 0.0, then the lower 0.3
    np.testing.assert_array_equal(np.asarray(ip.failed_rows(jnp.asarray([1.0, 0.0, 1.0, 0.0]), 2)), [1, 3])


def test_refill_writes_accepted_proposals_with_survivors_mean():
    pop = _pop()
    slots = jnp.asarray([2, 1])
    tokens = jnp.asarray([[30, 31, 99], [40, 99, 99]])
    valid = jnp.asarray([[True, True, False], [True, False, False]])
    out = ip.refill(pop, slots, tokens, valid, jnp.asarray([True, False]))
    # survivors of the prune: slots 0 and 3, mean w = (0.5 + 0.9) / 2
    np.testing.assert_allclose(np.asarray(out["score_n"]), [0.5, 0.0, 0.7, 0.9], rtol=1e-12)
    assert np.asarray(out["alive_n"]).tolist() == [True, False, True, True]
    np.testing.assert_array_equal(np.asarray(out["uses_n"]), [2.0, 0.0, 0.0, 1.0])
    np.testing.assert_array_equal(np.asarray(out["tokens_nl"][2]), [30, 31, 0])
    assert np.asarray(out["valid_nl"][1]).tolist() == [False] * 3
    assert (int(out["proposed"]), int(out["accepted"])) == (2, 1)
    m = ip.population_metrics(out, True)
    assert float(m["inspo/population"]) == 3.0 and float(m["inspo/acceptance"]) == 0.5
    np.testing.assert_allclose([float(m["inspo/best_score"]), float(m["inspo/score_spread"])], [0.9, 0.4], rtol=1e-12)
    assert float(ip.population_metrics(pop, False)["inspo/acceptance"]) == 0.0  # no proposal yet


def test_well_formed_proposals():
    response = jnp.asarray([[5, 6, EOS, PAD], [5, 6, 7, 8], [EOS, PAD, PAD, PAD], [5, 1, EOS, PAD]])
    mask = jnp.asarray([[1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 1, 0]], jnp.float64)
    accepted, said = ip.well_formed(response, mask, EOS, 3)
    # ends with EOS ✓; no EOS within L ✗; empty ✗; a BOS token inside ✗
    assert np.asarray(accepted).tolist() == [True, False, False, False]
    assert np.asarray(said[0]).tolist() == [True, True, False, False]


def test_selection_is_a_gumbel_argmax_over_live_slots_with_softmax_frequencies():
    pop = _pop()
    tau = 0.5
    key = jax.random.key(7)
    drawn = np.asarray(ip.select_instructions(pop, tau, 5, key))
    logits = np.where([True, True, False, True], np.asarray([0.5, 0.2, 0.0, 0.9]) / tau, -np.inf)
    brute = np.argmax(logits[None, :] + np.asarray(jax.random.gumbel(key, (5, 4))), axis=1)
    np.testing.assert_array_equal(drawn, brute)
    n = 20000
    counts = np.bincount(np.asarray(ip.select_instructions(pop, tau, n, jax.random.key(3))), minlength=4)
    p = np.exp(logits - logits[np.isfinite(logits)].max())
    p /= p.sum()
    assert counts[2] == 0
    # each frequency within 5 binomial standard deviations of the softmax
    assert np.all(np.abs(counts / n - p) <= 5 * np.sqrt(p * (1 - p) / n) + 1e-12), (counts / n, p)


def test_instruction_is_prepended_to_the_left_padded_question():
    prefix = jnp.asarray([[10, 11, 0], [12, 0, 0]])
    prefix_valid = jnp.asarray([[True, True, False], [True, False, False]])
    prompt = jnp.asarray([[0, 5, 6], [7, 8, 9]])
    prompt_valid = jnp.asarray([[False, True, True], [True, True, True]])
    tokens, valid = ip.prefixed_prompts(prefix, prefix_valid, prompt, prompt_valid, PAD)
    np.testing.assert_array_equal(np.asarray(tokens), [[0, 0, 10, 11, 5, 6], [0, 0, 12, 7, 8, 9]])
    assert np.asarray(valid).tolist() == [[False, False, True, True, True, True], [False, False, True, True, True, True]]


def test_proposer_prompt_shows_the_failed_row():
    batch = Batch(prompt_bp=jnp.asarray([[0, 5, 6], [4, 5, 6]]), prompt_valid_bp=jnp.asarray([[False, True, True]] * 2),
                  response_bt=jnp.asarray([[8, EOS, PAD], [9, 9, EOS]]),
                  mask_bt=jnp.asarray([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]), group_size=1)
    tokens, valid = ip.proposer_prompts(batch, jnp.asarray([1]), (20,), (21, 22), EOS, PAD)
    # failure text, the row's prompt (its valid tokens), its response before EOS, the cue; left-padded
    np.testing.assert_array_equal(np.asarray(tokens), [[0, 0, 20, 5, 6, 9, 9, 21, 22]])
    assert int(np.asarray(valid).sum()) == 7


def test_best_instruction_is_found_under_wrappers_and_prefixes_evaluation():
    pop = _pop()
    tokens, valid = ip.best_instruction({"snapshots": (), "inner": {"population": pop, "inner": ()}})
    np.testing.assert_array_equal(np.asarray(tokens), [12, 13, 14])  # slot 3 (w = 0.9)
    data = {"prompt_bp": np.asarray([[0, 5], [6, 7]]), "prompt_valid_bp": np.asarray([[False, True], [True, True]]),
            "examples": [{}, {}]}
    out = with_token_prefix(data, np.asarray([12, 13]), np.asarray([True, False]))
    np.testing.assert_array_equal(out["prompt_bp"], [[12, 13, 0, 5], [12, 13, 6, 7]])
    assert out["prompt_valid_bp"].tolist() == [[True, False, False, True], [True, False, True, True]]


def test_state_round_trips_through_orbax(tmp_path):
    state = {"population": ip.refill(_pop(), jnp.asarray([2]), jnp.asarray([[30, 31, 32]]),
                                     jnp.asarray([[True, False, False]]), jnp.asarray([True])), "inner": ()}
    ckpt = PhaseCheckpointer(str(tmp_path / "ckpt"))
    ckpt.save(3, state, position=5, global_step=3)
    fresh = {"population": _pop(), "inner": ()}
    restored, position, _ = ckpt.restore(fresh)
    ckpt.close()
    assert position == 5 and jax.tree.structure(restored) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_population_step_jit_matches_no_jit():
    def step(pop, reward_b, key):
        slot_p = ip.select_instructions(pop, 0.3, 3, key)
        pop = ip.update_scores(pop, jnp.repeat(slot_p, 2), reward_b)
        return ip.refill(pop, ip.slots_to_refill(pop, 2), jnp.full((2, 3), 9), jnp.ones((2, 3), bool),
                         jnp.asarray([True, False]))

    args = (_pop(), jnp.asarray([1.0, 0.0, 0.5, 1.0, 0.0, 0.0]), jax.random.key(2))
    for a, b in zip(jax.tree.leaves(step(*args)), jax.tree.leaves(jax.jit(step)(*args)), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_noun_and_bad_input():
    alg = algorithms.inspo(instructions=("add:",), kl_coef=0.0)
    assert alg.collector is not None and alg.needs == frozenset()
    with pytest.raises(ValueError, match="num_proposals"):
        ip.with_instruction_population(("a",), capacity=2, num_proposals=2)
    with pytest.raises(ValueError, match="raise width"):
        ip.with_instruction_population(("abcdef",), width=3)
    with pytest.raises(ValueError, match="capacity=1"):
        ip.with_instruction_population(("a", "b"), capacity=1, num_proposals=1)
    with pytest.raises(ValueError, match="temperature"):
        ip.with_instruction_population(("a",), temperature=0.0)
