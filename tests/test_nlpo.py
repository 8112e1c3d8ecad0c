"""NLPO (polrl.algorithms.nlpo, polrl.collectors.action_mask): the nucleus mask against a numpy
rule and hand values (ties, min_tokens_to_keep, p = 1), the masked log-softmax by hand, the mask
model's refresh schedule, masked sampling against a brute-force teacher-forced recomputation (no
masked token is ever drawn), top_mask = 1 equal to PPO (rows, loss and parameters after a step),
the engine's logits hook, jit == no-jit and the one-line errors. Tiny float64 model, so jitted and
eager runs and the cached decode and the full forward cannot differ by float32 rounding."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from polrl import algorithms, collectors, sharding
from polrl.algorithms.nlpo import masked_log_probs
from polrl.collectors.action_mask import ACTION_MASK, masked_scores, nucleus_mask
from polrl.core import Batch, total_loss
from polrl.models import TransformerConfig
from polrl.rollout import SamplingConfig, engine
from polrl.tasks import Task, token_exact_match
from polrl.train import steps
from tiny_models import tiny_params

V, EOS, PAD, G, PROMPTS = 8, 7, 0, 2, 2
CFG = TransformerConfig(vocab_size=V, d_model=16, num_layers=1, num_heads=2, num_kv_heads=1, mlp_dim=32, max_len=16,
                        dtype=jnp.float64, param_dtype=jnp.float64, value_head=True)
SAMPLING = SamplingConfig(max_new_tokens=4, eos_id=EOS, pad_id=PAD)


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


@functools.lru_cache(maxsize=None)
def _model():
    with jax.enable_x64(True):
        return tiny_params(CFG)


def _context(sampling=SAMPLING):
    task = Task(name="tiny", tokenizer=None, max_prompt_len=3, max_answer_len=3, train=[], test=[],
                host_reward=None, device_reward=token_exact_match)
    template = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), _model()[1])
    return collectors.Context(graphdef=_model()[0], task=task, sampling=sampling, group_size=G,
                              layout=sharding.layout_from_config(None), params_template=template)


def _data(seed, prompts=PROMPTS):
    rng = np.random.default_rng(seed)
    return {"prompt_bp": jnp.asarray(rng.integers(1, V - 1, (prompts, 3)), jnp.int32),
            "prompt_valid_bp": jnp.ones((prompts, 3), bool),
            "answer_ba": jnp.asarray(rng.integers(1, V - 1, (prompts, 3)), jnp.int32),
            "answer_valid_ba": jnp.ones((prompts, 3), bool)}


def _params_at(s):
    """θ_s: the tiny model's parameters moved by a step-dependent amount (distinct per step)."""
    return jax.tree.map(lambda x: x + 0.05 * s * jnp.cos(jnp.arange(x.size, dtype=x.dtype).reshape(x.shape) + s),
                        _model()[1])


def _numpy_nucleus(logits, p, k, eos):
    """The module's rule token by token in float64: rank j kept iff the mass before it ≤ p or
    j < k; a token tied with a kept one is kept; EOS always."""
    out = np.zeros(logits.shape, bool)
    for b, row in enumerate(np.asarray(logits, np.float64)):
        probs = np.exp(row - row.max())
        probs /= probs.sum()
        order = np.argsort(-row, kind="stable")
        before = 0.0
        for j, v in enumerate(order):
            if p >= 1.0 or before <= p or j < k:
                out[b, row == row[v]] = True
            before += probs[v]
        if 0 <= eos < row.size:
            out[b, eos] = True
    return out


