"""Trajectory DDPM with policy guidance: the forward marginals against the composed one-step
kernels (float64), the loss of the oracle denoiser, λ = 0 guidance equal to the unguided sampler
bit for bit, guidance raising the samples' log π, and jit == no-jit."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl.control import trajectory_diffusion as td


def test_cosine_schedule_forward_marginals_match_composed_kernels():
    with jax.enable_x64(True):
        sched = td.cosine_schedule(20, dtype=jnp.float64)
        beta = np.asarray(sched.beta)
        assert np.all((beta > 0) & (beta <= 0.999))
        # compose q(x_k | x_{k-1}) = N(√(1-β_k) x_{k-1}, β_k): mean factor m, variance v
        m, v = 1.0, 0.0
        means, variances = [], []
        for b in beta:
            m, v = np.sqrt(1 - b) * m, (1 - b) * v + b
            means.append(m)
            variances.append(v)
        x0 = jnp.full((20, 1, 1), 1.0, jnp.float64)
        k = jnp.arange(20)
        mean = td.noisy(sched, x0, k, jnp.zeros_like(x0))[:, 0, 0]
        std = td.noisy(sched, jnp.zeros_like(x0), k, jnp.ones_like(x0))[:, 0, 0]
        np.testing.assert_allclose(mean, means, rtol=1e-12)
        np.testing.assert_allclose(std ** 2, variances, rtol=1e-12)
        assert sched.alpha_bar[-1] < 1e-3  # the last step is (almost) pure noise
    with pytest.raises(ValueError, match="num_steps"):
        td.cosine_schedule(0)


def test_loss_of_the_oracle_denoiser_is_zero_and_a_wrong_one_is_not():
    with jax.enable_x64(True):
        sched = td.cosine_schedule(10, dtype=jnp.float64)
        x0 = jax.random.normal(jax.random.key(0), (8, 3, 2), jnp.float64)
        ab = lambda k: sched.alpha_bar[k][:, None, None]
        oracle = lambda x, k: (x - jnp.sqrt(ab(k)) * x0) / jnp.sqrt(1 - ab(k))
        assert float(td.denoising_loss(oracle, sched, x0, jax.random.key(1))) < 1e-20
        zero = lambda x, k: jnp.zeros_like(x)  # loss = mean ε² ≈ 1
        assert 0.5 < float(td.denoising_loss(zero, sched, x0, jax.random.key(1))) < 1.5


def _standard_normal_oracle(sched):
    """ε̂ = E[ε | x_k] for data x_0 ~ N(0, I): x_k ~ N(0, I) and E[ε | x_k] = √(1 − ᾱ_k) x_k."""
    return lambda x, k: jnp.sqrt(1 - sched.alpha_bar[k])[:, None, None] * x


def _log_policy(x):
    """A 'policy' preferring action column 1 near 2: Σ_t −½ (a_t − 2)²."""
    return -0.5 * ((x[:, 1] - 2.0) ** 2).sum()


def test_zero_guidance_is_the_unguided_sampler_bit_for_bit():
    sched = td.cosine_schedule(16)
    den = _standard_normal_oracle(sched)
    key = jax.random.key(3)
    plain = td.sample(den, sched, key, (32, 4, 2))
    zero = td.sample(den, sched, key, (32, 4, 2), log_policy=_log_policy, guidance=0.0)
    np.testing.assert_array_equal(np.asarray(plain), np.asarray(zero))


def test_guidance_raises_the_log_likelihood_of_the_sampled_actions():
    with jax.enable_x64(True):
        sched = td.cosine_schedule(32, dtype=jnp.float64)
        den = _standard_normal_oracle(sched)
        key = jax.random.key(4)
        mean_logp = lambda x: float(jax.vmap(_log_policy)(x).mean())
        logps = [mean_logp(td.sample(den, sched, key, (512, 4, 2), log_policy=_log_policy, guidance=lam))
                 for lam in (0.0, 0.5, 1.0)]
        # unguided: a ~ N(0, 1), E[−½(a−2)²]·4 = −½(1 + 4)·4 = −10; the exact tilt at λ = 1 is
        # N(1, ½): −½(½ + 1)·4 = −3. Each guided sampler lies strictly above the unguided one.
        assert abs(logps[0] + 10.0) < 1.0
        assert logps[0] < logps[1] < logps[2]
        assert logps[2] > -6.0
        guided = td.sample(den, sched, key, (512, 4, 2), log_policy=_log_policy, guidance=1.0)
        plain = td.sample(den, sched, key, (512, 4, 2))
        # the column the policy does not read keeps its unguided samples
        np.testing.assert_allclose(guided[..., 0], plain[..., 0], rtol=0, atol=1e-12)


def test_jit_equals_no_jit_and_the_mlp_denoiser_shapes():
    with jax.enable_x64(True):
        sched = td.cosine_schedule(8, dtype=jnp.float64)
        params = td.init_denoiser(jax.random.key(0), 4, 3, hidden=(16,))
        params = jax.tree.map(lambda p: p.astype(jnp.float64) + 0.01, params)  # non-zero output layer
        den = lambda x, k: td.apply_denoiser(params, x, k, 8)
        x0 = jax.random.normal(jax.random.key(1), (5, 4, 3), jnp.float64)
        assert den(x0, jnp.zeros(5, jnp.int32)).shape == x0.shape
        loss = lambda p, key: td.denoising_loss(lambda x, k: td.apply_denoiser(p, x, k, 8), sched, x0, key)
        np.testing.assert_allclose(jax.jit(loss)(params, jax.random.key(2)), loss(params, jax.random.key(2)), rtol=1e-12)
        draw = lambda key, lam: td.sample(den, sched, key, (5, 4, 3), log_policy=_log_policy, guidance=lam)
        np.testing.assert_allclose(jax.jit(draw)(jax.random.key(3), 0.7), draw(jax.random.key(3), 0.7), rtol=1e-10, atol=1e-12)



def test_posterior_mean_form_equals_ho_et_al_step_and_clipping_bounds_x0():
    with jax.enable_x64(True):
        # one step (K = 1, no noise): x_0 = (x_1 − β/√(1 − ᾱ)·ε̂)/√α with ε̂ = x_1, in numpy
        one = td.cosine_schedule(1, dtype=jnp.float64)
        b, a, ab = (float(np.asarray(v)[0]) for v in one)
        got = td.sample(lambda x, k: x, one, jax.random.key(5), (1, 1, 1))
        x1 = np.asarray(jax.random.normal(jax.random.split(jax.random.key(5))[0], (1, 1, 1), jnp.float64))
        np.testing.assert_allclose(got, (x1 - b / np.sqrt(1 - ab) * x1) / np.sqrt(a), rtol=1e-9)
        # the last step returns x̂_0 itself, so a wild denoiser's samples stay within ±c once clipped
        sched = td.cosine_schedule(6, dtype=jnp.float64)
        wild = lambda x, k: -50.0 * jnp.ones_like(x)
        assert float(jnp.abs(td.sample(wild, sched, jax.random.key(6), (64, 2, 2), clip_x0=3.0)).max()) <= 3.0
        assert float(jnp.abs(td.sample(wild, sched, jax.random.key(6), (64, 2, 2))).max()) > 3.0
