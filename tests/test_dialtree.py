"""DialTree-RPO (polrl.collectors.dialogue_tree, polrl.algorithms.dialtree_rpo, polrl.tasks.target_says):
the target-says rules and the pruning on hand cases, the tree against a brute-force re-run of
every dialogue (each attacker token drawn with its slot's uniform from a full forward, the target
and the judge re-run, the pruning redone by sorting), target tokens never trained, the advantage,
the adaptive mask and the loss's gradient on hand values, jit == no-jit.

The rollouts run on float64 models, where cached and uncached computations agree to ~1e-15, so a
sampled token can only differ on a tie, not by float32 rounding of one CPU.
"""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from polrl.algorithms.dialtree_rpo import dialtree_rpo, format_token_mask, leaf_group_advantages
from polrl.collectors.dialogue_tree import (dialogue_tree_rollout, max_target_calls, next_parents, rank_in,
                                            select_survivors, tree_batch)
from polrl.core import Batch
from polrl.models import TransformerConfig
from polrl.rollout import SamplingConfig
from polrl.rollout.sampling import draw
from polrl.tasks import CharTokenizer
from polrl.tasks.target_says import AttackRules, attack_rules, attack_text_reward, goal_prompt, parse_goal
from alg_testing import check_transform_contract, rollout_batch, scored, train_once
from tiny_models import tiny_params

V, EOS, PAD, SEP = 13, 2, 0, 12
CFG = TransformerConfig(vocab_size=V, d_model=16, num_layers=2, num_heads=4, num_kv_heads=2, mlp_dim=24,
                        max_len=40, dtype=jnp.float64, param_dtype=jnp.float64)
SAMPLING = SamplingConfig(max_new_tokens=3, eos_id=EOS, pad_id=PAD)
GREEDY = SamplingConfig(max_new_tokens=2, eos_id=EOS, pad_id=PAD, temperature=0.0)
PROMPTS = [[1, 5, 7], [1, 9, 4]]
TREE = dict(max_turns=3, init_branches=2, branch=2, width=2, top_k=1)


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


@functools.lru_cache(maxsize=None)
def models():
    with jax.enable_x64(True):
        return tiny_params(CFG, seed=0), tiny_params(CFG, seed=1)


# --- rules for the tiny models: a turn whose first token is a multiple of 3 is malformed; the
# target reads BOS + the turn; the judge scores the reply's first token r as (r mod 5) / 4.

def _check(prompt_kp, turn_kn, valid_kn):
    return (valid_kn[:, 0]) & (turn_kn[:, 0] % 3 != 0)


def _target_prompt(turn_kn, valid_kn):
    k = turn_kn.shape[0]
    return (jnp.concatenate([jnp.ones((k, 1), turn_kn.dtype), turn_kn], axis=1),
            jnp.concatenate([jnp.ones((k, 1), bool), valid_kn], axis=1))


def _score(prompt_kp, reply_kr, valid_kr):
    return jnp.where(valid_kr[:, 0], (reply_kr[:, 0] % 5) / 4.0, 0.0)


def _observation(reply_kr, valid_kr):
    k = reply_kr.shape[0]
    return (jnp.concatenate([reply_kr, jnp.full((k, 1), SEP, reply_kr.dtype)], axis=1),
            jnp.concatenate([valid_kr, jnp.ones((k, 1), bool)], axis=1))


RULES = AttackRules(turn_tokens=3, stop_sequences=(), reply_tokens=2, observation_len=3, check_turn=_check,
                    target_prompt=_target_prompt, score=_score, observation=_observation)


def left_padded(prompts, width=4):
    tokens = np.zeros((len(prompts), width), np.int32)
    for i, p in enumerate(prompts):
        tokens[i, width - len(p):] = p
    return jnp.asarray(tokens), jnp.asarray(tokens != 0)


@functools.partial(jax.jit, static_argnames=("max_turns", "init_branches", "branch", "width", "top_k"))
def rollout(attacker_params, target_params, tokens, valid, rng, **tree):
    (graphdef, _), (target_def, _) = models()
    return dialogue_tree_rollout(nnx.merge(graphdef, attacker_params), nnx.merge(target_def, target_params), RULES,
                                 tokens, valid, rng, SAMPLING, pad_id=PAD, **tree)