def test_nucleus_mask_by_hand():
    log = lambda *p: jnp.log(jnp.asarray([p], jnp.float64))
    # mass before: 0, .5, .8, .95 → p = .7 keeps the two tokens up to the one crossing .7
    np.testing.assert_array_equal(nucleus_mask(log(0.5, 0.3, 0.15, 0.05), 0.7), [[True, True, False, False]])
    # the token after the top one ties two others: all three are kept
    np.testing.assert_array_equal(nucleus_mask(log(0.4, 0.2, 0.2, 0.2), 0.5), [[True, True, True, True]])
    np.testing.assert_array_equal(nucleus_mask(log(0.2, 0.4, 0.2, 0.2), 0.45), [[True, True, True, True]])
    np.testing.assert_array_equal(nucleus_mask(log(0.2, 0.4, 0.2, 0.2), 0.35), [[False, True, False, False]])
    np.testing.assert_array_equal(nucleus_mask(log(0.1, 0.1, 0.7, 0.1), 0.5), [[False, False, True, False]])
    # min_tokens_to_keep widens the nucleus {0} to the 3 most likely; EOS (id 3) is kept anyway
    np.testing.assert_array_equal(nucleus_mask(log(0.7, 0.2, 0.06, 0.04), 0.5, 3), [[True, True, True, False]])
    np.testing.assert_array_equal(nucleus_mask(log(0.7, 0.2, 0.06, 0.04), 0.5, 1, 3), [[True, False, False, True]])
    # p = 1 keeps every token, however small
    np.testing.assert_array_equal(nucleus_mask(jnp.asarray([[0.0, -800.0, -1e30, 5.0]]), 1.0), [[True] * 4])


@pytest.mark.parametrize("p,k,eos", [(0.3, 1, -1), (0.6, 1, 7), (0.9, 3, 2), (0.95, 1, 0), (1.0, 1, -1)])
def test_nucleus_mask_matches_numpy(p, k, eos):
    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 2.0, (64, V))
    logits[:8, 1] = logits[:8, 4]  # ties
    logits[8:16, :] = np.round(logits[8:16, :])  # many ties
    want = _numpy_nucleus(logits, p, k, eos)
    got = nucleus_mask(jnp.asarray(logits), p, k, eos)
    np.testing.assert_array_equal(np.asarray(got), want)
    np.testing.assert_array_equal(np.asarray(jax.jit(nucleus_mask, static_argnums=(1, 2, 3))(jnp.asarray(logits), p, k, eos)),
                                  want)
    if p < 1.0:
        assert not want.all()  # the mask removes tokens, so the comparison can fail


def test_masked_log_softmax_by_hand():
    z = jnp.asarray([[[1.0, 2.0, 0.0, -1.0]]], jnp.float64)
    keep = jnp.asarray([[[True, True, False, True]]])
    y = jnp.asarray([[1]], jnp.int32)
    out = masked_scores(z, keep, y)
    kept = np.array([1.0, 2.0, -1.0])
    logz = np.log(np.exp(kept).sum())
    np.testing.assert_allclose(out["logp_bt"], [[2.0 - logz]], rtol=1e-14)
    probs = np.exp(kept - logz)
    np.testing.assert_allclose(out["entropy_bt"], [[-(probs * np.log(probs)).sum()]], rtol=1e-14)
    # masked logits get no gradient; the kept ones get softmax − onehot, renormalised over the kept set
    grad = jax.grad(lambda z: masked_scores(z, keep, y)["logp_bt"].sum())(z)
    np.testing.assert_allclose(grad[0, 0], [-probs[0], 1.0 - probs[1], 0.0, -probs[2]], rtol=1e-13, atol=1e-15)
    assert np.isfinite(np.asarray(jax.grad(lambda z: masked_scores(z, keep, y)["entropy_bt"].sum())(z))).all()


def test_masked_log_probs_transform_replaces_the_scores():
    rng = np.random.default_rng(1)
    logits = jnp.asarray(rng.normal(size=(2, 3, V)))
    keep = jnp.asarray(rng.random((2, 3, V)) < 0.6).at[:, :, 0].set(True)
    response = jnp.zeros((2, 3), jnp.int32)
    batch = Batch(prompt_bp=jnp.ones((2, 1), jnp.int32), prompt_valid_bp=jnp.ones((2, 1), bool), response_bt=response,
                  mask_bt=jnp.ones((2, 3)), logits_btv=logits, logp_bt=jnp.zeros((2, 3)), entropy_bt=jnp.zeros((2, 3)),
                  aux={ACTION_MASK: keep}, group_size=1)
    out, _ = masked_log_probs().apply(batch, ())
    kept = np.where(np.asarray(keep), np.asarray(logits), -np.inf)
    want = np.asarray(logits)[..., 0] - np.log(np.exp(kept).sum(-1))
    np.testing.assert_allclose(out.logp_bt, want, rtol=1e-13)
    full = np.log(np.exp(np.asarray(logits)).sum(-1))
    np.testing.assert_allclose(out.metrics["mask_kept_mass"], np.mean(np.exp(np.log(np.exp(kept).sum(-1)) - full)),
                               rtol=1e-13)


