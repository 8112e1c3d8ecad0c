"""The multi-turn collector (polrl.collectors.turns) equals a brute-force reference.

The reference plays each trajectory alone: it re-runs the whole token history through the model
without a cache for every drawn token and steps a plain-Python copy of the scripted environment.
On a float64 model the cached and uncached computations agree to ~1e-15, so a token can only
differ on a tie, never by one CPU's float32 rounding. Both environment kinds (host, device) play
the same scripted rule, and the scoring forward over prompt ++ response must give back the
sampler's log-probs (positions count real tokens only, in both).
"""
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from polrl import sharding
from polrl.collectors import Context, turns
from polrl.core import PolicyState
from polrl.envs import DeviceEnv, HostEnv
from polrl.models import TransformerConfig
from polrl.rollout import SamplingConfig
from polrl.rollout.sampling import draw
from polrl.tasks import CharTokenizer, Task
from polrl.train import steps
from tiny_models import tiny_params

TOKENIZER = CharTokenizer(chars="abcdefghij")  # 13 ids: pad, bos, eos, a … j = 3 … 12
V, EOS, PAD = TOKENIZER.vocab_size, TOKENIZER.eos_id, TOKENIZER.pad_id
CFG = TransformerConfig(vocab_size=V, d_model=16, num_layers=2, num_heads=4, num_kv_heads=2, mlp_dim=24,
                        max_len=48, dtype=jnp.float64, param_dtype=jnp.float64)
PROMPTS = [[1, 5, 7], [1, 9], [1, 3, 4, 6, 8], [1, 4]]
P, G, MAX_TURNS, TURN_TOKENS, OBS = 6, 3, 3, 4, 3
STOPS = ((7,), (6, 6))
SAMPLING = SamplingConfig(max_new_tokens=5, eos_id=EOS, pad_id=PAD)
TASK = Task(name="scripted", tokenizer=TOKENIZER, max_prompt_len=P, max_answer_len=2, train=[], test=[],
            host_reward=lambda completions, examples: np.zeros(len(completions), np.float32))


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


@functools.lru_cache(maxsize=None)
def parts():
    with jax.enable_x64(True):
        return tiny_params(CFG, seed=0)


# ------------------------------------------------------------------ the scripted environment
def rule(tokens, seen):
    """One step of the scripted environment: ``(observation, reward, done, seen')``."""
    total, seen = sum(tokens), seen + len(tokens)
    done = tokens[-1] == EOS or total % 5 == 0
    if done:
        return [], 0.5 * seen, True, seen
    return [3 + total % 7] * (1 + total % 3), 0.25, False, seen


def reset_rule(prompt):
    return [10] * (prompt[-1] % 2)


class ScriptedEpisode:
    def reset(self, example):
        self.seen = 0
        return reset_rule(example["prompt"])

    def step(self, tokens):
        obs, reward, done, self.seen = rule(list(tokens), self.seen)
        return obs, reward, done


HOST_ENV = HostEnv(name="scripted", new_episode=ScriptedEpisode, observation_len=OBS, error_observation=(12, 12),
                   stop_sequences=STOPS)


def device_reset(rows):
    n_k = rows["prompt_bp"][:, -1] % 2
    valid = jnp.arange(OBS)[None] < n_k[:, None]
    return jnp.zeros(n_k.shape, jnp.int32), jnp.where(valid, 10, PAD), valid


def device_step(seen_k, tokens_kn, mask_kn):
    length_k = mask_kn.sum(axis=1).astype(jnp.int32)
    total_k = jnp.where(mask_kn, tokens_kn, 0).sum(axis=1)
    last_k = jnp.take_along_axis(tokens_kn, jnp.maximum(length_k - 1, 0)[:, None], axis=1)[:, 0]
    seen_k = seen_k + length_k
    done_k = (last_k == EOS) | (total_k % 5 == 0)
    n_k = jnp.where(done_k, 0, 1 + total_k % 3)
    valid = jnp.arange(OBS)[None] < n_k[:, None]
    reward_k = jnp.where(done_k, 0.5 * seen_k, 0.25)
    return seen_k, jnp.where(valid, (3 + total_k % 7)[:, None], PAD), valid, reward_k, done_k


