"""Tests for polrl.diffusion.preference: DPO on ELBO log-ratios with shared masks, SePPO and DRAGON."""
import importlib
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from polrl.algorithms.dragon import set_contrast_loss
from polrl.algorithms.seppo import seppo_loss as text_seppo_loss
from polrl.collectors.distributional_reward import set_distance_and_credit
from polrl.core import EXPERT, ON_POLICY, Batch
from polrl.diffusion import elbo, preference, train
from polrl.diffusion.elbo import sample_term
from polrl.diffusion.model import MaskedDiffusionLM, diffusion_config, mask_id
from polrl.train.metrics import read_metrics

NUM_TOKENS = 4  # real ids 0..3, mask id 4
BETA = 0.7


def tiny(seed=0):
    """(apply, θ, a reference θ' ≠ θ, mask id) of a float64 1-layer model."""
    config = diffusion_config(NUM_TOKENS, d_model=8, num_layers=1, num_heads=2, num_kv_heads=1, mlp_dim=16,
                              max_len=16, dtype=jnp.float64, param_dtype=jnp.float64)
    graphdef, params = nnx.split(MaskedDiffusionLM(config, rngs=nnx.Rngs(seed)), nnx.Param)
    ref = jax.tree.map(lambda x: x + 0.3 * jnp.cos(jnp.arange(x.size).reshape(x.shape) + seed), params)
    return jax.jit(lambda p, t, v: nnx.merge(graphdef, p)(t, v)), params, ref, mask_id(config)


def prompts(rows=2):
    prompt = jnp.array([[0, 2, 1], [3, 1, 2], [1, 1, 3], [2, 0, 1]])[:rows]
    valid = jnp.array([[False, True, True], [True] * 3, [True] * 3, [True] * 3])[:rows]
    return prompt, valid


def brute_term(apply, params, prompt, valid, response, masked, weight, mask):
    """(L/l) Σ_{i masked} log p(y_i | x, y_M) of every row, by one direct forward and a numpy gather."""
    noisy = np.where(masked, mask, np.asarray(response))
    tokens = jnp.concatenate([prompt, jnp.asarray(noisy)], axis=1)
    full_valid = jnp.concatenate([valid, jnp.ones(noisy.shape, bool)], axis=1)
    logp = np.asarray(apply(params, tokens, full_valid))[:, prompt.shape[1]:]
    rows = np.arange(noisy.shape[0])[:, None]
    picked = logp[rows, np.arange(noisy.shape[1])[None], np.asarray(response)]
    return np.asarray(weight) * np.where(masked, picked, 0.0).sum(axis=1)


def log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def test_dpo_loss_and_gradient_hand_values_on_fixed_masks():
    with jax.enable_x64(True):
        apply, params, ref, mask = tiny()
        prompt, valid = prompts()
        chosen, rejected = jnp.array([[1, 3, 0], [2, 2, 1]]), jnp.array([[0, 3, 2], [2, 1, 1]])
        masked = jnp.array([[[True, False, True], [False, True, False]],
                            [[True, True, True], [False, False, True]]])  # [K=2, B=2, L=3]
        weight = 3.0 / masked.sum(-1)
        ratio = lambda p, y: preference.elbo_log_ratio(apply, p, ref, prompt, valid, y, masked, weight, mask)
        loss_fn = lambda p: preference.dpo_loss(ratio(p, chosen), ratio(p, rejected), BETA)
        loss, grads = jax.jit(jax.value_and_grad(loss_fn))(params)
        hand_r = lambda y: np.mean([brute_term(apply, params, prompt, valid, y, masked[k], weight[k], mask)
                                    - brute_term(apply, ref, prompt, valid, y, masked[k], weight[k], mask)
                                    for k in range(2)], axis=0)
        z = BETA * (hand_r(chosen) - hand_r(rejected))
        np.testing.assert_allclose(loss, -log_sigmoid(z).mean(), rtol=1e-12)
        # ∇L = Σ_b −β σ(−z_b)/B · (1/K) Σ_k (∇ℓ_k^θ(y_w,b) − ∇ℓ_k^θ(y_l,b)), one ℓ at a time
        coef = -BETA * (1 / (1 + np.exp(z))) / 2
        grad_one = jax.jit(jax.grad(lambda p, x, v, y, m, w: sample_term(lambda t, u: apply(p, t, u), x, v, y, m, w,
                                                                          mask)[0]))
        hand = jax.tree.map(jnp.zeros_like, params)
        for k, b in itertools.product(range(2), range(2)):
            for y, sign in ((chosen, 1.0), (rejected, -1.0)):
                g = grad_one(params, prompt[b:b + 1], valid[b:b + 1], y[b:b + 1], masked[k, b:b + 1],
                             weight[k, b:b + 1])
                hand = jax.tree.map(lambda h, g: h + sign * coef[b] / 2 * g, hand, g)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-13), grads, hand)