MU, RUN_PROMPTS, RUN_STEPS = 2, 6, 5


@functools.lru_cache(maxsize=None)
def _run():
    """Steps 0 … 4 of one masked_groups run (top_mask 0.6, at least 2 tokens, μ = 2) with θ_s at
    step s, the collector state threaded: [(batch, collector_state, metrics)]."""
    with jax.enable_x64(True):
        collector = collectors.masked_groups(_context(), top_mask=0.6, min_tokens_to_keep=2, update_every=MU)
        state = steps.init_state(_model()[1], algorithms.nlpo(), jax.random.key(0), collector=collector,
                                 prompts=RUN_PROMPTS)
        cstate, collect, out = state.collector_state, jax.jit(collector.collect), []
        for s in range(RUN_STEPS):
            state = state.replace(step=jnp.int32(s), params=_params_at(s), collector_state=cstate)
            batch, cstate, metrics = collect(cstate, state, _data(s, RUN_PROMPTS), jax.random.key(100 + s))
            out.append((batch, cstate, metrics))
        return out


def test_mask_model_refreshes_every_mu_steps():
    for s, (_, cstate, metrics) in enumerate(_run()):
        held = jax.tree.map(lambda b: b[0], cstate["mask_params"])
        want = _params_at(MU * (s // MU))
        for a, b in zip(jax.tree.leaves(held), jax.tree.leaves(want), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert float(metrics["mask/age"]) == s % MU


@jax.jit
def _teacher_forced_logits(params, batch):
    return steps.score(_model()[0], params, batch, full_logits=True)["logits_btv"]


def test_masked_sampling_against_brute_force():
    """Every step of the run: the recorded mask is the nucleus of the mask model θ_{μ⌊s/μ⌋} from a
    full teacher-forced forward, no drawn token is outside it, and the sampler's log-probs are the
    masked policy's (θ_s)."""
    masked_somewhere = False
    for s, (batch, _, _) in enumerate(_run()):
        keep, valid = np.asarray(batch.aux[ACTION_MASK]), np.asarray(batch.mask_bt) > 0
        logits = _teacher_forced_logits(_params_at(MU * (s // MU)), batch)
        want = nucleus_mask(logits.reshape(-1, V), 0.6, 2, EOS).reshape(keep.shape)
        np.testing.assert_array_equal(keep[valid], np.asarray(want)[valid])
        assert keep[~valid].all()
        masked_somewhere |= not keep[valid].all()
        drawn = np.take_along_axis(keep, np.asarray(batch.response_bt)[..., None], axis=-1)[..., 0]
        assert drawn[valid].all()
        logp = masked_scores(_teacher_forced_logits(_params_at(s), batch), keep, batch.response_bt)["logp_bt"]
        np.testing.assert_allclose(np.asarray(batch.behavior_logp_bt)[valid], np.asarray(logp)[valid],
                                   rtol=2.0 ** -24)  # the sampler's log-probs are stored in float32
    assert masked_somewhere


def test_collector_rows_are_on_policy_under_the_mask():
    """π_old of the rows is the masked policy's log-prob at the sampling parameters, equal to the
    sampler's, so the first ratio is 1; the objective's masked log-probs agree with both."""
    for s, (batch, _, metrics) in enumerate(_run()):
        np.testing.assert_allclose(batch.old_logp_bt * batch.mask_bt, batch.behavior_logp_bt, rtol=1e-6, atol=1e-7)
        logits = _teacher_forced_logits(_params_at(s), batch)
        scored, _ = masked_log_probs().apply(batch.replace(logits_btv=logits, logp_bt=jnp.zeros_like(batch.mask_bt),
                                                           entropy_bt=jnp.zeros_like(batch.mask_bt)), ())
        np.testing.assert_allclose(scored.logp_bt, batch.old_logp_bt, rtol=2.0 ** -24)  # π_old stored in float32
        assert np.isfinite(np.asarray(batch.old_logp_bt)).all()
        assert 2.0 <= float(metrics["mask/kept_tokens"]) < V
        assert int(batch.version_b[0]) == s


def test_top_mask_one_is_ppo():
    """p = 1: the rows are group_samples' bit for bit, π_old is PPO's recomputed one to float32
    storage, and with that π_old NLPO's prepared batch, loss, gradient and AdamW step are PPO's
    (the masked log-probs are the unmasked ones)."""
    ctx = _context()
    masked = collectors.masked_groups(ctx, top_mask=1.0)
    plain = collectors.group_samples(ctx)
    kwargs = dict(kl_coef=0.05, entropy_coef=0.01, learning_rate=1e-2)
    nlpo, ppo = algorithms.nlpo(**kwargs), algorithms.ppo(**kwargs)
    graphdef, params = _model()[0], _params_at(0)
    state = steps.init_state(params, nlpo, jax.random.key(0), collector=masked, prompts=PROMPTS, ref_params=_params_at(1))
    b_mask = jax.jit(masked.collect)(state.collector_state, state, _data(0), jax.random.key(5))[0]
    b_plain = jax.jit(plain.collect)((), state, _data(0), jax.random.key(5))[0]
    for field in ("response_bt", "mask_bt", "behavior_logp_bt", "reward_b"):
        np.testing.assert_array_equal(getattr(b_mask, field), getattr(b_plain, field))
    assert np.asarray(b_mask.aux[ACTION_MASK]).all()
    recomputed = jax.jit(functools.partial(steps.score, graphdef))(params, b_plain)["logp_bt"]
    np.testing.assert_allclose(b_mask.old_logp_bt, recomputed, rtol=2.0 ** -24)

    def step(algorithm, batch):
        batch, _ = steps.prepare(state, batch.replace(old_logp_bt=b_mask.old_logp_bt), algorithm=algorithm,
                                 graphdef=graphdef)

        def loss(params):
            out, _ = algorithm.objective.apply(_scored(batch, params), algorithm.objective.init(None), step=0)
            return total_loss(out), out.losses

        (value, losses), grads = jax.value_and_grad(loss, has_aux=True)(params)
        updates, _ = algorithm.optimizer.update(grads, algorithm.optimizer.init(params), params)
        return batch, value, losses, grads, optax.apply_updates(params, updates)

    p_mask, l_mask, t_mask, g_mask, new_mask = jax.jit(functools.partial(step, nlpo))(b_mask)
    p_plain, l_plain, t_plain, g_plain, new_plain = jax.jit(functools.partial(step, ppo))(b_plain)
    for field in ("adv_bt", "return_bt", "old_value_bt", "ref_logp_bt"):
        np.testing.assert_array_equal(getattr(p_mask, field), getattr(p_plain, field))
    np.testing.assert_allclose(l_mask, l_plain, rtol=1e-12)
    assert set(t_mask) == set(t_plain) and len(t_mask) >= 3
    for key in t_mask:
        np.testing.assert_allclose(t_mask[key], t_plain[key], rtol=1e-12, atol=1e-15, err_msg=key)
    for a, b in zip(jax.tree.leaves(g_mask), jax.tree.leaves(g_plain), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-15)
    # Adam divides by |g| + 1e-8, so a gradient rounding difference δ ≤ 1e-15 moves a parameter ≤ lr·δ/1e-8
    for a, b in zip(jax.tree.leaves(new_mask), jax.tree.leaves(new_plain), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)
    assert max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(new_mask), jax.tree.leaves(params))) > 1e-4


def _scored(batch, params):
    out = steps.score(_model()[0], params, batch, values=True, full_logits=True)
    return batch.replace(**out, terms={}, losses={}, metrics={})


def test_objective_jit_equals_eager_and_masks_the_ppo_loss():
    nlpo, ppo = algorithms.nlpo(), algorithms.ppo()
    state = steps.init_state(_params_at(1), nlpo, jax.random.key(0)).replace(step=jnp.int32(1))
    batch = _run()[1][0]
    batch, _ = jax.jit(functools.partial(steps.prepare, algorithm=nlpo, graphdef=_model()[0]))(state, batch)
    mb = _scored(batch, _params_at(2))
    apply = lambda algorithm, mb: algorithm.objective.apply(mb, algorithm.objective.init(None), step=0)[0].losses
    eager, jitted = apply(nlpo, mb), jax.jit(functools.partial(apply, nlpo))(mb)
    for key in eager:
        np.testing.assert_allclose(jitted[key], eager[key], rtol=1e-12, err_msg=key)
    assert not np.asarray(batch.aux[ACTION_MASK])[np.asarray(batch.mask_bt) > 0].all()
    assert abs(float(eager["pg"]) - float(apply(ppo, mb)["pg"])) > 1e-6  # the mask changes the loss


def test_logits_hook_unused_and_identity_are_the_plain_decode():
    graphdef, params = _model()
    data = _data(2)

    def decode(params, prompt, valid, rng, hooked):
        model = nnx.merge(graphdef, params)
        slots = engine.repeat(engine.extend(model, engine.init_slots(model, PROMPTS, 3 + SAMPLING.max_new_tokens),
                                            prompt, valid), G)
        seen = lambda carry, i, token_s, drew_s, logits: (logits, carry + drew_s.astype(jnp.int32))
        hook = engine.LogitsHook(seen, jnp.zeros((PROMPTS * G,), jnp.int32)) if hooked else None
        return engine.generate(model, slots, rng, SAMPLING, commit_last=False, logits_hook=hook)[0]

    run = jax.jit(decode, static_argnums=4)
    plain = run(params, data["prompt_bp"], data["prompt_valid_bp"], jax.random.key(3), False)
    hooked = run(params, data["prompt_bp"], data["prompt_valid_bp"], jax.random.key(3), True)
    assert plain.hook_carry is None
    for field in ("tokens_sn", "logp_sn", "mask_sn", "length_s", "finish_s"):
        np.testing.assert_array_equal(getattr(hooked, field), getattr(plain, field))
    # the hook saw every drawn token but the last (drawn at step i − 1, reported at step i)
    np.testing.assert_array_equal(hooked.hook_carry, np.maximum(np.asarray(plain.length_s) - 1, 0))


def test_errors():
    ctx = _context()
    with pytest.raises(ValueError, match=r"masked_groups: top_mask=0 must be in \(0, 1\]"):
        collectors.masked_groups(ctx, top_mask=0)
    with pytest.raises(ValueError, match=r"min_tokens_to_keep=0 must be an int >= 1"):
        collectors.masked_groups(ctx, min_tokens_to_keep=0)
    with pytest.raises(ValueError, match=r"update_every=0 must be an int >= 1"):
        collectors.masked_groups(ctx, update_every=0)
    host = dataclasses.replace(ctx, task=dataclasses.replace(ctx.task, device_reward=None))
    with pytest.raises(ValueError, match=r"task 'tiny' has only a host reward"):
        collectors.masked_groups(host)
    with pytest.raises(TypeError, match=r"nlpo\(\) got unexpected keyword argument\(s\) \['top_mask'\]"):
        algorithms.nlpo(top_mask=0.9)
    plain = collectors.group_samples(ctx)
    example = plain.example(PROMPTS)
    batch = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), example)
    batch = batch.replace(logits_btv=jnp.zeros(batch.mask_bt.shape + (V,)), logp_bt=jnp.zeros(batch.mask_bt.shape),
                          entropy_bt=jnp.zeros(batch.mask_bt.shape))
    with pytest.raises(ValueError, match=r"collect with collectors.masked_groups"):
        masked_log_probs().apply(batch, ())
