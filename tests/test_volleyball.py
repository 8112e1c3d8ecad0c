"""The volleyball court: the ball's flight against the closed-form parabola, the net / landing /
out rules and the touch counter on hand-built states, the scripted team, zero-sum rewards,
jit == no-jit, vmapped courts == a loop, terminal vs time-limit ends in the MARL rows, and the
:smoke configs (with the per-update evaluation) through the launcher entry."""
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl.control import marl, volleyball as vb
from control_testing import run_smoke_config

C = vb.Court()
G = 9.81
advance = jax.jit(vb.advance, static_argnums=(0, 1))


def court_state(player_x, ball, ball_v, last_player=-1, touches=0):
    return vb.CourtState(jnp.asarray(player_x, jnp.float64), jnp.asarray(ball, jnp.float64),
                         jnp.asarray(ball_v, jnp.float64), jnp.asarray(last_player, jnp.int32),
                         jnp.asarray(touches, jnp.int32), jnp.asarray(0, jnp.int32))


def assert_trees_close(a, b):
    """Leaf by leaf: float64 within 1e-12; the float32 observations (cast from float64 values) within
    one float32 rounding of values below 10."""
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        atol = 1e-6 if x.dtype == jnp.float32 else 1e-12
        np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64), rtol=0, atol=atol)


def test_ball_follows_the_closed_form_parabola():
    with jax.enable_x64(True):
        s = court_state([-1.0, 1.0], [-2.0, 5.0], [0.3, 3.0])
        hits = jnp.asarray([5, 6])  # shots asked for, but the ball is above reach_height: no hit
        for k in range(1, 11):
            s, winner = advance(C, 1, s, hits)
            t = 0.1 * k
            np.testing.assert_allclose(s.ball, [-2.0 + 0.3 * t, 5.0 + 3.0 * t - 0.5 * G * t * t], rtol=0, atol=1e-12)
            np.testing.assert_allclose(s.ball_v, [0.3, 3.0 - G * t], rtol=0, atol=1e-12)
            assert int(winner) == -1
        np.testing.assert_array_equal(s.player_x, [-1.0, 1.0])  # a shot out of reach is no move either


def test_net_out_and_landing_rules():
    with jax.enable_x64(True):
        stay = jnp.asarray([0, 0])
        # crossing at t = 0.05 at z = 0.5 − ½ g 0.05² < 1.2: the team it came from (0) loses
        _, w = advance(C, 1, court_state([-2.0, 2.0], [-0.1, 0.5], [2.0, 0.0], last_player=0), stay)
        assert int(w) == 1
        # the same crossing at z = 2 − ½ g 0.05²: over the net, the rally goes on, touches restart
        s, w = advance(C, 1, court_state([-2.0, 2.0], [-0.1, 2.0], [2.0, 0.0], last_player=0, touches=1), stay)
        assert int(w) == -1 and int(s.touches) == 0
        np.testing.assert_allclose(s.ball, [0.1, 2.0 - 0.5 * G * 0.01], atol=1e-12)
        # landing inside team 1's half at t_l = (v_z + √(v_z² + 2gz)) / g: team 0 wins
        t_l = (-1.0 + np.sqrt(1.0 + 2 * G * 0.05)) / G
        s, w = advance(C, 1, court_state([-2.0, 2.0], [1.0, 0.05], [1.0, -1.0], last_player=0), stay)
        assert int(w) == 0
        np.testing.assert_allclose(s.ball, [1.0 + t_l, 0.0], atol=1e-12)
        # landing beyond the baseline (x_l = 2.95 + 3 t_l > 3): whoever touched it last loses
        out = court_state([-2.0, 2.0], [2.95, 0.05], [3.0, -1.0], last_player=0)
        assert 2.95 + 3 * t_l > C.half_length
        assert int(advance(C, 1, out, stay)[1]) == 1
        assert int(advance(C, 1, out._replace(last_player=jnp.asarray(1, jnp.int32)), stay)[1]) == 0