def test_reference_equal_to_policy_gives_log_two_and_zero_margins():
    with jax.enable_x64(True):
        apply, params, _, mask = tiny()
        prompt, valid = prompts()
        chosen, rejected = jnp.array([[1, 3, 0], [2, 2, 1]]), jnp.array([[0, 3, 2], [2, 1, 1]])
        loss, metrics = jax.jit(lambda p: preference.seppo_loss(apply, p, p, prompt, valid, chosen, rejected,
                                                                jax.random.key(0), 4, mask, beta=BETA))(params)
        assert float(loss) == pytest.approx(np.log(2.0), rel=1e-14)
        assert float(metrics["pref_margin"]) == 0.0 and float(metrics["seppo_anchor"]) == 0.0
        assert float(metrics["seppo_flipped"]) == 0.0  # a tie r_w = 0 is not flipped
        response = jnp.concatenate([chosen, rejected])
        loss, metrics = jax.jit(lambda p: preference.dragon_loss(
            apply, p, p, *prompts(4), response, jnp.array([0.5, -0.2, 0.1, -0.3]), jax.random.key(1), 4, mask,
            group_size=2, beta=BETA))(params)
        assert float(loss) == pytest.approx(np.log(2.0), rel=1e-14)
        assert float(metrics["pref_margin"]) == 0.0 and float(metrics["dragon_pairs"]) == 2.0


def test_shared_mask_estimate_equals_brute_force_over_enumerated_masks():
    # L = 2: the only masks are {0}, {1} (weight 2) and {0, 1} (weight 1); r is the empirical mixture of
    # their brute-force θ − ref differences, with the same mask for θ, ref and both responses of a row
    with jax.enable_x64(True):
        apply, params, ref, mask = tiny(seed=2)
        prompt, valid = prompts()
        chosen, rejected = jnp.array([[1, 3], [0, 2]]), jnp.array([[2, 3], [0, 1]])
        k = 64
        masked, weight = preference.shared_masks(jax.random.key(7), k, 2, 2)
        subsets = [(True, False), (False, True), (True, True)]
        for y in (chosen, rejected):
            estimate = jax.jit(preference.elbo_log_ratio, static_argnums=(0, 8))(apply, params, ref, prompt, valid, y,
                                                                                 masked, weight, mask)
            brute = np.zeros(2)
            for subset in subsets:
                m = np.broadcast_to(np.array(subset), (2, 2))
                w = np.full(2, 2.0 / sum(subset))
                diff = (brute_term(apply, params, prompt, valid, y, m, w, mask)
                        - brute_term(apply, ref, prompt, valid, y, m, w, mask))
                count = np.all(np.asarray(masked) == np.array(subset), axis=-1).sum(axis=0)  # [B]
                brute += count / k * diff
            np.testing.assert_allclose(estimate, brute, rtol=1e-12)
        # the masks are elbo.elbo's: r = B̂_θ − B̂_ref with both ELBOs drawn from the same key
        elbo_of = lambda p: elbo.elbo(lambda t, v: apply(p, t, v), prompt, valid, chosen, jax.random.key(7), k, mask)
        np.testing.assert_allclose(jax.jit(lambda: preference.elbo_log_ratio(
            apply, params, ref, prompt, valid, chosen, masked, weight, mask))(),
            jax.jit(lambda: elbo_of(params) - elbo_of(ref))(), rtol=1e-12)
        # with θ = ref the estimate is 0 on every draw: the shared masks cancel exactly
        draws = jax.jit(jax.vmap(lambda kk: preference.elbo_log_ratio(
            apply, params, params, prompt, valid, chosen, *preference.shared_masks(kk, 1, 2, 2), mask)))
        assert np.all(np.asarray(draws(jax.random.split(jax.random.key(3), 50))) == 0.0)


