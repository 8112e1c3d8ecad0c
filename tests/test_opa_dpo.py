"""OPA-DPO (arXiv 2501.09695): the chain task's reviser on hand-written scratchpads (host reference
and the device rule agree), the revised pairs' layout on a hand-made batch, the loss (DPO + the
chosen-response anchor) against hand-computed float64 values, jit == no-jit, and one-line config
errors. The smoke experiments run in tests/test_experiments.py (-k "opa or dpo_revised")."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl import algorithms, collectors
from polrl.algorithms.opa_dpo import chosen_anchor
from polrl.collectors.revised_pairs import pair_rows, revise_tokens
from polrl.core import EXPERT, ON_POLICY, Batch
from polrl.tasks import chain
from polrl.tasks.data import encode_answers
from polrl.tasks.tokenizer import CharTokenizer

PROMPT = "5+8+3+9="
RIGHT = "5+8=13,13+3=16,16+9=25#25"


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


# ----------------------------------------------------------------------------- the reviser (host)

@pytest.mark.parametrize("response, kept", [
    ("5+8=13,13+3=17,17+9=26#26", 7),    # step 2's total is wrong: keep step 1, rewrite from step 2
    ("5+8=13,13+4=17,17+9=26#26", 7),    # step 2's operand is wrong
    ("5+8=12,12+3=15,15+9=24#24", 0),    # the first step is wrong: everything is rewritten
    ("5+8=13,13+3=16,16+9=25#24", 23),   # every step right, the final value wrong: only "25" rewritten
    ("5+8=13,13+3=16#16", 7),            # step 2 closed by "#" (step 3 missing): rewritten from step 2
    ("5+8=13,13+3=16,16+9=25#25x", 23),  # a trailing character makes the final value wrong
    ("5+8=13,,13+3", 7),                 # malformed after step 1
    ("", 0),                             # empty
])
def test_revise_keeps_the_right_steps_and_rewrites_from_the_first_wrong_one(response, kept):
    assert chain.kept_prefix(PROMPT, response) == kept
    revised = chain.revise(PROMPT, response)
    assert revised == RIGHT
    assert revised[:kept] == response[:kept]


def test_revise_leaves_a_right_response_unchanged():
    assert chain.revise(PROMPT, RIGHT) == RIGHT
    assert chain.kept_prefix(PROMPT, RIGHT) == len(RIGHT)
    assert chain.revise("2-7+4=", "2-7=-5,-5+4=-1#-1") == "2-7=-5,-5+4=-1#-1"


def test_revise_refuses_a_prompt_that_is_not_a_chain():
    with pytest.raises(ValueError, match="not a chain prompt"):
        chain.revise("5+8", RIGHT)


# ----------------------------------------------------------------------------- the reviser (device)

def _device(responses, *, eos=True, width=32):
    tok = CharTokenizer()
    rows, masks = [], []
    for r in responses:
        ids = tok.encode(r, eos=eos)
        rows.append(ids + [tok.pad_id] * (width - len(ids)))
        masks.append([1.0] * len(ids) + [0.0] * (width - len(ids)))
    answer, valid = encode_answers(tok, [RIGHT] * len(responses), 28)
    ends = tuple(tok.encode(ch)[0] for ch in chain.STEP_ENDS)
    out = revise_tokens(jnp.asarray(rows), jnp.asarray(masks), jnp.asarray(answer), jnp.asarray(valid),
                        step_end_ids=ends, eos_id=tok.eos_id, pad_id=tok.pad_id)
    return tok, [np.asarray(x) for x in out]


def test_device_revision_matches_the_host_reference():
    responses = ["5+8=13,13+3=17,17+9=26#26", "5+8=12,12+3=15,15+9=24#24", "5+8=13,13+3=16,16+9=25#24",
                 "5+8=13,13+3=16#16", RIGHT]
    tok, (revised, mask, changed, kept, edit) = _device(responses)
    for i, r in enumerate(responses):
        text = tok.decode([int(x) for x, m in zip(revised[i], mask[i]) if m and x != tok.eos_id])
        assert text == chain.revise(PROMPT, r)
        assert mask[i].sum() == len(chain.revise(PROMPT, r)) + 1  # + EOS
    np.testing.assert_array_equal(changed, [True, True, True, True, False])
    # kept counts tokens of the response; a right response keeps all of it, EOS included
    np.testing.assert_array_equal(kept, [7, 0, 23, 7, len(RIGHT) + 1])
    np.testing.assert_array_equal(edit, [26 - 7, 26, 26 - 23, 26 - 7, 0])


def test_device_revision_of_a_response_without_eos():
    tok, (revised, mask, changed, kept, edit) = _device([RIGHT], eos=False)
    assert bool(changed[0]) and kept[0] == 23 and edit[0] == 3  # "25" + EOS rewritten
    assert revised[0][len(RIGHT)] == tok.eos_id


def test_device_revision_with_token_steps_keeps_the_common_prefix():
    tok = CharTokenizer()
    ids = tok.encode("5+8=13,13+3=17", eos=True)
    answer, valid = encode_answers(tok, [RIGHT], 28)
    _, _, changed, kept, edit = revise_tokens(
        jnp.asarray([ids + [0] * (28 - len(ids))]), jnp.asarray([[1.0] * len(ids) + [0.0] * (28 - len(ids))]),
        jnp.asarray(answer), jnp.asarray(valid), step_end_ids=(), eos_id=tok.eos_id, pad_id=tok.pad_id)
    assert bool(changed[0]) and int(kept[0]) == 13 and int(edit[0]) == 26 - 13  # "13+3=1" matched, "7" differs


def test_revised_labels_wider_than_the_responses_are_refused():
    tok = CharTokenizer()
    answer, valid = encode_answers(tok, [RIGHT], 28)
    with pytest.raises(ValueError, match="max_new_tokens"):
        revise_tokens(jnp.zeros((1, 8), jnp.int32), jnp.ones((1, 8)), jnp.asarray(answer), jnp.asarray(valid),
                      step_end_ids=(), eos_id=tok.eos_id, pad_id=tok.pad_id)


# ----------------------------------------------------------------------------- the pair layout

def test_pair_rows_interleave_revised_and_original():
    batch = Batch(
        prompt_bp=jnp.asarray([[1, 2], [3, 4]], jnp.int32), prompt_valid_bp=jnp.ones((2, 2), bool),
        response_bt=jnp.asarray([[5, 6, 0], [7, 8, 0]], jnp.int32), mask_bt=jnp.asarray([[1.0, 1, 0], [1, 1, 0]]),
        reward_b=jnp.asarray([0.0, 1.0]), group_b=jnp.asarray([0, 1], jnp.int32),
        behavior_logp_bt=jnp.asarray([[-1.0, -2, 0], [-3, -4, 0]]), version_b=jnp.asarray([4, 4], jnp.int32),
    )
    revised = jnp.asarray([[5, 9, 9], [7, 8, 0]], jnp.int32)
    revised_mask = jnp.asarray([[1.0, 1, 1], [1, 1, 0]])
    pairs = pair_rows(batch, revised, revised_mask, jnp.asarray([True, False]))
    assert pairs.group_size == 2
    np.testing.assert_array_equal(pairs.response_bt, [[5, 9, 9], [5, 6, 0], [7, 8, 0], [7, 8, 0]])
    np.testing.assert_array_equal(pairs.mask_bt, [[1, 1, 1], [1, 1, 0], [1, 1, 0], [1, 1, 0]])
    np.testing.assert_array_equal(pairs.prompt_bp, [[1, 2], [1, 2], [3, 4], [3, 4]])
    np.testing.assert_array_equal(pairs.reward_b, [1, 0, 1, 1])  # a pair, then a tie
    np.testing.assert_array_equal(pairs.group_b, [0, 0, 1, 1])
    np.testing.assert_array_equal(pairs.source_b, [EXPERT, ON_POLICY, ON_POLICY, ON_POLICY])
    np.testing.assert_array_equal(pairs.behavior_logp_bt, [[0, 0, 0], [-1, -2, 0], [-3, -4, 0], [-3, -4, 0]])
    np.testing.assert_array_equal(pairs.version_b, [4, 4, 4, 4])


def test_revised_pairs_refuses_bad_options():
    ctx = collectors.Context(graphdef=None, task=None, sampling=None, group_size=1, layout=None)
    with pytest.raises(ValueError, match="revised_pairs: policy='old'"):
        collectors.revised_pairs(ctx, policy="old")
    with pytest.raises(ValueError, match="revised_pairs: emit='both'"):
        collectors.revised_pairs(ctx, emit="both")


# ----------------------------------------------------------------------------- the loss

# Two pairs and a tie; rows (chosen, rejected) per group. Per-row sums S − S_ref:
#   pair 0: chosen 1.0, rejected −1.0;  pair 1: chosen −0.5, rejected 0.5;  tie: 0.3, 0.3.
LOGP = [[-1.0, -1.0], [-2.0, -1.5], [-1.0, -1.0], [-0.5, 0.0], [-1.0, 0.0], [-1.0, 0.0]]
REF = [[-1.5, -1.5], [-1.0, -1.5], [-0.5, -1.0], [-1.0, 0.0], [-1.3, 0.0], [-1.3, 0.0]]
MASK = [[1, 1], [1, 1], [1, 1], [1, 0], [1, 0], [1, 0]]
REWARD = [1.0, 0.0, 1.0, 0.0, 1.0, 1.0]


def _batch():
    return Batch(
        prompt_bp=jnp.zeros((6, 1), jnp.int32), prompt_valid_bp=jnp.ones((6, 1), bool),
        response_bt=jnp.zeros((6, 2), jnp.int32), mask_bt=jnp.asarray(MASK, jnp.float64),
        logp_bt=jnp.asarray(LOGP, jnp.float64), ref_logp_bt=jnp.asarray(REF, jnp.float64),
        reward_b=jnp.asarray(REWARD, jnp.float64), group_b=jnp.asarray([0, 0, 1, 1, 2, 2], jnp.int32),
    )


def _sp(x):  # −log σ(x)
    return math.log1p(math.exp(-x))


def _objective(alg, batch):
    out, _ = alg.objective.apply(batch, alg.objective.init())
    return out


def test_opa_dpo_loss_against_hand_computed_values():
    beta, coef, delta = 0.5, 2.0, 0.1
    out = _objective(algorithms.opa_dpo(beta=beta, anchor_coef=coef, anchor_delta=delta), _batch())
    # h = (S−S_ref)(y_w) − (S−S_ref)(y_l): pair 0: 1 − (−1) = 2; pair 1: −0.5 − 0.5 = −1
    dpo = (_sp(beta * 2.0) + _sp(beta * -1.0)) / 2
    anchor = coef * (_sp(beta * 1.0 - delta) + _sp(beta * -0.5 - delta)) / 2
    assert set(out.losses) == {"dpo", "anchor"}
    np.testing.assert_allclose(float(out.losses["dpo"]), dpo, rtol=1e-12)
    np.testing.assert_allclose(float(out.losses["anchor"]), anchor, rtol=1e-12)
    np.testing.assert_allclose(float(out.metrics["anchor_reward"]), beta * (1.0 - 0.5) / 2, rtol=1e-12)


def test_anchor_coef_zero_is_plain_dpo():
    opa = _objective(algorithms.opa_dpo(beta=0.3, anchor_coef=0.0), _batch())
    dpo = _objective(algorithms.dpo(beta=0.3), _batch())
    assert float(opa.losses["anchor"]) == 0.0
    np.testing.assert_allclose(float(opa.losses["dpo"]), float(dpo.losses["dpo"]), rtol=1e-12)


def test_anchor_gradient_raises_only_the_chosen_rows():
    t = chosen_anchor(beta=1.0)

    def loss(logp):
        out, _ = t.apply(_batch().replace(logp_bt=logp), t.init())
        return out.losses["anchor"]

    g = np.asarray(jax.grad(loss)(jnp.asarray(LOGP, jnp.float64)))
    assert np.all(g[[0, 2]][np.asarray(MASK)[[0, 2]] > 0] < 0)  # descent raises log π of the chosen rows
    assert np.all(g[[1, 3, 4, 5]] == 0)                          # rejected rows and the tie: no gradient


def test_jit_equals_no_jit():
    alg = algorithms.opa_dpo(beta=0.2, anchor_coef=1.0)
    eager = _objective(alg, _batch())
    jitted = jax.jit(lambda b: _objective(alg, b))(_batch())
    for name in ("dpo", "anchor"):
        np.testing.assert_allclose(float(jitted.losses[name]), float(eager.losses[name]), rtol=1e-12)


def test_opa_dpo_declares_the_reference():
    assert algorithms.opa_dpo().needs == {"ref_logp"}
    assert algorithms.get("opa_dpo") is algorithms.opa_dpo


@pytest.mark.parametrize("kwargs, message", [
    (dict(beta=0.0), "opa_dpo: beta=0.0"),
    (dict(anchor_coef=-1.0), "opa_dpo: anchor_coef=-1.0"),
    (dict(anchor_delta=float("inf")), "opa_dpo: anchor_delta=inf"),
    (dict(anchor_coef="1"), "opa_dpo: anchor_coef='1'"),
])
def test_config_errors_name_the_keyword(kwargs, message):
    with pytest.raises(ValueError, match=message) as err:
        algorithms.opa_dpo(**kwargs)
    assert "\n" not in str(err.value)


def test_unknown_keyword_is_a_type_error_naming_the_noun():
    with pytest.raises(TypeError, match="opa_dpo"):
        algorithms.opa_dpo(gamma=1.0)
