"""TreePO tree rollouts (polrl.collectors.tree): the fork allotment by hand, branching off equals
flat group sampling bit for bit, and every leaf of a branching tree equals a brute-force sampler
that re-runs the whole path through the model, drawing each token with the uniform of the slot
that decoded it.

The rollouts run on a float64 model, where cached and uncached computations agree to ~1e-15, so
a sampled token can only differ on a tie, not by float32 rounding of one CPU.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from polrl import collectors
from polrl.collectors.tree import FIELD, allot_forks, check_tree, tree_rollout, widths
from polrl.models import TransformerConfig
from polrl.rollout import SamplingConfig, sample
from polrl.rollout.sampling import draw
from tiny_models import tiny_params

V = 13
CFG = TransformerConfig(vocab_size=V, d_model=16, num_layers=2, num_heads=4, num_kv_heads=2, mlp_dim=24,
                        max_len=32, dtype=jnp.float64, param_dtype=jnp.float64)
EOS = 2
PROMPTS = [[1, 5, 7], [1, 9], [1, 3, 4, 6, 8]]
BRUTE_PROMPTS = PROMPTS + [[1, 11], [1, 4, 4]]
SAMPLING = SamplingConfig(max_new_tokens=12, eos_id=EOS)


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


@functools.lru_cache(maxsize=None)
def parts():
    with jax.enable_x64(True):
        return tiny_params(CFG, seed=0)


def left_padded(prompts, width=6):
    tokens = np.zeros((len(prompts), width), np.int32)
    for i, p in enumerate(prompts):
        tokens[i, width - len(p):] = p
    return jnp.asarray(tokens), jnp.asarray(tokens != 0)


@functools.partial(jax.jit, static_argnames=("config", "leaves", "segment_len", "init_branches", "branching", "branch_on"))
def rollout(params, tokens, valid, rng, config, **tree):
    return tree_rollout(nnx.merge(parts()[0], params), tokens, valid, rng, config, **tree)


@functools.partial(jax.jit, static_argnums=2)
def next_token(seq, u, config):
    """The draw after the real tokens of ``seq`` (right-padded with -1), from a full forward."""
    graphdef, params = parts()
    valid = seq >= 0
    logits = nnx.merge(graphdef, params)(jnp.maximum(seq, 0)[None], jnp.arange(seq.shape[0])[None], valid[None])
    return draw(logits[:, valid.sum() - 1], u[None], config)


# --- the allotment, by hand ---------------------------------------------------------------


def test_widths_and_checks():
    assert widths(5, 8, 2, 2) == (2, 4, 8, 8, 8)
    assert widths(3, 6, 1, 3) == (1, 3, 6)
    check_tree(12, leaves=8, segment_len=3, init_branches=2, branching=2)
    with pytest.raises(ValueError, match=r"reach 4 of leaves=8 paths; raise branching"):
        check_tree(6, leaves=8, segment_len=3, init_branches=2, branching=2)
    with pytest.raises(ValueError, match=r"segment_len=9 must be an int in \[1, rollout.max_new_tokens=8\]"):
        check_tree(8, leaves=4, segment_len=9, init_branches=1, branching=2)
    with pytest.raises(ValueError, match=r"init_branches=5 must be an int in \[1, leaves=4\]"):
        check_tree(8, leaves=4, segment_len=2, init_branches=5, branching=2)


def test_allot_forks_by_hand():
    # prompt 0: active slots 0, 2 (surprise 0.1, 0.9), slot 1 finished, slots 3..5 free; width 4
    #   → n = min(3, 4 − 2) = 2 forks into free slots 3, 4.
    # prompt 1: no active path, slot 0 finished, 5 free; width 4 → 4 forks from the root (1..4).
    # prompt 2: 3 active, width 4 → 1 fork (slot 3 copies slot 0); with width 2 (a ≥ width) none.
    active = np.array([[1, 0, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0]], bool)
    used = np.array([[1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0]], bool)
    surprise = np.array([[0.1, 5.0, 0.9, 0, 0, 0], [0] * 6, [0] * 6], np.float32)
    take, src, root = allot_forks(active, used, surprise, 4, "uniform")
    np.testing.assert_array_equal(take, [[0, 0, 0, 1, 1, 0], [0, 1, 1, 1, 1, 0], [0, 0, 0, 1, 0, 0]])
    np.testing.assert_array_equal(root, [False, True, False])
    np.testing.assert_array_equal(src[0, 3:5], [0, 2])  # round-robin in slot order
    assert src[2, 3] == 0
    assert not allot_forks(active[2:], used[2:], surprise[2:], 2, "uniform")[0].any()
    take, src, _ = allot_forks(active[:1], used[:1], surprise[:1], 3, "uncertainty")
    np.testing.assert_array_equal(take, [[0, 0, 0, 1, 0, 0]])
    assert src[0, 3] == 2  # the most uncertain active path branches (the finished slot 1 never does)
    # Budget transfer: width 6 with 2 active paths, 3 free → 3 forks, the uncertain path first.
    take, src, _ = allot_forks(active[:1], used[:1], surprise[:1], 6, "uncertainty")
    np.testing.assert_array_equal(take, [[0, 0, 0, 1, 1, 1]])
    np.testing.assert_array_equal(src[0, 3:], [2, 0, 2])
    with pytest.raises(ValueError, match="branch_on='entropy'"):
        allot_forks(active, used, surprise, 4, "entropy")


# --- equivalences on the float64 model ------------------------------------------------------


def test_branching_off_is_flat_group_sampling():
    """init_branches = L: every path leaves the root at once, nothing forks, and the rollout is
    ``sample(…, num_samples=L)`` for the same rng (the last segment shorter: 3 does not divide 10)."""
    segment_len = 3
    graphdef, params = parts()
    tokens, valid = left_padded(PROMPTS)
    config = SamplingConfig(max_new_tokens=10, eos_id=EOS)
    rng = jax.random.key(4)
    flat = sample(graphdef, params, tokens, valid, rng, config, num_samples=4)
    out = rollout(params, tokens, valid, rng, config, leaves=4, segment_len=segment_len, init_branches=4, branching=1)
    np.testing.assert_array_equal(out.tokens_bn, flat.response_bt)
    np.testing.assert_array_equal(out.mask_bn, flat.mask_bt)
    np.testing.assert_allclose(out.logp_bn, flat.logp_bt, rtol=0, atol=1e-12)
    assert int(out.sampled) == int(flat.length_b.sum()) and int(out.fallbacks) == 0
    # Each row decoded every one of its segments itself: its node at every depth is its own slot.
    segments = -(-np.asarray(flat.length_b) // segment_len)
    for row, node in enumerate(np.asarray(out.node_bd)):
        np.testing.assert_array_equal(node, np.where(np.arange(node.shape[0]) < segments[row], row, -1))


def replay_leaf(prompt, node, uniform_ns, config, segment_len):
    """Brute force: the leaf's token t is the draw with u[t, slot that decoded segment t // l];
    a path restarted from the root after depth 0 stops when the rollout's segments run out."""
    seq, tokens, logps = list(prompt), [], []
    for t in range(config.max_new_tokens):
        slot = node[t // segment_len]
        if slot < 0:
            assert t % segment_len == 0 and t < config.max_new_tokens
            break
        padded = jnp.asarray(seq + [-1] * (CFG.max_len - len(seq)), jnp.int32)
        token, logp = next_token(padded, jnp.asarray(uniform_ns[t, slot]), config)
        tokens.append(int(token[0]))
        logps.append(float(logp[0]))
        seq.append(tokens[-1])
        if tokens[-1] == config.eos_id:
            break
    return tokens, logps


@pytest.mark.parametrize("branch_on", ["uniform", "uncertainty"])
def test_every_leaf_equals_brute_force(branch_on):
    """Forks share prefixes, early-finished paths stop, free slots fall back to the root; each leaf
    is still exactly the path a sampler without a cache draws with the same uniforms."""
    _, params = parts()
    prompts = BRUTE_PROMPTS
    tokens, valid = left_padded(prompts)
    config = SAMPLING
    l, leaves = 3, 4
    rng = jax.random.key(2)
    out = rollout(params, tokens, valid, rng, config, leaves=leaves, segment_len=l, init_branches=1,
                  branching=2, branch_on=branch_on)
    uniform = np.asarray(jax.random.uniform(rng, (12, len(prompts) * leaves)))
    node = np.asarray(out.node_bd)
    for row in range(len(prompts) * leaves):
        want, logps = replay_leaf(prompts[row // leaves], node[row], uniform, config, l)
        n = len(want)
        np.testing.assert_array_equal(np.asarray(out.tokens_bn[row, :n]), want)
        np.testing.assert_allclose(np.asarray(out.logp_bn[row, :n]), logps, rtol=0, atol=1e-10)
        np.testing.assert_array_equal(np.asarray(out.mask_bn[row]), np.arange(12) < n)
        np.testing.assert_array_equal(node[row] >= 0, np.arange(4) < -(-n // l))
    # A tree: rows that share a node share every ancestor of it and the tokens up to its end;
    # node ids never cross prompts.
    for d in range(4):
        for i in set(node[:, d][node[:, d] >= 0]):
            members = np.flatnonzero(node[:, d] == i)
            assert (node[members, : d + 1] == node[members[0], : d + 1]).all()
            assert len(set(members // leaves)) == 1
            prefix = np.asarray(out.tokens_bn)[members, : (d + 1) * l]
            assert (prefix == prefix[0]).all()
    # Decoded tokens: each (depth, node) once.
    lengths = np.asarray(out.mask_bn).sum(axis=1)
    decoded = {}
    for row in range(node.shape[0]):
        for d in range(4):
            if node[row, d] >= 0:
                decoded[(d, node[row, d])] = min(l, lengths[row] - d * l)
    assert int(out.sampled) == sum(decoded.values()) < lengths.sum()
    assert int(out.fallbacks) > 0  # this seed exercises the fallback to the root


# --- the collector ------------------------------------------------------------------------

def _context(device_reward):
    from polrl import sharding
    from polrl.tasks import Task

    task = Task(name="tiny", tokenizer=None, max_prompt_len=6, max_answer_len=3, train=[], test=[],
                host_reward=None, device_reward=device_reward)
    return collectors.Context(graphdef=parts()[0], task=task, sampling=SAMPLING, group_size=4,
                              layout=sharding.layout_from_config(None))


def _state():
    from polrl import algorithms
    from polrl.train import steps

    return steps.init_state(parts()[1], algorithms.treepo(), jax.random.key(0)).replace(step=jnp.int32(7))


def _data():
    tokens, valid = left_padded(BRUTE_PROMPTS)
    answer = jnp.asarray([[5, EOS, 0], [9, 9, EOS], [EOS, 0, 0], [5, EOS, 0], [12, EOS, 0]], jnp.int32)
    return {"prompt_bp": tokens, "prompt_valid_bp": valid, "answer_ba": answer, "answer_valid_ba": answer != 0}


def test_collector_rows_tree_and_metrics():
    """The collector's rows are the rollout's leaves (the brute-force test's tree), with local
    node ids, the verifier's rewards and the tree metrics."""
    from polrl.tasks import token_exact_match

    collector = collectors.tree(_context(token_exact_match), segment_len=3, init_branches=1, branching=2,
                                branch_on="uncertainty")
    batch, _, metrics = jax.jit(collector.collect)((), _state(), _data(), jax.random.key(2))
    example = collector.example(5)
    assert [(x.shape, x.dtype) for x in jax.tree.leaves(batch)] == [(x.shape, x.dtype) for x in jax.tree.leaves(example)]
    assert batch.group_size == 4 and batch.aux[FIELD].shape == (20, 4)
    np.testing.assert_array_equal(batch.group_b, np.arange(20) // 4)
    np.testing.assert_array_equal(batch.version_b, 7)
    out = rollout(parts()[1], *left_padded(BRUTE_PROMPTS), jax.random.key(2), SAMPLING, leaves=4, segment_len=3,
                  init_branches=1, branching=2, branch_on="uncertainty")
    np.testing.assert_array_equal(batch.response_bt, out.tokens_bn)
    node = np.asarray(batch.aux[FIELD])
    np.testing.assert_array_equal(node, np.where(out.node_bd >= 0, out.node_bd % 4, -1))
    assert node.max() < 4 and (node[:, 0] >= 0).all()  # local leaf ids; every row is a path
    answers = np.repeat(np.asarray(_data()["answer_ba"]), 4, 0), np.repeat(np.asarray(_data()["answer_valid_ba"]), 4, 0)
    np.testing.assert_array_equal(batch.reward_b, token_exact_match(batch.response_bt, batch.mask_bt, *answers))
    assert float(metrics["sampled_tokens"]) == float(out.sampled) < float(metrics["response_tokens"])
    assert float(metrics["tree/fallback_paths"]) == float(out.fallbacks) > 0
    np.testing.assert_allclose(metrics["tree/mean_depth"], (node >= 0).sum(1).mean(), rtol=1e-6)


def first_token_reward(response_bt, mask_bt, answer_ba, answer_valid_ba):
    """1 when the first response token is the answer's first token (a verifier that pays often)."""
    return (response_bt[:, 0] == answer_ba[:, 0]).astype(jnp.float32)


def test_collector_with_branching_off_equals_group_samples():
    ctx = _context(first_token_reward)
    run = lambda c: jax.jit(c.collect)((), _state(), _data(), jax.random.key(5))[0]
    flat = run(collectors.group_samples(ctx))
    tree = run(collectors.tree(ctx, segment_len=5, init_branches=4, branching=1))
    for name in ("response_bt", "mask_bt", "reward_b", "group_b", "version_b", "prompt_bp"):
        np.testing.assert_array_equal(getattr(tree, name), getattr(flat, name))
    np.testing.assert_allclose(tree.behavior_logp_bt, flat.behavior_logp_bt, rtol=0, atol=1e-12)
    assert 0 < float(tree.reward_b.sum()) < 20  # the verifier sees both outcomes


def test_collector_errors():
    from polrl.tasks import token_exact_match

    with pytest.raises(ValueError, match="task 'tiny' has only a host reward"):
        collectors.tree(_context(None), segment_len=3)
    with pytest.raises(ValueError, match="branch_on='random'"):
        collectors.tree(_context(token_exact_match), segment_len=3, branch_on="random")
    with pytest.raises(ValueError, match=r"reach 2 of leaves=4 paths"):
        collectors.tree(_context(token_exact_match), segment_len=12, init_branches=2)