def test_seppo_anchor_rule_matches_the_text_policy_loss():
    with jax.enable_x64(True):
        apply, params, ref, mask = tiny(seed=1)
        prompt, valid = prompts(4)
        chosen = jnp.array([[1, 3, 0], [2, 2, 1], [3, 0, 0], [1, 1, 2]])
        rejected = jnp.array([[0, 3, 2], [2, 1, 1], [3, 3, 0], [0, 1, 2]])
        key, k = jax.random.key(11), 3
        loss, metrics = jax.jit(lambda p: preference.seppo_loss(apply, p, ref, prompt, valid, chosen, rejected, key,
                                                                k, mask, beta=BETA))(params)
        masked, weight = preference.shared_masks(key, k, 4, 3)
        ratio = jax.jit(lambda y: preference.elbo_log_ratio(apply, params, ref, prompt, valid, y, masked, weight, mask))
        r_w, r_l = ratio(chosen), ratio(rejected)
        assert 0 < np.sum(np.asarray(r_w) < 0) < 4  # the flip and the plain DPO branch both occur
        # the autoregressive noun's transform on rows whose summed log-ratios are r_w, r_l
        pair = lambda a, b: jnp.stack([a, b], axis=1).reshape(8, *a.shape[1:])
        rows = Batch(prompt_bp=pair(prompt, prompt), prompt_valid_bp=pair(valid, valid),
                     response_bt=pair(chosen, rejected)[:, :1], mask_bt=jnp.ones((8, 1)),
                     source_b=pair(jnp.full((4,), EXPERT), jnp.full((4,), ON_POLICY)), group_size=2,
                     aux={"pool_ref_logp_bt": jnp.zeros((8, 1))}).replace(logp_bt=pair(r_w, r_l)[:, None])
        text, _ = text_seppo_loss(beta=BETA).apply(rows, ())
        np.testing.assert_allclose(loss, text.losses["seppo"], rtol=1e-12)
        for name in ("seppo_flipped", "seppo_anchor", "pref_margin", "pref_accuracy"):
            np.testing.assert_allclose(metrics[name], text.metrics[name], rtol=1e-12)
        sign = np.where(np.asarray(r_w) < 0, -1.0, 1.0)
        np.testing.assert_allclose(loss, -log_sigmoid(BETA * (r_w - sign * r_l)).mean(), rtol=1e-12)


def test_dragon_set_reward_and_pair_loss_match_the_text_policy_functions():
    with jax.enable_x64(True):
        answer = jnp.array([[1, 3, 0]] * 3 + [[2, 2, 1]] * 3)
        response = jnp.array([[1, 3, 0], [1, 2, 0], [0, 0, 0], [2, 2, 1], [2, 2, 1], [3, 2, 0]])
        credit = preference.set_credits(response, answer, 3, 1.0)
        for g in range(2):
            ones = jnp.ones((3, 3), bool)
            text = set_distance_and_credit(response[3 * g:3 * g + 3], ones, (answer[3 * g:3 * g + 1], ones[:1]))[3]
            np.testing.assert_allclose(credit[3 * g:3 * g + 3], text, rtol=1e-14)
        # hand: k = exp(−d²/2), d² = 2·(positions that differ); D = mean K_yy − 2 mean K_ye + 1
        y, e = np.asarray(response[:3]), np.asarray(answer[0])
        kern = lambda a, b: np.exp(-2.0 * np.sum(a != b) / 2.0)
        d = lambda s: np.mean([[kern(a, b) for b in s] for a in s]) - 2 * np.mean([kern(a, e) for a in s]) + 1
        np.testing.assert_allclose(credit[:3], [d(np.delete(y, i, 0)) - d(y) for i in range(3)], rtol=1e-12)
        # the pair loss: every positive × negative of a group, −log σ(β (r_i − r_j)) averaged
        apply, params, ref, mask = tiny(seed=3)
        prompt, valid = prompts(2)
        prompt, valid = jnp.repeat(prompt, 3, axis=0), jnp.repeat(valid, 3, axis=0)
        key = jax.random.key(2)
        loss, metrics = jax.jit(lambda p: preference.dragon_loss(apply, p, ref, prompt, valid, response, credit, key,
                                                                 2, mask, group_size=3, beta=BETA))(params)
        masks = preference.shared_masks(key, 2, 6, 3)
        r = np.asarray(jax.jit(lambda p: preference.elbo_log_ratio(apply, p, ref, prompt, valid, response, *masks,
                                                                   mask))(params))
        c = np.asarray(credit)
        pairs = [(i, j) for g in range(2) for i in range(3 * g, 3 * g + 3) for j in range(3 * g, 3 * g + 3)
                 if c[i] > 0 and c[j] < 0]
        assert pairs
        np.testing.assert_allclose(loss, np.mean([-log_sigmoid(BETA * (r[i] - r[j])) for i, j in pairs]),
                                   rtol=1e-12)
        assert float(metrics["dragon_pairs"]) == len(pairs)
        rows = Batch(prompt_bp=prompt, prompt_valid_bp=valid, response_bt=response[:, :1], mask_bt=jnp.ones((6, 1)),
                     reward_b=credit, group_size=3).replace(logp_bt=jnp.asarray(r)[:, None],
                                                            ref_logp_bt=jnp.zeros((6, 1)))
        np.testing.assert_allclose(loss, set_contrast_loss(beta=BETA).apply(rows, ())[0].losses["dragon"],
                                   rtol=1e-12)


