"""The rollout engine: every program (extend / generate / fork / release, continuous batching)
equals a brute-force sampler that re-runs the whole sequence through the model without a cache.

The equivalences run on a float64 model, where the cached and uncached computations agree to
~1e-15, so a sampled token can only differ on a tie, not by float32 rounding of one CPU.
"""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from polrl.models import TransformerConfig
from polrl.rollout import SamplingConfig, engine
from polrl.rollout.sampling import draw
from tiny_models import tiny_params

V = 13
CFG = TransformerConfig(vocab_size=V, d_model=16, num_layers=2, num_heads=4, num_kv_heads=2, mlp_dim=24,
                        max_len=48, dtype=jnp.float64, param_dtype=jnp.float64)
EOS = 2


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


# Layer 0 attends only to the last 3 positions (Gemma 2's sliding window), so holes in a cached
# sequence must not shift its window.
SLIDING = dataclasses.replace(CFG, sliding_window=3, sliding_layers=(0,))


@functools.lru_cache(maxsize=None)
def parts(config=CFG):
    with jax.enable_x64(True):
        return tiny_params(config, seed=0)


def model(config=CFG):
    graphdef, params = parts(config)
    return nnx.merge(graphdef, params)


@functools.partial(jax.jit, static_argnums=(2, 3))
def next_token(seq, u, config, model_config=CFG):
    """The draw after the real tokens of ``seq`` (right-padded to max_len with -1), from a full
    forward without a cache."""
    graphdef, params = parts(model_config)
    valid = seq >= 0
    logits = nnx.merge(graphdef, params)(jnp.maximum(seq, 0)[None], jnp.arange(seq.shape[0])[None], valid[None])
    return draw(logits[:, valid.sum() - 1], u[None], config)


def brute_force(prefix: list[int], uniforms, config: SamplingConfig, budget: int, stops=(), model_config=CFG):
    """Tokens, log-probs and finish reason of one row, re-running prefix ++ generated each step."""
    seq, tokens, logps = list(prefix), [], []
    for i in range(budget):
        padded = jnp.asarray(seq + [-1] * (CFG.max_len - len(seq)), jnp.int32)
        token, logp = next_token(padded, jnp.asarray(uniforms[i]), config, model_config)
        token, logp = int(token[0]), float(logp[0])
        tokens.append(token)
        logps.append(logp)
        seq.append(token)
        if token == config.eos_id:
            return tokens, logps, engine.EOS
        if any(tokens[-len(s):] == list(s) for s in stops if len(tokens) >= len(s)):
            return tokens, logps, engine.STOP
    return tokens, logps, engine.LENGTH


def check_row(gen, row, tokens, logps, finish, config):
    n = len(tokens)
    np.testing.assert_array_equal(np.asarray(gen.tokens_sn[row, :n]), tokens)
    np.testing.assert_allclose(np.asarray(gen.logp_sn[row, :n]), logps, rtol=0, atol=1e-10)
    assert int(gen.length_s[row]) == n and int(gen.finish_s[row]) == finish
    np.testing.assert_array_equal(np.asarray(gen.mask_sn[row]), np.arange(gen.mask_sn.shape[1]) < n)
    np.testing.assert_array_equal(np.asarray(gen.tokens_sn[row, n:]), config.pad_id)


PROMPTS = [[1, 5, 7], [1, 9], [1, 3, 4, 6, 8]]


def left_padded(prompts, width):
    tokens = np.zeros((len(prompts), width), np.int32)
    for i, p in enumerate(prompts):
        tokens[i, width - len(p):] = p
    return jnp.asarray(tokens), jnp.asarray(tokens != 0)


@pytest.mark.parametrize("config", [
    SamplingConfig(max_new_tokens=7, eos_id=EOS),
    SamplingConfig(max_new_tokens=7, eos_id=EOS, temperature=0.8, top_k=5, top_p=0.9, min_p=0.05),
    SamplingConfig(max_new_tokens=7, eos_id=EOS, temperature=0.0),
], ids=["t1", "truncated", "greedy"])
def test_extend_then_generate_equals_brute_force(config):
    m = model()
    tokens, valid = left_padded(PROMPTS, 6)
    slots = engine.extend(m, engine.init_slots(m, 3, 6 + 7), tokens, valid)
    rng = jax.random.key(3)
    gen, _ = engine.generate(m, slots, rng, config, commit_last=False)
    uniform = np.asarray(jax.random.uniform(rng, (7, 3)))
    for row, prompt in enumerate(PROMPTS):
        check_row(gen, row, *brute_force(prompt, uniform[:, row], config, 7), config)


@pytest.mark.parametrize("model_config", [CFG, SLIDING], ids=["full", "sliding_window"])
def test_multi_turn_program_equals_brute_force(model_config):
    """generate (stop sequence) → extend a right-padded observation → generate again: each turn
    continues the exact token history, holes and all (a sliding window counts positions, not
    cache columns)."""
    m = model(model_config)
    config = SamplingConfig(max_new_tokens=5, eos_id=EOS)
    stops = ((4, 4), (7,))
    tokens, valid = left_padded(PROMPTS, 6)
    slots = engine.extend(m, engine.init_slots(m, 3, 6 + 5 + 3 + 5), tokens, valid)
    rng1, rng2 = jax.random.key(1), jax.random.key(2)
    turn1, slots = engine.generate(m, slots, rng1, config, stop_sequences=stops)
    obs = jnp.asarray([[0, 10, 11], [12, 0, 0], [10, 0, 10]], jnp.int32)  # holes before, after, inside
    slots = engine.extend(m, slots, obs, obs != 0)
    turn2, _ = engine.generate(m, slots, rng2, config, stop_sequences=stops, commit_last=False)
    u1, u2 = np.asarray(jax.random.uniform(rng1, (5, 3))), np.asarray(jax.random.uniform(rng2, (5, 3)))
    for row, prompt in enumerate(PROMPTS):
        first = brute_force(prompt, u1[:, row], config, 5, stops, model_config)
        check_row(turn1, row, *first, config)
        history = prompt + first[0] + [t for t in np.asarray(obs[row]).tolist() if t]
        check_row(turn2, row, *brute_force(history, u2[:, row], config, 5, stops, model_config), config)