def test_touch_counter_and_the_same_player_rule():
    with jax.enable_x64(True):
        n, lob = 2, jnp.asarray([3, 0, 0, 0])  # player 0 plays the set (shot 0)
        base = court_state([-1.0, -2.0, 1.0, 2.0], [-1.0, 1.0], [0.0, -1.0], last_player=1, touches=1)
        s, w = advance(C, n, base, lob)
        assert int(w) == -1 and int(s.touches) == 2 and int(s.last_player) == 0
        np.testing.assert_allclose(s.ball_v, [0.5, 5.0 - G * 0.1], atol=1e-12)
        np.testing.assert_allclose(s.ball, [-1.0 + 0.05, 1.0 + 0.5 - 0.5 * G * 0.01], atol=1e-12)
        twice = base._replace(last_player=jnp.asarray(0, jnp.int32))
        assert int(advance(C, n, twice, lob)[1]) == 1  # the same player twice in a row
        assert int(advance(C, n, base._replace(touches=jnp.asarray(3, jnp.int32)), lob)[1]) == 1  # a 4th touch
        # team 1's shots point toward −x; its player 3 moves toward the net (−x), player 0 away (−x)
        s, w = advance(C, n, court_state([-1.0, -2.0, 1.0, 2.0], [1.0, 1.0], [0.0, -1.0]), jnp.asarray([1, 0, 5, 2]))
        assert int(w) == -1 and int(s.last_player) == 2
        np.testing.assert_allclose(s.ball_v, [-4.0, 4.0 - G * 0.1], atol=1e-12)
        np.testing.assert_allclose(s.player_x, [-1.3, -2.0, 1.0, 1.7], atol=1e-12)


def test_scripted_team_hits_the_lob_in_reach_and_walks_under_the_ball():
    with jax.enable_x64(True):
        s = court_state([-1.0, -2.0, 1.1, 2.5], [1.0, 1.0], [0.0, -1.0], last_player=-1)
        np.testing.assert_array_equal(vb.scripted_actions(C, 2, s), [2, 2, 4, 2])
        s = s._replace(last_player=jnp.asarray(2, jnp.int32))  # player 2 touched it last: it may not again
        np.testing.assert_array_equal(vb.scripted_actions(C, 2, s), [2, 2, 0, 2])  # within half a step: stays


def test_scripted_team_beats_a_random_team():
    games = 200
    game = vb.Volleyball(players_per_team=1, opponent="self")

    @jax.jit
    def outcomes(key):
        k0, k1 = jax.random.split(key)
        state = jax.vmap(game.initial_state)(jax.random.split(k0, games))

        def body(carry, k):
            s, w = carry
            acts = jnp.concatenate([
                jax.vmap(lambda x: vb.scripted_actions(game.court, 1, x))(s)[:, :1],
                jax.vmap(lambda kk: vb.random_actions(game.court, 1, kk))(jax.random.split(k, games))[:, 1:]], 1)
            new, ww = jax.vmap(lambda x, a: vb.advance(game.court, 1, x, a))(s, acts)
            on = w < 0
            s = jax.tree.map(lambda a, b: jnp.where(on.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), new, s)
            return (s, jnp.where(on, ww, w)), None

        (_, w), _ = jax.lax.scan(body, (state, jnp.full((games,), -1)), jax.random.split(k1, game.max_steps))
        return w

    with jax.enable_x64(True):
        w = np.asarray(outcomes(jax.random.key(0)))
    assert (w == 0).sum() >= 0.8 * games and (w == 1).sum() < 0.2 * games


def test_rewards_are_zero_sum_and_follow_the_winner():
    game = vb.Volleyball(players_per_team=2, opponent="self")

    @jax.jit
    def rally(key):
        def body(state, k):
            acts = dict(zip(game.agents, jax.random.randint(k, (4,), 0, 7)))
            _, state, rewards, _, info = game.step(jax.random.fold_in(k, 1), state, acts)
            return state, (jnp.stack([rewards[a] for a in game.agents]), info["winner"], info["terminated"])

        return jax.lax.scan(body, game.reset(key)[1], jax.random.split(key, 200))[1]

    r, winner, terminated = map(np.asarray, rally(jax.random.key(0)))
    np.testing.assert_array_equal(r.sum(1), 0.0)
    np.testing.assert_array_equal(r, np.outer(np.select([winner == 0, winner == 1], [1.0, -1.0], 0.0), [1, 1, -1, -1]))
    assert terminated.sum() >= 3 and ((winner >= 0) == terminated).all()


