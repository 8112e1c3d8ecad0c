"""Held-out evaluation sees the policy alone: a run's greedy sampler, spied on, gets the task's plain
test prompts and the parameters it was given, whatever frozen models the run holds."""
import jax
import numpy as np


def check_evaluation_sees_the_policy_alone(config, tmp_path, monkeypatch):
    """Builds ``config``, evaluates its initial parameters with the greedy sampler spied on, checks
    that the sampler ran once, on exactly ``task_batch``'s held-out prompts and with those parameters
    (no teacher's, no hint, no prefix), and returns the spec (callers check which models it holds)."""
    from polrl.tasks.data import task_batch
    from polrl.train.build import build_spec
    from polrl.train.trainer import Trainer

    monkeypatch.setenv("POLRL_DATA_DIR", str(tmp_path / "data"))
    with jax.enable_x64(False):
        spec = build_spec(config, progress=False)
        trainer = Trainer(spec, str(tmp_path / "run"))
        seen = []
        greedy = trainer._greedy
        trainer._greedy = lambda params, prompt_bp, valid_bp, rng: seen.append(
            (params, np.asarray(prompt_bp), np.asarray(valid_bp))) or greedy(params, prompt_bp, valid_bp, rng)
        trainer.evaluate(spec.init_params)
    plain = task_batch(spec.task, [spec.task.test[i] for i in range(config.eval.num_examples)])
    assert len(seen) == 1
    assert seen[0][0] is spec.init_params
    np.testing.assert_array_equal(seen[0][1], plain["prompt_bp"])
    np.testing.assert_array_equal(seen[0][2], plain["prompt_valid_bp"])
    return spec