def test_fork_continues_the_source_and_release_empties():
    m = model()
    config = SamplingConfig(max_new_tokens=6, eos_id=EOS)
    tokens, valid = left_padded(PROMPTS, 6)
    slots = engine.init_slots(m, 5, 12)
    slots = engine.extend(m, slots, tokens, valid, ids_k=jnp.array([0, 2, 4]))
    slots = engine.fork(slots, jnp.array([0, 4]), jnp.array([1, 3]))  # 1 ← 0, 3 ← 4
    rng = jax.random.key(5)
    gen, _ = engine.generate(m, slots, rng, config, commit_last=False)
    uniform = np.asarray(jax.random.uniform(rng, (6, 5)))
    for row, prompt in enumerate([PROMPTS[0], PROMPTS[0], PROMPTS[1], PROMPTS[2], PROMPTS[2]]):
        check_row(gen, row, *brute_force(prompt, uniform[:, row], config, 6), config)
    empty = engine.release(slots, jnp.array([1, 3]))
    for name in ("index", "valid_bs"):
        assert not np.asarray(getattr(empty.cache, name))[[1, 3]].any()
    np.testing.assert_array_equal(np.asarray(empty.cache.valid_bs)[[0, 2, 4]], np.asarray(slots.cache.valid_bs)[[0, 2, 4]])


def test_budgets_capacity_and_inactive_slots():
    m = model()
    config = SamplingConfig(max_new_tokens=6, eos_id=V)  # unreachable EOS
    tokens, valid = left_padded(PROMPTS, 5)
    slots = engine.extend(m, engine.init_slots(m, 3, 9), tokens, valid)  # 4 free columns per row
    gen, after = engine.generate(m, slots, jax.random.key(0), config, max_new_s=jnp.array([2, 6, 6]),
                                 active_s=jnp.array([True, True, False]))
    np.testing.assert_array_equal(gen.length_s, [2, 4, 0])
    np.testing.assert_array_equal(gen.finish_s, [engine.LENGTH, engine.CAPACITY, engine.RUNNING])
    np.testing.assert_array_equal(after.cache.index, [7, 9, 5])
    np.testing.assert_array_equal(after.position_s, [3 + 2, 2 + 4, 5])


def test_generate_jit_equals_eager():
    m = model()
    config = SamplingConfig(max_new_tokens=4, eos_id=EOS)
    tokens, valid = left_padded(PROMPTS, 6)
    slots = engine.extend(m, engine.init_slots(m, 3, 10), tokens, valid)
    graphdef, params = parts()
    jitted = jax.jit(lambda p, s: engine.generate(nnx.merge(graphdef, p), s, jax.random.key(0), config))(params, slots)
    eager = engine.generate(m, slots, jax.random.key(0), config)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=1e-12), jitted, eager)


@pytest.mark.parametrize("refill_every, num_slots", [(1, 3), (3, 4)])
def test_continuous_batching_equals_brute_force_per_request(refill_every, num_slots):
    """8 requests (groups of 2 over 4 prefilled prompts, varied budgets) through 3 slots (the
    busy ones compacted into 1 when nothing is pending) or 4 slots (compacted into 2, then 1)."""
    m = model()
    config = SamplingConfig(max_new_tokens=6, eos_id=EOS)
    prompts = PROMPTS + [[1, 11]]
    tokens, valid = left_padded(prompts, 5)
    bank = engine.extend(m, engine.init_slots(m, 4, 5), tokens, valid)
    prompt_r = jnp.arange(8) // 2
    budget_r = jnp.array([6, 1, 4, 6, 2, 6, 5, 3])
    rng = jax.random.key(7)
    gen = engine.serve(m, bank, prompt_r, rng, config, num_slots=num_slots, max_new_r=budget_r,
                       refill_every=refill_every, min_slots=1)
    uniform = np.asarray(jax.random.uniform(rng, (8, 6)))
    for r in range(8):
        check_row(gen, r, *brute_force(prompts[r // 2], uniform[r], config, int(budget_r[r])), config)


def test_group_sampling_forks_one_prefill():
    """``sample`` with G samples runs the prompt forward once, not G times (the prefill is a
    [B, P] forward in the program, not [B·G, P])."""
    from polrl.rollout import sample

    graphdef, params = parts()
    tokens, valid = left_padded(PROMPTS, 6)
    config = SamplingConfig(max_new_tokens=3, eos_id=EOS)
    program = str(jax.make_jaxpr(lambda p: sample(graphdef, p, tokens, valid, jax.random.key(0), config, num_samples=4))(params))
    assert "f64[3,6,16]" in program and "f64[12,6,16]" not in program
