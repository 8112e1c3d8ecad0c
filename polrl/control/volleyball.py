"""A side-view volleyball court for MAPPO / IPPO / self-play, after VolleyBots.

Paper: "VolleyBots: A Testbed for Multi-Drone Volleyball Game Combining Motion Control and
Strategic Play" (Xu et al. 2025, arXiv 2502.01932). Its competitive tasks (1 vs 1, 3 vs 3) keep
here: two teams on either side of a net, turn-based hits under volleyball rules (a team touches
the ball at most N times before it crosses the net; the same player never twice in a row), a
rally that ends when the ball lands or a rule is broken, a win/lose reward, and its baselines
MAPPO, IPPO and self-play. The drones' motion control is replaced by one move per step.

Court (x along the court, z height; team 0 on x < 0, team 1 on x > 0, the net at x = 0 of
height h). The ball flies under gravity g in closed form over a step of dt:

    x(t) = x + vₓ t,   z(t) = z + v_z t − ½ g t²,   v_z(t) = v_z − g t,

so after k steps without a hit it is exactly at t = k·dt of the parabola. Per step, in order:

1. hits: a player whose action is a hit and who reaches the ball (the ball over its team's half,
   |x_ball − x_p| ≤ ``reach``, z_ball ≤ ``reach_height``) hits it; the ball's velocity becomes
   the chosen shot (vₓ toward the other half, v_z). A hit that is the team's (N+1)-th touch
   since the ball crossed, or by the player who touched it last, is a fault: the other team wins.
2. moves: every other player moves ``speed`` toward or away from the net (inside its half).
3. flight over dt: the ball crossing x = 0 at t_c = −x/vₓ below the net (z(t_c) < h) is a fault
   of the team it came from; above, the other team's touch count restarts at 0. The ball
   landing at t_l = (v_z + √(v_z² + 2 g z)) / g ≤ dt at x_l = x + vₓ t_l ends the rally: inside
   the court (|x_l| ≤ L) the team on whose half it lands loses, outside the team that touched
   it last loses. Whichever of the two events comes first decides.

Reward: +1 to every player of the winning team and −1 to the losing team's when a rally ends
(zero-sum); 0 otherwise. A rally still on after ``max_steps`` steps is a draw (reward 0) cut by
the time limit (truncated, bootstrapped); a decided rally is terminal (``info["terminated"]``).

Observation of player i, in its own team's frame (x mirrored for team 1, so its half is x < 0
too and one shared policy plays either side): [own x, teammates' x, opponents' x, ball x, z,
vₓ, v_z, touches / N, i touched last, own team touched last, ball over own half, team one-hot],
positions / L, velocities / 10. Actions (7, discrete, own frame): 0 stay, 1 away from the net,
2 toward the net, 3 … 6 the shots ``shots[k]`` = (vₓ, v_z): a set to a teammate, a lob, a
drive, a spike.

Modes (``opponent``): ``"scripted"`` — the agents are team 0's players and team 1 plays
``scripted_actions`` inside ``step_env``; ``"self"`` — the agents are both teams' players (one
shared policy; the team one-hot tells them apart besides the mirrored frame). ``make_run``
trains either with ``polrl.control.marl`` (MAPPO or IPPO, the repo's PPO loop unchanged) and
logs, after every update, the learned policy's win rate as team 0 against the scripted and
against a uniformly random team (``evaluate_games`` rallies each, actions sampled).

The environment has the interface of JaxMARL's ``MultiAgentEnv`` (``agents``, ``reset``,
``step_env``, ``step`` with auto-reset, ``get_obs``, ``observation_space``, ``action_space``,
``max_steps``) without importing jaxmarl (``polrl.control.marl.make_env`` says why that import
is deferred).

INFERRED: the court is 2-D with players on the floor (no flight); the drone dynamics, the
paper's shaping rewards and serve rules are not carried (only the ±1 outcome); the court's
sizes, speeds and the four shots (``Court``) are polrl's choices; hits are resolved before moves
within a step; a rally starts with the ball dropped from ``toss_height`` over a random team's
half (that team plays it first);
a ball into the net ends the rally (no bounce); several players of a team hitting in one step:
the lowest index hits; the scripted team moves under the ball's current x and returns every ball
with the lob; evaluation samples the policy's actions.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from polrl.control import marl
from polrl.control import train as control_train
from polrl.control.seeds import Run

Array = jax.Array

NAME = "Volleyball"
STAY, BACK, FORWARD = 0, 1, 2
NUM_MOVES = 3
OPPONENTS = ("scripted", "self")
VELOCITY_SCALE = 10.0


class Court(NamedTuple):
    """The court's constants (SI units; steps of ``dt`` seconds)."""

    half_length: float = 3.0
    net_height: float = 1.2
    gravity: float = 9.81
    dt: float = 0.1
    speed: float = 0.3
    reach: float = 0.5
    reach_height: float = 1.5
    max_touches: int = 3
    toss_height: float = 3.0
    max_steps: int = 100
    shots: tuple = ((0.5, 5.0), (2.5, 5.0), (4.0, 4.0), (6.0, 2.0))
    scripted_shot: int = 1