@functools.partial(jax.jit, static_argnums=(2, 3))
def next_token(seq, u, config, which):
    """The draw after the real tokens of ``seq`` (right-padded with -1), from a full forward."""
    graphdef, params = models()[which]
    valid = seq >= 0
    logits = nnx.merge(graphdef, params)(jnp.maximum(seq, 0)[None], jnp.arange(seq.shape[0])[None], valid[None])
    return draw(logits[:, valid.sum() - 1], u[None], config)


def decode(context, uniforms, config, which, budget):
    """Tokens and log-probs drawn after ``context`` until EOS or ``budget``, token i with ``uniforms[i]``."""
    tokens, logps = [], []
    for i in range(budget):
        seq = np.full(CFG.max_len, -1, np.int64)
        seq[:len(context) + len(tokens)] = context + tokens
        token, logp = next_token(jnp.asarray(seq), jnp.asarray(uniforms[i]), config, which)
        tokens.append(int(token[0]))
        logps.append(float(logp[0]))
        if tokens[-1] == EOS:
            break
    return tokens, logps


def brute_force_tree(prompt, goal, rng, *, max_turns, init_branches, branch, width, top_k, slots):
    """Every leaf of one goal's tree as {(turn, slot): (tokens, mask, logp, success)}, re-run node by node."""
    c = width * branch
    uniforms = [np.asarray(jax.random.uniform(jax.random.fold_in(rng, t), (SAMPLING.max_new_tokens, slots)))
                for t in range(max_turns)]
    live = [(c_, [], [], []) for c_ in range(init_branches)]  # (slot, tokens, mask, logp)
    leaves = {}
    for t in range(max_turns):
        children = []
        for slot, tokens, mask, logp in live:
            turn, turn_logp = decode(prompt + tokens, uniforms[t][:, goal * c + slot], SAMPLING, 0,
                                     SAMPLING.max_new_tokens)
            tokens, mask, logp = tokens + turn, mask + [1.0] * len(turn), logp + turn_logp
            ok = turn[0] % 3 != 0
            score, reply = 0.0, []
            if ok:
                reply, _ = decode([1] + turn, np.zeros(GREEDY.max_new_tokens), GREEDY, 1, GREEDY.max_new_tokens)
                score = (reply[0] % 5) / 4.0
                obs = reply + [SEP]
                tokens, mask, logp = tokens + obs, mask + [0.0] * len(obs), logp + [0.0] * len(obs)
            children.append((slot, tokens, mask, logp, ok, score))
        going = [ch for ch in children if ch[4] and ch[5] < 1.0]
        kept = []
        if t < max_turns - 1:
            parent = (lambda s: 0) if t == 0 else (lambda s: s // branch)
            by_parent = {}
            for ch in sorted(going, key=lambda ch: (-ch[5], ch[0])):
                by_parent.setdefault(parent(ch[0]), []).append(ch)
            first = [ch for chs in by_parent.values() for ch in chs[:top_k]]
            kept = sorted(first, key=lambda ch: (-ch[5], ch[0]))[:width]
        kept_slots = {ch[0] for ch in kept}
        for slot, tokens, mask, logp, ok, score in children:
            if slot not in kept_slots:
                leaves[(t, slot)] = (tokens, mask, logp, float(ok and score >= 1.0))
        live = [(j * branch + i, ch[1], ch[2], ch[3]) for j, ch in enumerate(kept) for i in range(branch)]
    return leaves


# --- the target-says rules and the host reward, by hand ----------------------------------------


def test_goal_prompts_and_host_reward():
    assert goal_prompt(17, 1, 9) == "17:?9?" and parse_goal("07:3??") == (7, "3??")
    assert attack_text_reward("3+9+5=", "17:?9?") == 1.0
    assert attack_text_reward("9+3+5=", "17:?9?") == 0.0  # off the pattern
    assert attack_text_reward("3+9+4=", "17:?9?") == 0.0  # wrong value
    assert attack_text_reward("3+9+5", "17:?9?") == 0.0 and attack_text_reward("12+5=", "17:??5") == 0.0
    with pytest.raises(ValueError, match="is not a goal like"):
        parse_goal("17?9")


def test_target_says_device_rules():
    tok = CharTokenizer()
    rules = attack_rules(tok)
    enc = lambda texts, width: jnp.asarray([tok.encode(s) + [PAD] * (width - len(tok.encode(s))) for s in texts])
    prompts = enc(["17:?9?"] * 4, 6)
    turns = enc(["3+9+5=", "9+3+5=", "3+9=", "3+9+5+"], 6)
    np.testing.assert_array_equal(rules.check_turn(prompts, turns, turns != PAD), [True, False, False, False])
    replies = jnp.asarray([tok.encode("17", eos=True), tok.encode("19", eos=True), tok.encode("1+", eos=True),
                           tok.encode("175")])
    np.testing.assert_allclose(rules.score(prompts, replies, replies != PAD), [1.0, 1 / 3, 0.0, 0.0])
    obs, valid = rules.observation(replies[:1], replies[:1] != PAD)
    assert tok.decode(np.where(valid[0], obs[0], PAD)) == "17,"
    asked, asked_valid = rules.target_prompt(turns[:1], turns[:1] != PAD)
    assert asked[0, 0] == tok.bos_id and tok.decode(asked[0]) == "3+9+5="


# --- pruning, by hand --------------------------------------------------------------------------


def test_rank_and_pruning_by_hand():
    score = jnp.asarray([[0.5, 0.9, 0.5, 0.2, 0.7, 0.7]])
    going = jnp.asarray([[True, True, True, True, False, True]])
    parent = jnp.asarray([0, 0, 0, 1, 1, 1])
    # within the goal: 0.9 (c1) first, then the tie 0.7 (c5), then 0.5 (c0 before c2), then 0.2 (c3)
    np.testing.assert_array_equal(rank_in(score, going, jnp.ones((6, 6), bool)), [[2, 0, 3, 4, 1, 1]])
    keep, order = select_survivors(score, going, parent, top_k=2, width=3)
    # parent 0 keeps c1, c0 (c2 loses the tie to c0); parent 1 keeps c5, c3 (c4 does not go on);
    # the width keeps the 3 best of those: c1, c5, c0
    np.testing.assert_array_equal(keep, [[True, True, False, False, False, True]])
    np.testing.assert_array_equal(order, [[2, 0, -1, -1, -1, 1]])
    src, live = next_parents(order, 4)
    np.testing.assert_array_equal(src, [[1, 5, 0, 0]])
    np.testing.assert_array_equal(live, [[True, True, True, False]])


def test_max_target_calls():
    assert max_target_calls(max_turns=3, init_branches=4, branch=4, width=4, top_k=2) == 4 + 8 + 16
    assert max_target_calls(max_turns=3, init_branches=9, branch=1, width=9, top_k=9) == 27
    assert max_target_calls(max_turns=1, init_branches=2, branch=2, width=2, top_k=1) == 2


# --- the tree against brute force --------------------------------------------------------------


@pytest.mark.parametrize("tree", [TREE, dict(TREE, top_k=2, init_branches=1)])
def test_tree_equals_brute_force(tree):
    (_, params), (_, target_params) = models()
    tokens, valid = left_padded(PROMPTS)
    rng = jax.random.key(3)
    out = rollout(params, target_params, tokens, valid, rng, **tree)
    c = tree["width"] * tree["branch"]
    per_goal = tree["max_turns"] * c
    successes = 0
    for goal, prompt in enumerate(PROMPTS):
        leaves = brute_force_tree(prompt, goal, rng, slots=len(PROMPTS) * c, **tree)
        for t in range(tree["max_turns"]):
            for slot in range(c):
                row = goal * per_goal + t * c + slot
                if (t, slot) not in leaves:
                    assert out.leaf_r[row] == 0 and out.generated_rw[row].sum() == 0
                    continue
                want, mask, logp, success = leaves[(t, slot)]
                assert out.leaf_r[row] == 1 and out.turns_r[row] == t + 1
                n = len(want)
                np.testing.assert_array_equal(out.tokens_rw[row, :n], want)
                assert np.all(np.asarray(out.tokens_rw[row, n:]) == PAD)
                np.testing.assert_array_equal(out.generated_rw[row, :n], mask)  # target replies never trained
                np.testing.assert_allclose(out.logp_rw[row, :n], logp, rtol=1e-9, atol=1e-12)
                assert out.success_r[row] == success
                successes += success
    assert out.leaf_r.sum() > len(PROMPTS) * tree["init_branches"] / 2 and successes >= 1  # a tree that succeeds


def test_no_tree_is_independent_dialogues_and_calls_are_counted():
    (_, params), (_, target_params) = models()
    tokens, valid = left_padded(PROMPTS)
    flat = dict(max_turns=2, init_branches=3, branch=1, width=3, top_k=3)
    out = rollout(params, target_params, tokens, valid, jax.random.key(5), **flat)
    leaves = out.leaf_r.reshape(len(PROMPTS), -1).sum(axis=1)
    np.testing.assert_array_equal(leaves, [3, 3])  # every dialogue is one leaf, whenever it ends
    turns = out.turns_r.reshape(len(PROMPTS), -1)
    assert np.all(np.asarray(out.calls_b) <= max_target_calls(**flat))
    # without branching, the turns played are the target calls plus the turns pruned by format
    np.testing.assert_array_equal(out.calls_b + out.malformed_b, turns.sum(axis=1))


def test_rollout_jit_equals_no_jit():
    (graphdef, params), (target_def, target_params) = models()
    tokens, valid = left_padded(PROMPTS[:1])
    rng = jax.random.key(3)
    tree = dict(TREE, max_turns=2)
    jitted = rollout(params, target_params, tokens, valid, rng, **tree)
    eager = dialogue_tree_rollout(nnx.merge(graphdef, params), nnx.merge(target_def, target_params), RULES, tokens,
                                  valid, rng, SAMPLING, pad_id=PAD, **tree)
    for a, b in zip(jax.tree.leaves(jitted), jax.tree.leaves(eager), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-12)


def test_batch_masks_and_groups():
    (_, params), (_, target_params) = models()
    tokens, valid = left_padded(PROMPTS)
    out = rollout(params, target_params, tokens, valid, jax.random.key(3), **TREE)
    per_goal = TREE["max_turns"] * TREE["width"] * TREE["branch"]
    data = {"prompt_bp": tokens, "prompt_valid_bp": valid}
    batch, metrics = tree_batch(data, out, per_goal, jnp.int32(4))
    assert batch.group_size == per_goal and batch.batch_size == 2 * per_goal
    np.testing.assert_array_equal(batch.group_b, np.arange(2 * per_goal) // per_goal)
    trained = np.asarray(batch.mask_bt) > 0
    turn = np.asarray(batch.aux["turn_bt"])
    # a trained token is an attacker token: the sampler gave it a log-prob; the separator and
    # the target's replies (everything after a well-formed turn within its turn index) are not
    assert np.all(np.asarray(batch.behavior_logp_bt)[~trained] == 0)
    assert not np.any(trained & (np.asarray(batch.response_bt) == SEP))
    assert np.all(turn[trained] >= 0)
    np.testing.assert_allclose(metrics["reward_mean"], out.success_r.sum() / out.leaf_r.sum())


# --- the advantage, the mask and the loss, by hand ---------------------------------------------


def test_leaf_advantage_by_hand():
    reward = jnp.asarray([1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0])
    leaf = jnp.asarray([1, 1, 1, 1, 0, 0, 1, 1, 0], jnp.float64)
    group = jnp.asarray([0, 0, 0, 0, 0, 0, 1, 1, 1])
    a = 0.5 / (math.sqrt(1 / 3) + 1e-6)  # leaves 1, 0, 0, 1: mean 0.5, unbiased std √(1/3)
    np.testing.assert_allclose(leaf_group_advantages(reward, group, leaf), [a, -a, -a, a, 0, 0, 0, 0, 0],
                               rtol=1e-12)


def test_adaptive_mask_by_hand():
    response = jnp.asarray([[13, 5, 17], [13, 5, 17], [13, 5, 17]])
    adv = jnp.asarray([[-1.0] * 3, [0.0] * 3, [2.0] * 3])
    np.testing.assert_array_equal(format_token_mask(response, adv, (13, 17)), [[0, 1, 0], [1, 1, 1], [1, 1, 1]])
    np.testing.assert_array_equal(format_token_mask(response, adv, ()), np.ones((3, 3)))


def test_loss_gradient_by_hand():
    """Leaves with rewards 1, 0, 0 of one goal and an empty row: A = (2/3, −1/3, −1/3)/(√(1/3) + ε),
    0; the negative rows lose their format tokens (13, 17); with π_old = π_θ the gradient of the
    seq-mean-token-mean loss w.r.t. log π_t is −A_i M_i,t / Σ_t M_i,t / 3 (three rows with tokens)."""
    alg = dialtree_rpo(format_tokens=(13, 17), kl_coef=0.0)
    response = jnp.asarray([[13, 5, 17], [13, 5, 17], [5, 5, 0], [0, 0, 0]])
    mask = jnp.asarray([[1, 1, 1], [1, 1, 1], [1, 1, 0], [0, 0, 0]], jnp.float32)
    batch = Batch(prompt_bp=jnp.ones((4, 1), jnp.int32), prompt_valid_bp=jnp.ones((4, 1), bool),
                  response_bt=response, mask_bt=mask, reward_b=jnp.asarray([1.0, 0.0, 0.0, 0.0]),
                  group_b=jnp.zeros((4,), jnp.int32), aux={"dialogue_leaf_b": jnp.asarray([1.0, 1.0, 1.0, 0.0])},
                  group_size=4)
    prepared, _ = alg.prepare.apply(batch, alg.prepare.init(batch), rng=jax.random.key(0), step=0)
    s = math.sqrt(1 / 3) + 1e-6
    adv = np.array([2 / 3, -1 / 3, -1 / 3, 0.0]) / s
    np.testing.assert_allclose(prepared.mask_bt, [[1, 1, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    np.testing.assert_allclose(prepared.adv_bt[:, 0], [adv[0], 0.0, adv[2], 0.0], rtol=1e-6)

    def loss(logp):
        out, _ = alg.objective.apply(prepared.replace(logp_bt=logp), alg.objective.init(prepared),
                                     rng=jax.random.key(0), step=0)
        return sum(out.losses.values())

    grad = jax.grad(loss)(jnp.full((4, 3), -1.0))
    m = np.asarray(prepared.mask_bt)
    want = -adv[:, None] * m / np.maximum(m.sum(axis=1, keepdims=True), 1) / 3
    np.testing.assert_allclose(grad, want, rtol=1e-5, atol=1e-7)


def test_bad_format_tokens():
    with pytest.raises(ValueError, match=r"algorithm_kwargs.format_tokens has \['\+'\]"):
        dialtree_rpo(format_tokens=["+"])


def _with_leaves(batch: Batch) -> Batch:
    """A rollout batch whose fourth row is an empty row of the tree (not a leaf)."""
    return batch.replace(aux={**batch.aux, "dialogue_leaf_b": np.array([1, 1, 1, 0, 1, 1, 1, 1], np.float32)})


def test_noun_contract_and_one_update():
    alg = dialtree_rpo(format_tokens=(3, 4), kl_coef=0.01)
    batch, other = (_with_leaves(scored(rollout_batch(seed=s), seed=s)) for s in (0, 1))
    prepared = check_transform_contract(alg.prepare, batch, other)
    assert np.all(np.asarray(prepared.adv_bt[3]) == 0)
    other_prepared, _ = alg.prepare.apply(other, alg.prepare.init())
    out = check_transform_contract(alg.objective, prepared, other_prepared)
    assert out.terms == {} and out.losses
    state, metrics, params = train_once(alg, _with_leaves(rollout_batch()))
    assert int(state.step) == 1 and np.isfinite(metrics["loss"]) and "format_masked_frac" in metrics