DEVICE_ENV = DeviceEnv(name="scripted", reset=device_reset, step=device_step, observation_len=OBS,
                       stop_sequences=STOPS)


# ------------------------------------------------------------------ the reference
@functools.partial(jax.jit, static_argnums=2)
def next_token(seq, u, config):
    """The draw after the real tokens of ``seq`` (right-padded with −1), from a full forward."""
    graphdef, params = parts()
    valid = seq >= 0
    logits = nnx.merge(graphdef, params)(jnp.maximum(seq, 0)[None], jnp.arange(seq.shape[0])[None], valid[None])
    return draw(logits[:, valid.sum() - 1], u[None], config)


def brute_generation(history, uniforms):
    config = SamplingConfig(max_new_tokens=TURN_TOKENS, eos_id=EOS, pad_id=PAD)
    seq, tokens, logps = list(history), [], []
    for i in range(TURN_TOKENS):
        token, logp = next_token(jnp.asarray(seq + [-1] * (CFG.max_len - len(seq)), jnp.int32),
                                 jnp.asarray(uniforms[i]), config)
        tokens.append(int(token[0]))
        logps.append(float(logp[0]))
        seq.append(tokens[-1])
        if tokens[-1] == EOS or any(tokens[-len(s):] == list(s) for s in STOPS):
            break
    return tokens, logps