def test_losses_jit_equal_no_jit():
    with jax.enable_x64(True):
        apply, params, ref, mask = tiny()
        prompt, valid = prompts(4)
        response = jnp.array([[1, 3, 0], [2, 2, 1], [3, 0, 0], [1, 1, 2]])
        target = jnp.array([[1, 3, 0], [1, 3, 0], [3, 0, 1], [3, 0, 1]])
        credit = preference.set_credits(response, target, 2, 1.0)

        def both(p):
            seppo, seppo_metrics = preference.seppo_loss(apply, p, ref, prompt, valid, target, response,
                                                         jax.random.key(0), 1, mask, beta=BETA)
            dragon, dragon_metrics = preference.dragon_loss(apply, p, ref, prompt, valid, response, credit,
                                                            jax.random.key(0), 1, mask, group_size=2, beta=BETA)
            return seppo + dragon, {**seppo_metrics, **dragon_metrics}

        eager = jax.value_and_grad(both, has_aux=True)(params)
        jitted = jax.jit(jax.value_and_grad(both, has_aux=True))(params)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14), eager, jitted)


def smoke(name):
    return importlib.import_module(f"experiments.arithmetic_diffusion_{name}").get_config("smoke")


def test_bad_config_names_the_field():
    cases = [("seppo", "beta", 0.0), ("seppo", "pool_size", 0), ("seppo", "refresh_every", -2),
             ("dragon", "group_size", 1), ("dragon", "bandwidth", -1.0)]
    for name, field, value in cases:
        config = smoke(name)
        config[field] = value
        with pytest.raises(ValueError, match=f"config.{field}"):
            train.Setup(config)
    with pytest.raises(ValueError, match="num_samples"):
        preference.shared_masks(jax.random.key(0), 0, 2, 3)


def test_seppo_smoke_runs_fills_the_pool_and_a_relaunch_trains_nothing(tmp_path):
    config = smoke("seppo")  # the launcher's ``trainer = "diffusion"`` dispatch
    summary = train.run(config, str(tmp_path))
    records = read_metrics(str(tmp_path))
    rl = [r for r in records if r["phase"] == "rl"]
    assert len(rl) == config.total_steps and all(np.isfinite(r["loss"]) for r in rl)
    # step 0 holds θ_0 only (member = the policy: log 2, no flip); refresh_every = 1 then fills slot 1
    assert rl[0]["loss"] == pytest.approx(np.log(2.0), rel=1e-6) and rl[0]["pool_staleness"] == 0.0
    assert all(0.0 <= r["seppo_flipped"] <= 1.0 for r in rl)
    again = train.run(config, str(tmp_path))
    assert read_metrics(str(tmp_path)) == records
    assert again["rl"]["eval/accuracy"] == summary["rl"]["eval/accuracy"]


def test_dragon_smoke_runs(tmp_path):
    config = smoke("dragon")
    train.run(config, str(tmp_path))
    rl = [r for r in read_metrics(str(tmp_path)) if r["phase"] == "rl"]
    assert len(rl) == config.total_steps
    assert all(np.isfinite(r["loss"]) and r["credit_positive_frac"] + r["credit_negative_frac"] <= 1.0 for r in rl)
