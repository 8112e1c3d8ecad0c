"""Tests for polrl.diffusion: the masked-diffusion model's ELBO, the unmasking sampler, BGPO."""
import importlib
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from polrl.diffusion import bgpo, elbo, sampler, train
from polrl.diffusion.model import MaskedDiffusionLM, diffusion_config, mask_id
from polrl.train.metrics import read_metrics

NUM_TOKENS = 4  # real ids 0..3, mask id 4


def tiny_model(seed=0, dtype=jnp.float64):
    config = diffusion_config(NUM_TOKENS, d_model=8, num_layers=1, num_heads=2, num_kv_heads=1, mlp_dim=16,
                              max_len=16, dtype=dtype, param_dtype=dtype)
    return MaskedDiffusionLM(config, rngs=nnx.Rngs(seed))


def prompts():
    # row 0 has a left pad (id 0, invalid); the prompt is never masked
    return jnp.array([[0, 2, 1], [3, 1, 2]]), jnp.array([[False, True, True], [True, True, True]])


def exact_elbo(model, prompt, valid, response):
    """Σ_{M ≠ ∅} 1/(|M|·C(L,|M|)) Σ_{i∈M} log p(y_i | x, y_M), by enumerating every mask set (float64)."""
    length = response.shape[1]
    total = np.zeros(response.shape[0])
    for m in range(1, length + 1):
        for subset in itertools.combinations(range(length), m):
            masked = np.zeros(response.shape, bool)
            masked[:, list(subset)] = True
            term = elbo.sample_term(model, prompt, valid, response, jnp.asarray(masked),
                                    jnp.ones(response.shape[0]), mask_id(model.config))
            total += np.asarray(term) / (m * math.comb(length, m))
    return total


def test_time_and_count_forms_weigh_each_mask_set_alike():
    # ∫₀¹ t^{m−1} (1−t)^{L−m} dt = (m−1)!(L−m)!/L! = 1/(m·C(L,m)): the 1/t-weighted and L/l forms agree
    for length in range(1, 6):
        for m in range(1, length + 1):
            beta = math.factorial(m - 1) * math.factorial(length - m) / math.factorial(length)
            assert beta == pytest.approx(1 / (m * math.comb(length, m)), rel=1e-15)
            # P(l = m) · P(M | l = m) · L/m  =  (1/L) · 1/C(L,m) · L/m
            assert (1 / length) * (1 / math.comb(length, m)) * (length / m) == pytest.approx(beta, rel=1e-15)


def test_monte_carlo_elbo_converges_to_the_enumerated_expectation():
    with jax.enable_x64(True):
        model = tiny_model()
        prompt, valid = prompts()
        response = jnp.array([[1, 3, 0], [2, 2, 1]])
        exact = exact_elbo(model, prompt, valid, response)
        k = 3000
        samples = np.asarray(jax.jit(lambda key: elbo.elbo_samples(model, prompt, valid, response, key, k,
                                                                   mask_id(model.config)))(jax.random.key(0)))
        # CLT: the mean is within 5 standard errors (ℓ_k is bounded, so its variance is finite)
        bound = 5 * samples.std(axis=0, ddof=1) / math.sqrt(k)
        np.testing.assert_array_less(np.abs(samples.mean(axis=0) - exact), bound)
        np.testing.assert_allclose(jax.jit(lambda key: elbo.elbo(model, prompt, valid, response, key, k,
                                                                 mask_id(model.config)))(jax.random.key(0)),
                                   samples.mean(axis=0), rtol=1e-12)


def test_draw_mask_masks_l_positions_weighted_l_over_count():
    masked, weight = elbo.draw_mask(jax.random.key(3), 500, 5)
    count = np.asarray(masked).sum(axis=1)
    assert count.min() == 1 and count.max() == 5
    np.testing.assert_allclose(weight, 5 / count)


def test_elbo_lower_bounds_the_random_order_likelihood():
    # L = 2: log π(y) = log ½[p(y0|MM) p(y1|y0 M) + p(y1|MM) p(y0|M y1)], a distribution over all 4² y
    with jax.enable_x64(True):
        model = tiny_model(seed=1)
        mask = mask_id(model.config)
        prompt, valid = prompts()
        ys = np.array(list(itertools.product(range(NUM_TOKENS), repeat=2)))
        log_lik = np.zeros((2, len(ys)))
        bound = np.zeros((2, len(ys)))
        full = lambda resp: np.asarray(model(jnp.concatenate([prompt, resp], 1),
                                             jnp.concatenate([valid, jnp.ones(resp.shape, bool)], 1)))[:, 3:]
        none = full(jnp.full((2, 2), mask))
        for j, (y0, y1) in enumerate(ys):
            first0 = full(jnp.array([[y0, mask]] * 2))
            first1 = full(jnp.array([[mask, y1]] * 2))
            p = 0.5 * (np.exp(none[:, 0, y0] + first0[:, 1, y1]) + np.exp(none[:, 1, y1] + first1[:, 0, y0]))
            log_lik[:, j] = np.log(p)
            bound[:, j] = exact_elbo(model, prompt, valid, jnp.array([[y0, y1]] * 2))
        np.testing.assert_allclose(np.exp(log_lik).sum(axis=1), 1.0, rtol=1e-12)
        assert np.all(bound <= log_lik + 1e-12)
        assert np.any(bound < log_lik - 1e-6)


