"""Sampler: log-prob consistency with the training forward, EOS/pad/mask semantics,
greedy / top-k / top-p behaviour, early stop, and no recompilation."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from polrl.models import Transformer, TransformerConfig
from polrl.rollout import SamplingConfig, make_sampler
from polrl.rollout.sampler import sample
from polrl.rollout.sampling import draw as draw_tokens
from compile_events import compilations

CONFIG = TransformerConfig(vocab_size=61, d_model=32, num_layers=2, num_heads=4, num_kv_heads=2,
                           mlp_dim=48, max_len=32)
N = 6
# Three LEFT-padded prompts of lengths 3, 5 and 1.
PROMPT = jnp.array([[0, 0, 11, 12, 13], [21, 22, 23, 24, 25], [0, 0, 0, 0, 31]], jnp.int32)
VALID = PROMPT != 0


@functools.lru_cache(maxsize=None)
def model_parts():
    return nnx.split(Transformer(CONFIG, rngs=nnx.Rngs(0)), nnx.Param)


@functools.lru_cache(maxsize=None)
def sampler(config: SamplingConfig):
    return make_sampler(model_parts()[0], config)


def run(config, seed=0, params=None):
    params = model_parts()[1] if params is None else params
    return sampler(config)(params, PROMPT, VALID, jax.random.key(seed))


@jax.jit
def training_logits(params, response_bt):
    """Logits that predict each response token, from one forward over prompt ++ response."""
    tokens = jnp.concatenate([PROMPT, response_bt], axis=1)
    valid = jnp.concatenate([VALID, jnp.ones_like(response_bt, bool)], axis=1)
    logits = nnx.merge(model_parts()[0], params)(tokens, jnp.cumsum(valid, axis=1) - 1, valid)
    return logits[:, PROMPT.shape[1] - 1:-1]


def check_semantics(out, config):
    """mask = 1 up to and including the first EOS; pad and zero log-prob after it."""
    response, mask = np.asarray(out.response_bt), np.asarray(out.mask_bt)
    length = np.asarray(out.length_b)
    assert response.shape == mask.shape == out.logp_bt.shape == (PROMPT.shape[0], N)
    np.testing.assert_array_equal(mask, np.arange(N)[None] < length[:, None])
    np.testing.assert_array_equal(response[mask == 0], config.pad_id)
    np.testing.assert_array_equal(np.asarray(out.logp_bt)[mask == 0], 0.0)
    for row, n in zip(response, length):  # a row shorter than N ends with its only EOS
        eos_at = list(np.flatnonzero(row[:n] == config.eos_id))
        assert (eos_at == [n - 1]) if n < N else (eos_at in ([], [N - 1])), (row, n)


@pytest.mark.parametrize("config", [
    SamplingConfig(max_new_tokens=N, eos_id=60),
    SamplingConfig(max_new_tokens=N, eos_id=60, temperature=0.7, top_k=8, top_p=0.9),
    SamplingConfig(max_new_tokens=N, eos_id=60, temperature=0.0),
], ids=["t1", "t0.7-topk-topp", "greedy"])
def test_logp_matches_training_forward(config):
    out = run(config)
    check_semantics(out, config)
    temperature = config.temperature or 1.0
    logits = training_logits(model_parts()[1], out.response_bt) / temperature
    logp = jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), out.response_bt[..., None],
                               axis=-1)[..., 0]
    np.testing.assert_allclose(logp * out.mask_bt, out.logp_bt, atol=1e-5, rtol=0)


def test_greedy_is_deterministic_and_is_the_argmax():
    config = SamplingConfig(max_new_tokens=N, eos_id=60, temperature=0.0)
    a, b = run(config, seed=0), run(config, seed=1)
    np.testing.assert_array_equal(a.response_bt, b.response_bt)
    argmax = jnp.argmax(training_logits(model_parts()[1], a.response_bt), axis=-1)
    np.testing.assert_array_equal(jnp.where(a.mask_bt > 0, argmax, -1),
                                  jnp.where(a.mask_bt > 0, a.response_bt, -1))


def test_top_k_1_equals_greedy():
    greedy = run(SamplingConfig(max_new_tokens=N, eos_id=60, temperature=0.0))
    top1 = run(SamplingConfig(max_new_tokens=N, eos_id=60, top_k=1), seed=3)
    np.testing.assert_array_equal(top1.response_bt, greedy.response_bt)
    np.testing.assert_allclose(top1.logp_bt, greedy.logp_bt, atol=1e-6)


def test_eos_stops_row_and_pads_after():
    greedy = np.asarray(run(SamplingConfig(max_new_tokens=N, eos_id=60, temperature=0.0))
                        .response_bt)
    eos = int(greedy[0, 2])
    first = int(np.flatnonzero(greedy[0] == eos)[0])
    config = SamplingConfig(max_new_tokens=N, eos_id=eos, pad_id=59, temperature=0.0)
    out = run(config)
    check_semantics(out, config)
    assert int(out.length_b[0]) == first + 1
    np.testing.assert_array_equal(out.response_bt[0, :first + 1], greedy[0, :first + 1])


def test_early_stop_when_eos_is_always_the_argmax():
    """A zero final-norm scale makes every logit 0, so argmax (first index) is token 0."""
    graphdef, params = model_parts()
    flat = dict(nnx.to_flat_state(params))
    flat[("final_norm", "scale")] = flat[("final_norm", "scale")].replace(
        jnp.zeros((CONFIG.d_model,)))
    config = SamplingConfig(max_new_tokens=N, eos_id=0, pad_id=1, temperature=0.0,
                            eos_check_every=3)
    out = run(config, params=nnx.from_flat_state(flat))
    check_semantics(out, config)
    np.testing.assert_array_equal(out.length_b, 1)
    np.testing.assert_array_equal(out.response_bt[:, 0], 0)


def test_unreachable_eos_runs_every_step_without_the_all_done_test():
    """eos_id outside [0, vocab): every row generates N tokens, the samples equal those of a
    reachable EOS that is never drawn, and the loop condition has no reduction over rows."""
    unreachable = SamplingConfig(max_new_tokens=N, eos_id=CONFIG.vocab_size)
    out = run(unreachable)
    check_semantics(out, unreachable)
    np.testing.assert_array_equal(out.length_b, N)
    drawn = set(np.asarray(out.response_bt).ravel())
    never = next(t for t in range(CONFIG.vocab_size) if t not in drawn)
    same = run(SamplingConfig(max_new_tokens=N, eos_id=never))
    for field in ("response_bt", "logp_bt", "mask_bt"):
        np.testing.assert_array_equal(getattr(out, field), getattr(same, field))

    def cond_primitives(config):
        jaxpr = jax.make_jaxpr(functools.partial(sample, model_parts()[0], config=config))(
            model_parts()[1], PROMPT, VALID, jax.random.key(0))
        loop = next(e for e in jaxpr.jaxpr.eqns if e.primitive.name == "while")
        return {e.primitive.name for e in loop.params["cond_jaxpr"].jaxpr.eqns}

    assert "reduce_or" in cond_primitives(SamplingConfig(max_new_tokens=N, eos_id=never))
    assert not {"reduce_or", "reduce_and"} & cond_primitives(unreachable)


def test_different_rng_gives_different_samples():
    config = SamplingConfig(max_new_tokens=N, eos_id=60)
    assert not np.array_equal(run(config, seed=0).response_bt, run(config, seed=1).response_bt)


def test_second_call_does_not_recompile():
    config = SamplingConfig(max_new_tokens=N, eos_id=60)
    sample = sampler(config)
    params = model_parts()[1]
    jax.block_until_ready(sample(params, PROMPT, VALID, jax.random.key(0)))
    # Fresh values, same shapes; built before counting.
    params2 = jax.tree.map(lambda x: x * 1.5, params)
    prompt2, key2 = (PROMPT + 1) % CONFIG.vocab_size, jax.random.key(7)
    with compilations() as compiled:
        jax.block_until_ready(sample(params2, prompt2, VALID, key2))
    assert compiled == []


@pytest.mark.parametrize("top_k, top_p, min_p, support", [
    (0, 1.0, 0.0, 10),   # plain softmax
    (3, 1.0, 0.0, 3),    # top-3
    (0, 0.5, 0.0, 2),    # nucleus: p sorted = .47, .23, ... → mass before 2nd is .47 < .5
    (0, 1.0, 0.15, 3),   # min-p: p ≥ .15 · .47 = .0705 keeps .47, .23, .08
    (2, 1.0, 0.15, 2),   # top-2, then min-p (keeps both)
])
def test_draw_frequencies_match_the_truncated_softmax(top_k, top_p, min_p, support):
    logits = jnp.log(jnp.array([0.02, 0.47, 0.05, 0.23, 0.04, 0.08, 0.03, 0.03, 0.02, 0.03]))
    rows = 20000
    config = SamplingConfig(max_new_tokens=1, eos_id=-1, top_k=top_k, top_p=top_p, min_p=min_p)
    draw = jax.jit(lambda u: draw_tokens(jnp.tile(logits, (rows, 1)), u, config))
    token, logp = draw(jax.random.uniform(jax.random.key(0), (rows,)))
    np.testing.assert_allclose(logp, jax.nn.log_softmax(logits)[token], atol=1e-6)
    probs = np.asarray(jax.nn.softmax(logits))
    kept = np.argsort(-probs)[:support]
    expected = np.zeros_like(probs)
    expected[kept] = probs[kept] / probs[kept].sum()
    freq = np.bincount(np.asarray(token), minlength=10) / rows
    np.testing.assert_allclose(freq, expected, atol=0.015)
    assert set(np.unique(np.asarray(token))) <= set(kept.tolist())


def test_num_samples_prefills_once_and_equals_repeated_prompts():
    """G samples per prompt from one prefill are the samples of the G-times repeated prompts."""
    from polrl.rollout import sample

    config = SamplingConfig(max_new_tokens=N, eos_id=3, temperature=1.0)
    graphdef, params = model_parts()
    key = jax.random.key(4)
    grouped = jax.jit(lambda p: sample(graphdef, p, PROMPT, VALID, key, config, num_samples=4))(params)
    repeated = jax.jit(lambda p: sample(graphdef, p, jnp.repeat(PROMPT, 4, 0), jnp.repeat(VALID, 4, 0), key,
                                        config))(params)
    assert grouped.response_bt.shape == (12, N)
    np.testing.assert_array_equal(grouped.response_bt, repeated.response_bt)
    np.testing.assert_allclose(grouped.logp_bt, repeated.logp_bt, atol=1e-5)
    np.testing.assert_array_equal(grouped.mask_bt, repeated.mask_bt)
    assert len({tuple(r) for r in np.asarray(grouped.response_bt[:4])}) > 1  # samples differ
