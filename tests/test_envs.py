"""Text environments (polrl.envs): the calculator tool, the protocol's checks, and stepping
with failures and timeouts."""
import threading
import time

import numpy as np
import pytest

from polrl import envs
from polrl.envs import DeviceEnv, HostEnv, Stepper
from polrl.envs.protocol import check_step
from polrl.tasks import CharTokenizer, Task, exact_match

TOK = CharTokenizer()
EOS = TOK.eos_id


def _reward(completions, examples):
    return np.array([exact_match(c, e["target"]) for c, e in zip(completions, examples)], np.float32)


TASK = Task(name="toy", tokenizer=TOK, max_prompt_len=9, max_answer_len=8, train=[], test=[], host_reward=_reward)


def episode(target="17945", **kwargs):
    env = envs.calculator(TASK, **kwargs)
    ep = env.new_episode()
    assert ep.reset({"prompt": "37*485=", "target": target}) == []
    return env, ep


# ------------------------------------------------------------------ the calculator
def test_calculator_answers_calls_and_scores_the_final_answer():
    env, ep = episode()
    assert env.stop_sequences == ((TOK.encode(">")[0],),) and env.observation_len == 10
    obs, reward, done = ep.step(TOK.encode("<37*485>"))
    assert TOK.decode(obs) == "=17945\n" and (reward, done) == (0.0, False)
    obs, reward, done = ep.step(TOK.encode("so <(2+3)*4-30>"))  # text before the call is ignored
    assert TOK.decode(obs) == "=-10\n" and not done
    assert ep.step(TOK.encode("17945") + [EOS]) == ([], 1.0, True)
    _, ep = episode()
    assert ep.step(TOK.encode("17946") + [EOS]) == ([], 0.0, True)
    _, ep = episode()
    assert ep.step(TOK.encode("1794")) == ([], 0.0, True)  # the budget ran out: a (wrong) final answer


@pytest.mark.parametrize("call, why", [("<37**485>", "where a number"), ("37*485>", "has no '<'"),
                                       ("<99999*99999>", "more than 8 characters"), ("<>", "ends early")])
def test_calculator_failed_calls_raise(call, why):
    _, ep = episode()
    with pytest.raises(ValueError, match=why):
        ep.step(TOK.encode(call))


def test_calculator_options_are_checked():
    with pytest.raises(ValueError, match="max_result_chars=4 must be >= 5"):
        envs.calculator(TASK, max_result_chars=4)
    assert envs.get("calculator") is envs.calculator
    with pytest.raises(ValueError, match=r"unknown environment 'abacus'; polrl.envs has \['calculator'\]"):
        envs.get("abacus")


# ------------------------------------------------------------------ the protocol's checks
def test_static_facts_are_checked():
    with pytest.raises(ValueError, match="environment 'e': observation_len=0 must be an int >= 1"):
        HostEnv(name="e", new_episode=object, observation_len=0, error_observation=())
    with pytest.raises(ValueError, match="environment 'e': error_observation has 3 tokens, more than observation_len=2"):
        HostEnv(name="e", new_episode=object, observation_len=2, error_observation=(4, 4, 4))
    with pytest.raises(ValueError, match="environment 'e': stop_sequences=.* must be a tuple of non-empty tuples"):
        DeviceEnv(name="e", reset=None, step=None, observation_len=2, stop_sequences=(5,))
    with pytest.raises(ValueError, match="step_timeout_s=0 must be > 0 or None"):
        HostEnv(name="e", new_episode=object, observation_len=2, error_observation=(), step_timeout_s=0)


@pytest.mark.parametrize("out, message", [
    ([1, 2], "step returned list; it must return a tuple"),
    (("ab", 0.0, False), "step returned the observation 'ab'; it must be a 1-D sequence of int token ids"),
    (([1.5], 0.0, False), r"observation \[1.5\]; it must be a 1-D sequence of int"),
    (([3] * 5, 0.0, False), "an observation of 5 tokens, more than its observation_len=4"),
    (([70], 0.0, False), r"token ids outside \[0, 64\)"),
    (([3], float("nan"), False), "the reward nan; it must be a finite float"),
    (([3], None, False), "the reward None"),
    (([3], 1.0, 1), "done=1; it must be a bool"),
])
def test_wrong_step_outputs_are_one_line_errors_naming_the_environment(out, message):
    with pytest.raises(ValueError, match=message) as info:
        check_step("calc", out, 4, 64)
    assert str(info.value).startswith("environment 'calc': ") and "\n" not in str(info.value)


def test_right_step_outputs_are_normalised():
    assert check_step("calc", (np.array([3, 4]), np.float32(0.5), np.bool_(True)), 4, 64) == ([3, 4], 0.5, True)
    assert check_step("calc", ((), 1, False), 4, 64) == ([], 1.0, False)


# ------------------------------------------------------------------ stepping
class Scripted:
    def __init__(self, delay=0.0, fail=False):
        self.delay, self.fail, self.calls = delay, fail, 0

    def step(self, tokens):
        self.calls += 1
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("tool down")
        return [len(tokens) + 3], 0.5, False


def host_env(timeout=None):
    return HostEnv(name="scripted", new_episode=Scripted, observation_len=2, error_observation=(9, 9),
                   step_timeout_s=timeout)


@pytest.mark.parametrize("timeout", [None, 1.0])
def test_failing_steps_observe_the_error(timeout):
    episodes = [Scripted(), Scripted(fail=True), Scripted()]
    results = Stepper(host_env(timeout), 64).step(episodes, [0, 1, 2], [[5], [5, 6], [5, 6, 7]])
    assert results == [([4], 0.5, False, False), ([9, 9], 0.0, False, True), ([6], 0.5, False, False)]


def test_timed_out_steps_are_abandoned_and_not_stepped_again_while_busy():
    episodes = [Scripted(), Scripted(delay=0.6)]
    stepper = Stepper(host_env(timeout=0.1), 64)
    start = time.monotonic()
    first = stepper.step(episodes, [0, 1], [[5], [5]])
    second = stepper.step(episodes, [0, 1], [[5, 6], [5]])  # row 1's first step is still running
    assert time.monotonic() - start < 0.5
    assert first == [([4], 0.5, False, False), ([9, 9], 0.0, False, True)]
    assert second == [([5], 0.5, False, False), ([9, 9], 0.0, False, True)]
    assert episodes[1].calls == 1
    time.sleep(0.6)  # the abandoned step returns; the episode is stepped again
    episodes[1].delay = 0.0
    assert stepper.step(episodes, [1], [[5, 6]]) == [([5], 0.5, False, False)]
    assert episodes[1].calls == 2


def test_steps_with_a_timeout_run_concurrently():
    episodes = [Scripted(delay=0.3) for _ in range(4)]
    start = time.monotonic()
    results = Stepper(host_env(timeout=2.0), 64).step(episodes, [0, 1, 2, 3], [[5]] * 4)
    assert time.monotonic() - start < 1.0 and all(not r[3] for r in results)
    assert threading.active_count() < 50