def test_bgpo_loss_and_gradient_hand_values():
    with jax.enable_x64(True):
        old = jnp.array([[-1.0, -2.0], [-3.0, -1.0]])  # [K=2, B=2]
        new = old + jnp.array([[0.2, 0.5], [-0.4, -0.1]])
        adv = jnp.array([1.5, -2.0])
        # row 0 (A ≥ 0): A(1 + d): 1.5·1.2, 1.5·0.6; row 1 (A < 0): A·e^d: −2e^{0.5}, −2e^{−0.1}
        terms = np.array([[1.5 * 1.2, -2 * np.exp(0.5)], [1.5 * 0.6, -2 * np.exp(-0.1)]])
        np.testing.assert_allclose(bgpo.bgpo_loss(new, old, adv), -terms.mean(), rtol=1e-14)
        grad = jax.grad(bgpo.bgpo_loss)(new, old, adv)
        hand = -np.array([[1.5, -2 * np.exp(0.5)], [1.5, -2 * np.exp(-0.1)]]) / 4
        np.testing.assert_allclose(grad, hand, rtol=1e-14)
        # the non-linear objective: −mean_b A·exp(mean_k d) = −½(1.5e^{−0.1} − 2e^{0.2})
        np.testing.assert_allclose(bgpo.elbo_ratio_loss(new, old, adv),
                                   -0.5 * (1.5 * np.exp(-0.1) - 2 * np.exp(0.2)), rtol=1e-14)


def test_bound_is_below_the_objective_and_equal_on_policy():
    with jax.enable_x64(True):
        key_d, key_a, key_o = jax.random.split(jax.random.key(0), 3)
        old = jax.random.normal(key_o, (8, 16))
        adv = jax.random.normal(key_a, (16,))
        new = old + jax.random.normal(key_d, (8, 16))
        # J_lb ≤ J, row by row, so the losses (−J) order the other way
        for b in range(16):
            assert bgpo.bgpo_loss(new[:, b:b + 1], old[:, b:b + 1], adv[b:b + 1]) >= \
                bgpo.elbo_ratio_loss(new[:, b:b + 1], old[:, b:b + 1], adv[b:b + 1]) - 1e-12
        # on-policy: equal values (−mean A) and equal gradients A/(K·B) per sample
        np.testing.assert_allclose(bgpo.bgpo_loss(old, old, adv), -jnp.mean(adv), rtol=1e-14)
        np.testing.assert_allclose(bgpo.elbo_ratio_loss(old, old, adv), -jnp.mean(adv), rtol=1e-14)
        np.testing.assert_allclose(jax.grad(bgpo.bgpo_loss)(old, old, adv),
                                   jax.grad(bgpo.elbo_ratio_loss)(old, old, adv), rtol=1e-14)


def _update_inputs(model):
    graphdef, params = nnx.split(model, nnx.Param)
    apply = lambda p, t, v: nnx.merge(graphdef, p)(t, v)
    old_params = jax.tree.map(lambda x: x + 0.05 * jnp.sin(jnp.arange(x.size).reshape(x.shape)), params)
    prompt, valid = prompts()
    response = jnp.array([[1, 3, 0], [2, 2, 1]])
    return apply, params, old_params, prompt, valid, response


def test_accumulated_bgpo_gradient_equals_all_samples_at_once():
    with jax.enable_x64(True):
        model = tiny_model()
        apply, params, old_params, prompt, valid, response = _update_inputs(model)
        mask, key, k = mask_id(model.config), jax.random.key(5), 4
        adv = jnp.array([0.7, -1.3])
        old_kb = elbo.elbo_samples(lambda t, v: apply(old_params, t, v), prompt, valid, response, key, k, mask)
        loss, grads = jax.jit(lambda p: bgpo.bgpo_value_and_grad(apply, p, old_kb, prompt, valid, response, adv,
                                                                 key, mask))(params)
        at_once_terms = lambda p: elbo.elbo_samples(lambda t, v: apply(p, t, v), prompt, valid, response, key, k,
                                                    mask)
        at_once = lambda p: bgpo.bgpo_loss(at_once_terms(p), old_kb, adv)
        loss_ref, grads_ref = jax.jit(jax.value_and_grad(at_once))(params)
        np.testing.assert_allclose(loss, loss_ref, rtol=1e-12)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14), grads, grads_ref)
        # off-policy the bound lies below the objective: its loss is larger
        ratio_loss = bgpo.elbo_ratio_loss(jax.jit(at_once_terms)(params), old_kb, adv)
        assert loss >= ratio_loss