class CourtState(NamedTuple):
    """One rally. ``player_x`` [2n] (world x; players 0 … n−1 team 0, n … 2n−1 team 1); ``ball``
    and ``ball_v`` [2] (x, z); ``last_player``: who touched the ball last (−1: nobody yet);
    ``touches``: hits by the team whose half the ball is over since it crossed; ``time``."""

    player_x: Array
    ball: Array
    ball_v: Array
    last_player: Array
    touches: Array
    time: Array


class Discrete(NamedTuple):
    """A discrete action space of ``n`` actions (what ``marl.make_env`` reads of JaxMARL's)."""

    n: int


class Box(NamedTuple):
    """An observation space of ``shape`` (what ``marl.make_env`` reads of JaxMARL's)."""

    shape: tuple


def flight(ball: Array, ball_v: Array, t, gravity: float) -> tuple[Array, Array]:
    """The ball's position and velocity ``t`` seconds later under gravity (no event)."""
    x, z = ball[0] + ball_v[0] * t, ball[1] + ball_v[1] * t - 0.5 * gravity * t * t
    return jnp.stack([x, z]), jnp.stack([ball_v[0], ball_v[1] - gravity * t])


def advance(court: Court, n: int, state: CourtState, actions: Array) -> tuple[CourtState, Array]:
    """One step of the rally with every player's action [2n] (own-frame codes); returns the new
    state and the winner (0, 1, or −1 while the rally goes on). See the module docstring."""
    players = jnp.arange(2 * n)
    team = players // n
    facing = jnp.where(team == 0, 1.0, -1.0)  # +x is toward the net for team 0
    side = (state.ball[0] >= 0).astype(jnp.int32)  # the team whose half the ball is over
    # 1. hits
    wants = actions >= NUM_MOVES
    reaches = ((team == side) & (jnp.abs(state.player_x - state.ball[0]) <= court.reach)
               & (state.ball[1] <= court.reach_height))
    hitting = wants & reaches
    hit = hitting.any()
    hitter = jnp.argmax(hitting)
    fault = hit & ((hitter == state.last_player) | (state.touches >= court.max_touches))
    shots = jnp.asarray(court.shots, dtype=state.ball_v.dtype)
    shot = shots[jnp.clip(actions[hitter] - NUM_MOVES, 0, len(court.shots) - 1)]
    ball_v = jnp.where(hit, jnp.stack([shot[0] * facing[hitter], shot[1]]), state.ball_v)
    touches = state.touches + hit.astype(state.touches.dtype)
    last_player = jnp.where(hit, hitter, state.last_player).astype(state.last_player.dtype)
    # 2. moves (the hitter stays)
    step = court.speed * facing * ((actions == FORWARD).astype(facing.dtype) - (actions == BACK).astype(facing.dtype))
    low = jnp.where(team == 0, -court.half_length, 0.0)
    high = jnp.where(team == 0, 0.0, court.half_length)
    player_x = jnp.clip(state.player_x + step, low, high)
    # 3. flight over dt
    x, z = state.ball[0], state.ball[1]
    vx, vz = ball_v[0], ball_v[1]
    g, dt = court.gravity, court.dt
    t_land = (vz + jnp.sqrt(vz * vz + 2.0 * g * jnp.maximum(z, 0.0))) / g
    lands = t_land <= dt
    safe_vx = jnp.where(vx == 0, 1.0, vx)
    t_cross = jnp.where(vx == 0, jnp.inf, -x / safe_vx)
    crosses = (t_cross > 0) & (t_cross <= dt) & (~lands | (t_cross < t_land))
    z_cross = z + vz * t_cross - 0.5 * g * t_cross * t_cross
    into_net = crosses & (z_cross < court.net_height)
    x_land = x + vx * t_land
    inside = jnp.abs(x_land) <= court.half_length
    land_side = (x_land >= 0).astype(jnp.int32)
    last_team = jnp.where(last_player >= 0, last_player // n, land_side)
    landed_winner = jnp.where(inside, 1 - land_side, 1 - last_team)
    winner = jnp.where(fault, 1 - side,
                       jnp.where(into_net, 1 - side, jnp.where(lands, landed_winner, -1)))
    ball, ball_v = flight(state.ball, ball_v, jnp.where(lands, t_land, dt), g)
    touches = jnp.where(crosses & ~into_net, 0, touches)
    new = CourtState(player_x, ball, ball_v, last_player, touches, state.time + 1)
    return new, winner.astype(jnp.int32)


def own_frame(court: Court, n: int, state: CourtState, player: int) -> Array:
    """Player ``player``'s observation (module docstring), float32 [2n + 10]."""
    team = player // n
    d = 1.0 if team == 0 else -1.0
    mates = [p for p in range(team * n, (team + 1) * n) if p != player]
    others = list(range((1 - team) * n, (2 - team) * n))
    xs = state.player_x[jnp.asarray([player] + mates + others)] * d / court.half_length
    last_team = jnp.where(state.last_player >= 0, state.last_player // n, -1)
    side = (state.ball[0] >= 0).astype(jnp.int32)
    rest = jnp.stack([
        state.ball[0] * d / court.half_length, state.ball[1] / court.half_length,
        state.ball_v[0] * d / VELOCITY_SCALE, state.ball_v[1] / VELOCITY_SCALE,
        state.touches / court.max_touches, state.last_player == player, last_team == team, side == team,
        1.0 - team, float(team),
    ])
    return jnp.concatenate([xs, rest]).astype(jnp.float32)


def scripted_actions(court: Court, n: int, state: CourtState) -> Array:
    """Every player's scripted action [2n]: hit the lob when it can reach the ball, else step
    toward the ball's current x (clamped to its half), or stay within half a step of it."""
    players = jnp.arange(2 * n)
    team = players // n
    facing = jnp.where(team == 0, 1.0, -1.0)
    side = (state.ball[0] >= 0).astype(jnp.int32)
    target = jnp.where(team == 0, jnp.minimum(state.ball[0], 0.0), jnp.maximum(state.ball[0], 0.0))
    toward = (target - state.player_x) * facing  # > 0: the ball is nearer the net than the player
    move = jnp.where(toward > 0.5 * court.speed, FORWARD, jnp.where(toward < -0.5 * court.speed, BACK, STAY))
    can = ((team == side) & (jnp.abs(state.player_x - state.ball[0]) <= court.reach)
           & (state.ball[1] <= court.reach_height) & (players != state.last_player)
           & (state.touches < court.max_touches))
    return jnp.where(can, NUM_MOVES + court.scripted_shot, move).astype(jnp.int32)


def random_actions(court: Court, n: int, key: Array) -> Array:
    """Every player's action drawn uniformly [2n]."""
    return jax.random.randint(key, (2 * n,), 0, NUM_MOVES + len(court.shots))


class Volleyball:
    """The court as a JaxMARL-style multi-agent environment (module docstring).

    Args:
      players_per_team: n (1 for 1 vs 1, 2 for 2 vs 2, …).
      opponent: ``"scripted"`` (agents = team 0) or ``"self"`` (agents = both teams).
      **court: fields of ``Court`` to override.
    """

    def __init__(self, players_per_team: int = 1, opponent: str = "scripted", **court):
        if int(players_per_team) < 1:
            raise ValueError(f"env_params.players_per_team must be >= 1, got {players_per_team}")
        if opponent not in OPPONENTS:
            raise ValueError(f"env_params.opponent={opponent!r}: use one of {list(OPPONENTS)}")
        unknown = sorted(set(court) - set(Court._fields))
        if unknown:
            raise ValueError(f"unknown env_params {unknown} for {NAME}; its court fields are {list(Court._fields)}")
        self.court = Court(**court)
        self.n = int(players_per_team)
        self.opponent = opponent
        players = [f"team0_{i}" for i in range(self.n)] + [f"team1_{i}" for i in range(self.n)]
        self.agents = players[: self.n] if opponent == "scripted" else players
        self.num_agents = len(self.agents)
        self.max_steps = self.court.max_steps
        self.num_actions = NUM_MOVES + len(self.court.shots)
        self.obs_dim = 2 * self.n + 10

    def observation_space(self, agent: str) -> Box:
        return Box((self.obs_dim,))

    def action_space(self, agent: str) -> Discrete:
        return Discrete(self.num_actions)

    def initial_state(self, key: Array) -> CourtState:
        """Players spread over their halves; the ball at rest at ``toss_height`` over a random
        team's half (0.2 L … 0.8 L from the net)."""
        c, n = self.court, self.n
        k_team, k_x = jax.random.split(key)
        server = jax.random.bernoulli(k_team)
        x = jax.random.uniform(k_x, (), minval=0.2, maxval=0.8) * c.half_length
        spread = jnp.arange(1, n + 1) * c.half_length / (n + 1)
        zero = jnp.zeros((), x.dtype)
        return CourtState(
            player_x=jnp.concatenate([-spread, spread]).astype(x.dtype),
            ball=jnp.stack([jnp.where(server, x, -x), zero + c.toss_height]),
            ball_v=jnp.stack([zero, zero]),
            last_player=jnp.asarray(-1, jnp.int32), touches=jnp.asarray(0, jnp.int32),
            time=jnp.asarray(0, jnp.int32),
        )

    def get_obs(self, state: CourtState) -> dict:
        return {name: own_frame(self.court, self.n, state, i) for i, name in enumerate(self.agents)}

    def reset(self, key: Array) -> tuple[dict, CourtState]:
        state = self.initial_state(key)
        return self.get_obs(state), state

    def all_actions(self, state: CourtState, actions: dict) -> Array:
        """[2n]: the agents' actions, and the scripted team's where the agents are team 0 only."""
        own = jnp.stack([jnp.asarray(actions[name], jnp.int32) for name in self.agents])
        if self.opponent == "self":
            return own
        return jnp.concatenate([own, scripted_actions(self.court, self.n, state)[self.n:]])

    def step_env(self, key: Array, state: CourtState, actions: dict):
        state, winner = advance(self.court, self.n, state, self.all_actions(state, actions))
        decided = winner >= 0
        done = decided | (state.time >= self.max_steps)
        sign = jnp.where(winner == 0, 1.0, jnp.where(winner == 1, -1.0, 0.0))
        rewards = {name: sign * (1.0 if i < self.n else -1.0) for i, name in enumerate(self.agents)}
        dones = {name: done for name in self.agents}
        dones["__all__"] = done
        return self.get_obs(state), state, rewards, dones, {"terminated": decided, "winner": winner}

    def step(self, key: Array, state: CourtState, actions: dict):
        """``step_env`` with JaxMARL's auto-reset: a finished rally restarts in the same call."""
        key, key_reset = jax.random.split(key)
        obs_st, state_st, rewards, dones, info = self.step_env(key, state, actions)
        obs_re, state_re = self.reset(key_reset)
        pick = lambda re, st: jnp.where(dones["__all__"], re, st)  # noqa: E731
        return jax.tree.map(pick, obs_re, obs_st), jax.tree.map(pick, state_re, state_st), rewards, dones, info


def play(env: marl.MultiAgentVecEnv, policy_actions, opponent: str, key: Array, num_games: int) -> Array:
    """Outcomes [num_games] of rallies where team 0 plays ``policy_actions(rows, key) -> [G·A]``
    on ``env``'s rows and team 1 plays ``opponent`` (``"scripted"`` or ``"random"``): +1 a win of
    team 0, −1 a loss, 0 a draw (time limit). Each game is one rally from ``initial_state``."""
    game: Volleyball = env.env
    n, a = game.n, game.num_agents
    k_reset, k_play = jax.random.split(key)
    state = jax.vmap(game.initial_state)(jax.random.split(k_reset, num_games))
    winner = jnp.full((num_games,), -1, jnp.int32)

    def body(carry, k):
        state, winner = carry
        k_pol, k_opp = jax.random.split(k)
        own = policy_actions(env.rows(jax.vmap(game.get_obs)(state)), k_pol).reshape(num_games, a)[:, :n]
        if opponent == "scripted":
            other = jax.vmap(lambda s: scripted_actions(game.court, n, s))(state)[:, n:]
        else:
            other = jax.vmap(lambda k: random_actions(game.court, n, k))(jax.random.split(k_opp, num_games))[:, n:]
        new, w = jax.vmap(lambda s, acts: advance(game.court, n, s, acts))(state, jnp.concatenate([own, other], 1))
        on = winner < 0
        state = jax.tree.map(lambda x, y: jnp.where(on.reshape((-1,) + (1,) * (x.ndim - 1)), x, y), new, state)
        return (state, jnp.where(on, w, winner)), None

    (_, winner), _ = jax.lax.scan(body, (state, winner), jax.random.split(k_play, game.max_steps))
    return jnp.where(winner == 0, 1, jnp.where(winner == 1, -1, 0))


def evaluator(s: control_train.Setup, num_games: int):
    """``evaluate(params, key) -> {win_rate_scripted, win_rate_random, loss_rate_scripted}``: the
    learned policy (actions sampled) as team 0 in ``num_games`` rallies against each opponent."""

    def evaluate(params, key):
        def policy_actions(rows, k):
            return s.model.apply(params, rows)[0].sample(k)

        k_s, k_r = jax.random.split(key)
        scripted = play(s.env, policy_actions, "scripted", k_s, num_games)
        rand = play(s.env, policy_actions, "random", k_r, num_games)
        return dict(win_rate_scripted=(scripted == 1).mean(), loss_rate_scripted=(scripted == -1).mean(),
                    win_rate_random=(rand == 1).mean())

    return evaluate


def make_run(config) -> Run:
    """The launcher's ``Run`` (``config.run = "volleyball"``): ``polrl.control.marl``'s MAPPO /
    IPPO setup on ``env_name = "Volleyball"``, with ``evaluator(setup, config.evaluate_games)``
    after every update."""
    if config.get("env_name") != NAME:
        raise ValueError(f"env_name={config.get('env_name')!r}: polrl.control.volleyball trains env_name={NAME!r}")
    games = int(config.get("evaluate_games", 64))
    if games < 1:
        raise ValueError(f"evaluate_games must be >= 1, got {games}")
    s = marl.setup(config)
    evaluate = evaluator(s, games)

    def train(rng, params):
        return control_train.run_on_policy(s, rng, params=params, evaluate=evaluate)

    return Run(s.model.init, train, steps_per_update=s.env.num_parallel * s.num_steps)


__all__ = ["Court", "CourtState", "Volleyball", "advance", "evaluator", "flight", "make_run", "play",
           "random_actions", "scripted_actions"]
