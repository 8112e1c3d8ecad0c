"""A DDPM over fixed-length trajectory windows, with policy guidance (Policy-Guided Diffusion).

Papers: "Denoising Diffusion Probabilistic Models" (Ho et al. 2020, arXiv 2006.11239);
"Improved Denoising Diffusion Probabilistic Models" (Nichol & Dhariwal 2021, arXiv 2102.09672)
for the cosine schedule; "Policy-Guided Diffusion" (Jackson et al. 2024, arXiv 2404.06356) for
the guidance.

A window x ∈ R^{H×D} holds H consecutive steps of a trajectory, each row the step's features
(observation, action encoding, reward, ...; the caller chooses the columns).

* **Schedule** (cosine): ᾱ(k) = f(k)/f(0), f(k) = cos²(((k/K) + s)/(1 + s)·π/2), s = 0.008,
  β_k = min(1 − ᾱ(k)/ᾱ(k−1), 0.999) for k = 1 … K; α_k = 1 − β_k, ᾱ_k = Π_{j≤k} α_j.
  Arrays are indexed 0 … K−1 for the steps 1 … K.
* **Forward process**: q(x_k | x_0) = N(√ᾱ_k x_0, (1 − ᾱ_k) I), ``noisy(schedule, x0, k, ε)``.
* **Loss** (Ho et al.'s simple loss): E_{k ~ U, ε ~ N(0, I)} ‖ε − ε_θ(x_k, k)‖² (mean over
  entries).
* **Ancestral sampling**: x_K ~ N(0, I); for k = K … 1,
  x_{k−1} = (x_k − β_k/√(1 − ᾱ_k)·ε̂)/√α_k + σ_k z, σ_k² = β̃_k = β_k (1 − ᾱ_{k−1})/(1 − ᾱ_k),
  z ~ N(0, I), no noise at the last step. Written through x̂_0 = (x_k − √(1 − ᾱ_k) ε̂)/√ᾱ_k as
  the posterior mean (√ᾱ_{k−1} β_k x̂_0 + √α_k (1 − ᾱ_{k−1}) x_k)/(1 − ᾱ_k) (the same number),
  optionally with x̂_0 clipped to [−c, c] (``clip_x0``, Ho et al.'s clipping for images): near
  ᾱ_K ≈ 0 the step divides by √α_K ≈ 0.03 and an imperfect ε̂ would blow the sample up.
* **Policy guidance** (PGD): sampling targets p_B(τ)·π(τ)^λ, the behaviour trajectory
  distribution tilted by the target policy's action likelihood π(τ) = Π_t π(a_t|s_t). The score
  of the tilted density is ∇ log p_B + λ ∇ Σ_t log π(a_t|s_t); with ∇ log p(x_k) = −ε/√(1 − ᾱ_k)
  the guided noise prediction is

      ε̂ = ε_θ(x_k, k) − λ·√(1 − ᾱ_k)·∇_{x_k} Σ_t log π(a_t|s_t)

  (the noise scale σ_k of the guidance term is √(1 − ᾱ_k); the sign makes the step climb
  log π). λ = 0 gives the unguided sampler exactly.

The denoiser ε_θ is an MLP on the flattened window concatenated with a sinusoidal embedding of
k/K (SiLU hidden layers, zero-initialised output layer).

INFERRED: the guidance gradient is taken at the noisy window x_k itself (not at a denoised
estimate of x_0) and λ is constant over the denoising steps; the paper's score-based sampler
(EDM) is replaced by the DDPM above; the MLP denoiser is a choice for small windows (the paper
uses a U-Net).
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array


class Schedule(NamedTuple):
    """β_k, α_k = 1 − β_k and ᾱ_k for the steps k = 1 … K (index k − 1)."""

    beta: Array
    alpha: Array
    alpha_bar: Array


def cosine_schedule(num_steps: int, s: float = 0.008, dtype=jnp.float32) -> Schedule:
    """The cosine schedule of Nichol & Dhariwal with ``num_steps`` = K steps (module doc)."""
    if num_steps < 1:
        raise ValueError(f"cosine_schedule: num_steps={num_steps}; it must be an int >= 1")
    k = jnp.arange(num_steps + 1, dtype=dtype)
    f = jnp.cos(((k / num_steps) + s) / (1 + s) * (math.pi / 2)) ** 2
    beta = jnp.minimum(1.0 - f[1:] / f[:-1], 0.999)
    alpha = 1.0 - beta
    return Schedule(beta=beta, alpha=alpha, alpha_bar=jnp.cumprod(alpha))


def noisy(schedule: Schedule, x0: Array, k: Array, noise: Array) -> Array:
    """x_k = √ᾱ_k x_0 + √(1 − ᾱ_k) ε for windows ``x0`` [B, H, D] at step indices ``k`` [B]."""
    ab = schedule.alpha_bar[k].reshape((-1,) + (1,) * (x0.ndim - 1))
    return jnp.sqrt(ab) * x0 + jnp.sqrt(1.0 - ab) * noise


def step_embedding(k: Array, num_steps: int, dim: int = 16) -> Array:
    """Sinusoidal features [B, dim] of the step fraction (k + 1)/K."""
    freqs = jnp.exp(jnp.linspace(0.0, math.log(1000.0), dim // 2))
    phase = ((k + 1) / num_steps)[:, None] * freqs[None]
    return jnp.concatenate([jnp.sin(phase), jnp.cos(phase)], axis=-1)


def init_denoiser(key, horizon: int, features: int, hidden=(256, 256), embed_dim: int = 16) -> list:
    """MLP parameters [(W, b), ...] of ε_θ for windows [horizon, features] (output layer zero)."""
    sizes = [horizon * features + embed_dim, *hidden]
    keys = jax.random.split(key, len(hidden))
    layers = [(jax.random.normal(k, (i, o)) * math.sqrt(1.0 / i), jnp.zeros(o))
              for k, i, o in zip(keys, sizes[:-1], sizes[1:])]
    out = horizon * features
    return layers + [(jnp.zeros((sizes[-1], out)), jnp.zeros(out))]


def apply_denoiser(params: list, x: Array, k: Array, num_steps: int) -> Array:
    """ε_θ(x_k, k) [B, H, D] for windows ``x`` [B, H, D] at step indices ``k`` [B]."""
    embed_dim = params[0][0].shape[0] - x.shape[1] * x.shape[2]
    h = jnp.concatenate([x.reshape(x.shape[0], -1), step_embedding(k, num_steps, embed_dim)], axis=-1)
    for w, b in params[:-1]:
        h = jax.nn.silu(h @ w + b)
    w, b = params[-1]
    return (h @ w + b).reshape(x.shape)


def denoising_loss(denoise: Callable, schedule: Schedule, x0: Array, key) -> Array:
    """Ho et al.'s simple loss mean((ε − ε̂(x_k, k))²) with k uniform and ε ~ N(0, I).

    ``denoise(x_k [B, H, D], k [B]) -> ε̂ [B, H, D]``.
    """
    key_k, key_noise = jax.random.split(key)
    k = jax.random.randint(key_k, (x0.shape[0],), 0, schedule.beta.shape[0])
    noise = jax.random.normal(key_noise, x0.shape, x0.dtype)
    return ((denoise(noisy(schedule, x0, k, noise), k) - noise) ** 2).mean()


def guided_noise(eps: Array, x: Array, alpha_bar_k: Array, log_policy: Callable | None, guidance) -> Array:
    """ε̂ − λ √(1 − ᾱ_k) ∇_x Σ_t log π(a_t|s_t) per window (``log_policy(x [H, D]) -> scalar``)."""
    if log_policy is None:
        return eps
    grad = jax.vmap(jax.grad(log_policy))(x)
    return eps - guidance * jnp.sqrt(1.0 - alpha_bar_k) * grad


def sample(denoise: Callable, schedule: Schedule, key, shape: tuple, *,
           log_policy: Callable | None = None, guidance=0.0, clip_x0: float | None = None) -> Array:
    """Ancestral DDPM samples [B, H, D] = ``shape``, guided by ``log_policy`` with weight λ =
    ``guidance`` when given, x̂_0 clipped to ±``clip_x0`` when given (module doc). Jittable; λ may
    be traced."""
    num_steps = schedule.beta.shape[0]
    key_init, key_steps = jax.random.split(key)
    x = jax.random.normal(key_init, shape, schedule.beta.dtype)
    alpha_bar_prev = jnp.concatenate([jnp.ones(1, schedule.alpha_bar.dtype), schedule.alpha_bar[:-1]])

    def step(x, xs):
        k, key = xs
        eps = denoise(x, jnp.full((shape[0],), k))
        eps = guided_noise(eps, x, schedule.alpha_bar[k], log_policy, guidance)
        beta, ab, ab_prev = schedule.beta[k], schedule.alpha_bar[k], alpha_bar_prev[k]
        x0 = (x - jnp.sqrt(1.0 - ab) * eps) / jnp.sqrt(ab)
        if clip_x0 is not None:
            x0 = jnp.clip(x0, -clip_x0, clip_x0)
        mean = (jnp.sqrt(ab_prev) * beta * x0 + jnp.sqrt(schedule.alpha[k]) * (1.0 - ab_prev) * x) / (1.0 - ab)
        std = jnp.sqrt(beta * (1.0 - ab_prev) / (1.0 - ab))
        z = jax.random.normal(key, shape, x.dtype)
        return mean + jnp.where(k > 0, std, 0.0) * z, None

    ks = jnp.arange(num_steps - 1, -1, -1)
    x, _ = jax.lax.scan(step, x, (ks, jax.random.split(key_steps, num_steps)))
    return x


__all__ = ["Schedule", "apply_denoiser", "cosine_schedule", "denoising_loss", "guided_noise",
           "init_denoiser", "noisy", "sample", "step_embedding"]