def test_bgpo_gradient_equals_elbo_ratio_gradient_on_policy():
    with jax.enable_x64(True):
        model = tiny_model()
        apply, params, _, prompt, valid, response = _update_inputs(model)
        mask, key = mask_id(model.config), jax.random.key(6)
        adv = jnp.array([1.1, -0.4])
        old_kb = elbo.elbo_samples(lambda t, v: apply(params, t, v), prompt, valid, response, key, 3, mask)
        loss, grads = jax.jit(lambda p: bgpo.bgpo_value_and_grad(apply, p, old_kb, prompt, valid, response, adv,
                                                                 key, mask))(params)
        loss_nl, grads_nl = jax.jit(lambda p: bgpo.elbo_ratio_value_and_grad(apply, p, old_kb, prompt, valid,
                                                                             response, adv, key, mask))(params)
        np.testing.assert_allclose(loss, -jnp.mean(adv), rtol=1e-12)
        np.testing.assert_allclose(loss_nl, -jnp.mean(adv), rtol=1e-12)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14), grads, grads_nl)


def test_sampler_keeps_the_prompt_and_unmasks_on_schedule():
    model = tiny_model(dtype=jnp.float32)
    mask = mask_id(model.config)
    prompt, valid = prompts()
    seen = []

    def recording(tokens, v):
        jax.debug.callback(lambda t: seen.append(np.asarray(t)), tokens)
        return model(tokens, v)

    response = jax.jit(lambda key: sampler.unmask(recording, prompt, valid, key, length=5, steps=3, temperature=1.0,
                                                  mask=mask))(jax.random.key(0))
    jax.effects_barrier()
    assert len(seen) == 3
    for tokens in seen:
        np.testing.assert_array_equal(tokens[:, :3], prompt)
    # 5 tokens over 3 steps: 2, 2, 1 unmasked, so 5, 3, 1 masks are seen before each step, in every row
    counts = sorted(((t[:, 3:] == mask).sum(axis=1).tolist() for t in seen), reverse=True)
    assert counts == [[5, 5], [3, 3], [1, 1]]
    assert np.all((np.asarray(response) >= 0) & (np.asarray(response) < NUM_TOKENS))


def test_sampler_and_elbo_jit_equal_no_jit():
    model = tiny_model(dtype=jnp.float32)
    mask = mask_id(model.config)
    prompt, valid = prompts()
    draw = lambda key: sampler.unmask(model, prompt, valid, key, length=4, steps=2, temperature=1.0, mask=mask)
    greedy = lambda key: sampler.unmask(model, prompt, valid, key, length=4, steps=4, temperature=0.0, mask=mask)
    for fn in (draw, greedy):
        np.testing.assert_array_equal(jax.jit(fn)(jax.random.key(1)), fn(jax.random.key(1)))
    response = draw(jax.random.key(2))
    score = lambda key: elbo.elbo(model, prompt, valid, response, key, 3, mask)
    with jax.enable_x64(True):
        model64 = tiny_model()
        score64 = lambda key: elbo.elbo(model64, prompt, valid, response, key, 3, mask)
        np.testing.assert_allclose(jax.jit(score64)(jax.random.key(4)), score64(jax.random.key(4)), rtol=1e-12)
    assert np.all(np.isfinite(score(jax.random.key(4))))


def test_bad_input_names_the_field():
    model = tiny_model(dtype=jnp.float32)
    prompt, valid = prompts()
    with pytest.raises(ValueError, match="steps"):
        sampler.unmask(model, prompt, valid, jax.random.key(0), length=2, steps=3, temperature=1.0, mask=4)
    with pytest.raises(ValueError, match="num_samples"):
        elbo.elbo_samples(model, prompt, valid, jnp.zeros((2, 2), jnp.int32), jax.random.key(0), 0, 4)
    with pytest.raises(ValueError, match="num_tokens"):
        diffusion_config(1, d_model=8, num_layers=1, num_heads=2, num_kv_heads=1, mlp_dim=8)


def test_smoke_config_runs_through_both_phases_and_a_relaunch_trains_nothing(tmp_path):
    config = importlib.import_module("experiments.arithmetic_bgpo").get_config("smoke")
    summary = train.run(config, str(tmp_path))
    records = read_metrics(str(tmp_path))
    assert [r["phase"] for r in records] == ["sft"] * config.sft_steps + ["rl"] * config.total_steps
    assert [r["step"] for r in records] == list(range(1, config.sft_steps + config.total_steps + 1))
    assert all(0.0 <= r["eval/accuracy"] <= 1.0 for r in records)
    assert all(np.isfinite(r["loss"]) and 0.0 <= r["reward_mean"] <= 1.0 for r in records if r["phase"] == "rl")
    assert list(summary) == ["initial", "sft", "rl"]
    # every phase is checkpointed at its end: a relaunch restores both and logs nothing new
    again = train.run(config, str(tmp_path))
    assert read_metrics(str(tmp_path)) == records
    assert again["rl"]["eval/accuracy"] == summary["rl"]["eval/accuracy"]


def test_bad_config_names_the_field():
    config = importlib.import_module("experiments.arithmetic_bgpo").get_config("smoke")
    config.objective = "ppo"
    with pytest.raises(ValueError, match="config.objective"):
        train.Setup(config)
    config.objective = "bgpo"
    config.response_length = 1
    with pytest.raises(ValueError, match="config.response_length"):
        train.Setup(config)