def brute_trajectories(rng):
    """Per trajectory: (tokens, generated, logps, turns, reward, turns played, done)."""
    k = len(PROMPTS) * G
    uniforms = [np.asarray(jax.random.uniform(jax.random.fold_in(rng, t), (TURN_TOKENS, k))) for t in range(MAX_TURNS)]
    out = []
    for row in range(k):
        prompt = PROMPTS[row // G]
        history, tokens, generated, logps, turn_of = list(prompt), [], [], [], []
        obs, seen, reward, done, played = reset_rule(prompt), 0, 0.0, False, 0
        for t in range(MAX_TURNS):
            if done:
                break
            gen, lp = brute_generation(history + obs, uniforms[t][:, row])
            history += obs + gen
            tokens += obs + gen
            generated += [0.0] * len(obs) + [1.0] * len(gen)
            logps += [0.0] * len(obs) + lp
            turn_of += [t] * (len(obs) + len(gen))
            obs, r, done, seen = rule(gen, seen)
            reward, played = reward + r, played + 1
        out.append((tokens, generated, logps, turn_of, reward, played, done))
    return out


# ------------------------------------------------------------------ helpers
def context(group_size=G, devices=1):
    graphdef, _ = parts()
    layout = sharding.layout_from_config(dict(data=devices), devices=jax.devices()[:devices])
    return Context(graphdef=graphdef, task=TASK, sampling=SAMPLING, group_size=group_size, layout=layout)


def data():
    prompt = np.zeros((len(PROMPTS), P), np.int32)
    for i, p in enumerate(PROMPTS):
        prompt[i, P - len(p):] = p
    answers = np.zeros((len(PROMPTS), 2), np.int32)
    return {"prompt_bp": jnp.asarray(prompt), "prompt_valid_bp": jnp.asarray(prompt != 0),
            "answer_ba": jnp.asarray(answers), "answer_valid_ba": jnp.asarray(answers != 0),
            "examples": [{"prompt": p} for p in PROMPTS]}


def policy_state(step=7):
    _, params = parts()
    return PolicyState(step=jnp.int32(step), rng=jax.random.key(0), params=params, opt_state=None)


def check_against_brute_force(batch, rng):
    width = MAX_TURNS * (TURN_TOKENS + OBS)
    assert batch.response_bt.shape == (len(PROMPTS) * G, width)
    expected = brute_trajectories(rng)
    for row, (tokens, generated, logps, turn_of, reward, _, _) in enumerate(expected):
        n = len(tokens)
        np.testing.assert_array_equal(batch.response_bt[row], tokens + [PAD] * (width - n))
        np.testing.assert_array_equal(batch.mask_bt[row], generated + [0.0] * (width - n))
        np.testing.assert_array_equal(batch.aux["turn_bt"][row], turn_of + [-1] * (width - n))
        # float32 Batch fields: the float64 values rounded once (relative error ≤ 2⁻²⁴)
        np.testing.assert_allclose(batch.behavior_logp_bt[row], logps + [0.0] * (width - n), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(batch.reward_b[row], reward, rtol=0, atol=0)
    np.testing.assert_array_equal(batch.group_b, np.arange(len(PROMPTS) * G) // G)
    np.testing.assert_array_equal(batch.version_b, 7)
    return expected


def check_scoring_reproduces_sampler(batch, expected):
    """The training forward over prompt ++ response scores every generated token as the sampler
    drew it: both count positions over real tokens only (shared-prompt and full paths)."""
    graphdef, params = parts()
    width = batch.response_bt.shape[1]
    logps = np.array([lp + [0.0] * (width - len(lp)) for _, _, lp, _, _, _, _ in expected])
    for group_size in (G, 1):
        scored = steps.score(graphdef, params, batch.replace(group_size=group_size), chunk_size=0)["logp_bt"]
        np.testing.assert_allclose(np.asarray(scored) * batch.mask_bt, logps, rtol=0, atol=1e-10)


# ------------------------------------------------------------------ tests
@pytest.mark.parametrize("devices", [1, 2], ids=["one_device", "data_parallel"])
def test_host_environment_equals_brute_force(devices):
    rng = jax.random.key(4)
    collector = turns(context(devices=devices), env=HOST_ENV, max_turns=MAX_TURNS, turn_tokens=TURN_TOKENS)
    assert collector.host
    batch, cstate, metrics = collector.collect((), policy_state(), data(), rng)
    assert cstate == ()
    expected = check_against_brute_force(batch, rng)
    played = np.array([e[5] for e in expected])
    done = np.array([e[6] for e in expected])
    assert done.any() and not done.all() and (played < MAX_TURNS).any()  # the script exercises all exits
    np.testing.assert_allclose(metrics["turns_mean"], played.mean())
    np.testing.assert_allclose(metrics["done_frac"], done.mean())
    np.testing.assert_allclose(metrics["env_error_frac"], 0.0)
    obs_tokens = [len(e[0]) - sum(e[1]) for e in expected]
    np.testing.assert_allclose(metrics["observation_tokens"], np.mean(obs_tokens))
    check_scoring_reproduces_sampler(batch, expected)
    example = collector.example(len(PROMPTS))
    for field in ("response_bt", "mask_bt", "reward_b", "group_b", "behavior_logp_bt", "version_b"):
        got, want = getattr(batch, field), getattr(example, field)
        assert (got.shape, got.dtype) == (want.shape, want.dtype), field
    assert (batch.aux["turn_bt"].shape, batch.aux["turn_bt"].dtype) == (example.aux["turn_bt"].shape, jnp.int32)


def test_device_environment_equals_brute_force_and_host():
    rng = jax.random.key(4)
    collector = turns(context(), env=DEVICE_ENV, max_turns=MAX_TURNS, turn_tokens=TURN_TOKENS)
    assert not collector.host
    arrays = {k: v for k, v in data().items() if k != "examples"}
    shaped = jax.eval_shape(collector.collect, (), policy_state(), arrays, rng)[0]
    example = collector.example(len(PROMPTS))
    assert jax.tree.structure(shaped) == jax.tree.structure(example)
    batch, _, metrics = jax.jit(collector.collect)((), policy_state(), arrays, rng)
    expected = check_against_brute_force(batch, rng)
    check_scoring_reproduces_sampler(batch, expected)
    np.testing.assert_allclose(metrics["turns_mean"], np.mean([e[5] for e in expected]))


class FailingEpisode(ScriptedEpisode):
    """A tool that raises on the first turn of every other trajectory."""

    count = 0

    def reset(self, example):
        FailingEpisode.count += 1
        self.fails, self.turn = FailingEpisode.count % 2 == 0, 0
        return super().reset(example)

    def step(self, tokens):
        self.turn += 1
        if self.fails and self.turn == 1:
            raise RuntimeError("the tool crashed")
        return super().step(tokens)


def test_failed_tool_calls_observe_the_error_and_the_run_goes_on():
    env = HostEnv(name="flaky", new_episode=FailingEpisode, observation_len=OBS, error_observation=(12, 12),
                  stop_sequences=STOPS)
    FailingEpisode.count = 0
    batch, _, metrics = turns(context(), env=env, max_turns=2, turn_tokens=TURN_TOKENS).collect(
        (), policy_state(), data(), jax.random.key(4))
    for row in range(1, len(PROMPTS) * G, 2):  # failing trajectories: generation 0, then the error
        turn = np.asarray(batch.aux["turn_bt"][row])
        gen0 = (turn == 0) & (np.asarray(batch.mask_bt[row]) > 0)
        after = np.flatnonzero(gen0)[-1] + 1
        np.testing.assert_array_equal(batch.response_bt[row, after : after + 2], [12, 12])
        np.testing.assert_array_equal(turn[after : after + 2], [1, 1])
        assert batch.mask_bt[row, after : after + 2].sum() == 0
        assert (turn == 1).sum() > 2  # turn 1 was played after the error
    assert 0 < float(metrics["env_error_frac"]) < 1


class SlowEpisode(ScriptedEpisode):
    def step(self, tokens):
        time.sleep(2.0)
        return super().step(tokens)


def test_timed_out_steps_observe_the_error_without_waiting():
    env = HostEnv(name="slow", new_episode=SlowEpisode, observation_len=OBS, error_observation=(12, 12),
                  stop_sequences=STOPS, step_timeout_s=0.05)
    collector = turns(context(group_size=1), env=env, max_turns=2, turn_tokens=TURN_TOKENS)
    collector.collect((), policy_state(), data(), jax.random.key(4))  # compiles
    start = time.monotonic()
    batch, _, metrics = collector.collect((), policy_state(), data(), jax.random.key(5))
    assert time.monotonic() - start < 1.5  # the 2 s steps were abandoned, not awaited
    np.testing.assert_allclose(metrics["env_error_frac"], 1.0)
    np.testing.assert_allclose(metrics["turns_mean"], 2.0)
    np.testing.assert_allclose(batch.reward_b, 0.0)


class WrongEpisode(ScriptedEpisode):
    def step(self, tokens):
        return "jj", 1.0, True


def test_an_environment_returning_the_wrong_type_gets_a_clear_error():
    env = HostEnv(name="wrong", new_episode=WrongEpisode, observation_len=OBS, error_observation=(12,))
    with pytest.raises(ValueError, match=r"^environment 'wrong': step returned the observation 'jj'; it must be"):
        turns(context(), env=env, max_turns=2, turn_tokens=TURN_TOKENS).collect(
            (), policy_state(), data(), jax.random.key(4))


def test_a_device_environment_returning_the_wrong_shape_gets_a_clear_error():
    def bad_step(seen_k, tokens_kn, mask_kn):
        seen_k, obs, valid, reward, done = device_step(seen_k, tokens_kn, mask_kn)
        return seen_k, obs, valid, reward[:, None], done

    env = DeviceEnv(name="bad", reset=device_reset, step=bad_step, observation_len=OBS)
    collector = turns(context(), env=env, max_turns=2, turn_tokens=TURN_TOKENS)
    arrays = {k: v for k, v in data().items() if k != "examples"}
    with pytest.raises(ValueError, match=r"environment 'bad': step returned the reward as \(12, 1\)"):
        jax.eval_shape(collector.collect, (), policy_state(), arrays, jax.random.key(0))


def test_configuration_errors():
    with pytest.raises(ValueError, match="max_turns=0 must be an int >= 1"):
        turns(context(), env=HOST_ENV, max_turns=0, turn_tokens=4)
    with pytest.raises(ValueError, match="unknown environment 'abacus'"):
        turns(context(), env="abacus", max_turns=2, turn_tokens=4)
    with pytest.raises(ValueError, match="exceed model.max_len=48"):
        turns(context(), env=HOST_ENV, max_turns=6, turn_tokens=5).collect(
            (), policy_state(), data(), jax.random.key(0))