def test_jit_equals_no_jit_and_vmap_equals_a_loop():
    with jax.enable_x64(True):
        game = vb.Volleyball(players_per_team=1, opponent="scripted")
        keys = jax.random.split(jax.random.key(3), 3)
        _, states = jax.jit(jax.vmap(game.reset))(keys)
        one_step, all_steps = jax.jit(game.step), jax.jit(jax.vmap(game.step))
        for t in range(12):
            k = jax.random.split(jax.random.key(t), 3)
            acts = {a: np.asarray(jax.random.randint(jax.random.fold_in(k[0], i), (3,), 0, 7))
                    for i, a in enumerate(game.agents)}
            out = jax.tree.map(np.asarray, all_steps(k, states, acts))
            for e in range(3):
                state_e = jax.tree.map(lambda x: np.asarray(x)[e], states)
                one = one_step(k[e], state_e, {a: v[e] for a, v in acts.items()})
                assert_trees_close(one, jax.tree.map(lambda x: x[e], out))
            states = out[1]
        hit = court_state([-1.0, -2.0, 1.0, 2.0], [-1.0, 1.0], [0.3, -1.0], last_player=1, touches=1)
        acts = jnp.asarray([4, 2, 1, 0])
        assert_trees_close(vb.advance(C, 2, hit, acts), advance(C, 2, hit, acts))


def test_decided_rallies_are_terminal_and_the_time_limit_truncates():
    env = marl.make_env("Volleyball", 3, players_per_team=2, opponent="self", max_steps=1)
    assert env.num_envs == 12 and env.obs_shape == (14 + 4 + 56 + 4,) and env.action.num_actions == 7
    step, stay = jax.jit(env.step), jnp.zeros((12,), jnp.int32)
    obs, state = env.reset(jax.random.key(0))
    _, _, out = step(jax.random.key(1), state, stay)  # the tossed ball is still high at the time limit
    assert out.truncated.all() and not out.terminated.any() and not np.asarray(out.reward).any()
    low = state._replace(ball=state.ball.at[:, 1].set(0.04))  # lands within the step on the server's half
    _, _, out = step(jax.random.key(1), low, stay)
    assert out.terminated.all() and not out.truncated.any()
    team0_reward = np.where(np.asarray(state.ball[:, 0]) < 0, -1.0, 1.0)
    np.testing.assert_array_equal(np.asarray(out.reward).reshape(3, 4), np.outer(team0_reward, [1, 1, -1, -1]))


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="opponent"):
        vb.Volleyball(opponent="random")
    with pytest.raises(ValueError, match="players_per_team"):
        vb.Volleyball(players_per_team=0)
    with pytest.raises(ValueError, match="net_heigth"):
        vb.Volleyball(net_heigth=1.0)
    config = importlib.import_module("experiments.volleyball_mappo").get_config("smoke")
    config.evaluate_games = 0
    with pytest.raises(ValueError, match="evaluate_games"):
        vb.make_run(config)
    config.env_name = "MPE_simple_spread_v3"
    with pytest.raises(ValueError, match="env_name"):
        vb.make_run(config)


def test_ippo_config_is_the_mappo_recipe_with_an_own_observation_critic():
    mappo = importlib.import_module("experiments.volleyball_mappo").get_config("smoke")
    ippo_module = importlib.import_module("experiments.volleyball_ippo")
    assert "python -m polrl.launch --config experiments/volleyball_ippo.py" in ippo_module.__doc__
    with pytest.raises(ValueError, match="unknown arg"):
        ippo_module.get_config("smok")
    ippo = ippo_module.get_config("smoke")
    assert ippo.algorithm == "ippo" and {**ippo.to_dict(), "algorithm": "mappo"} == mappo.to_dict()
    def critic_shapes(config):
        return [x.shape for x in jax.tree.leaves(marl.setup(config).model.init(jax.random.key(0))["critic"])]

    # rows of 2 agents: own part 14 + 2 (observation, agent one-hot), global part 2·14 + 2
    assert (14 + 2, 64) in critic_shapes(ippo) and (2 * 14 + 2, 64) in critic_shapes(mappo)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["volleyball_mappo", "volleyball_selfplay"])
def test_smoke_config_runs_through_the_launcher_entry(name, tmp_path):
    _, records = run_smoke_config(name, tmp_path)
    assert [r["step"] for r in records] == [16, 32] and all(np.isfinite(r["loss"]) for r in records)
    for r in records:  # 4 rallies per opponent and seed, 2 seeds: whole rallies out of 8
        rates = 8 * np.asarray([r["win_rate_scripted"], r["loss_rate_scripted"], r["win_rate_random"]])
        np.testing.assert_allclose(rates, np.round(rates), atol=1e-9)
