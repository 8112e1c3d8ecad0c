"""The LLM trainer compiles each step function once.

* Counted (jax.monitoring compile events): after a phase's step 2, steps 3 … 5 — with
  evaluations and checkpoints between them — compile nothing, for one config per trainer path
  (SFT warm start then one jitted RL step with a device verifier; a host verifier between two
  jitted calls, on a Hugging Face model; RLHF, whose frozen reward model is handed to every step
  beside the policy).
* Every LLM-trainer experiment (its :smoke config): each phase's jitted step maps the state to a
  state of the same pytree structure, shapes, dtypes and weak types — jit's cache key on one
  device — so no later step can recompile. This is checked by tracing (``jax.eval_shape``,
  nothing compiled), which keeps the ~25 configs cheap; the counted runs above show the key
  is the only thing that changes between steps.
"""
import importlib
import pathlib

import jax
import pytest

from compile_events import COMPILE_EVENT
from jax_cache import persistent_cache
from polrl.tasks import BatchIterator
from polrl.train.build import build_spec
from polrl.train.trainer import Trainer, init_phase_state

ROOT = pathlib.Path(__file__).resolve().parents[1]
STEPS = 5
COUNTED = ("arithmetic_grpo", "gsm8k_grpo", "arithmetic_rlhf_grpo")


def _llm_configs():
    """Experiments run by the LLM trainer: not control or diffusion runs."""
    names = []
    for path in sorted((ROOT / "experiments").glob("*.py")):
        if path.stem != "__init__" and _smoke(path.stem).get("trainer", "llm") == "llm":
            names.append(path.stem)
    return names


def _smoke(name):
    return importlib.import_module(f"experiments.{name}").get_config("smoke")


@pytest.fixture(autouse=True)
def data_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("POLRL_DATA_DIR", str(tmp_path_factory.getbasetemp() / "data"))


@pytest.fixture(scope="module")
def compilations(tmp_path_factory):
    """A log of ``("compile", function name)`` events, with a persistent cache so programs that
    other runs of the session compiled are not compiled again (a cache hit still counts here)."""
    log = []

    def listener(event, seconds, **kwargs):
        if event == COMPILE_EVENT:
            log.append(("compile", kwargs.get("fun_name")))

    jax.monitoring.register_event_duration_secs_listener(listener)
    with persistent_cache(str(tmp_path_factory.getbasetemp() / "jax_cache")):
        yield log
    jax.monitoring.unregister_event_duration_listener(listener)


def test_the_checked_configs_include_the_originals():
    assert {"arithmetic_grpo", "arithmetic_sft", "arithmetic_ppo", "arithmetic_dpo"} <= set(_llm_configs())
    assert set(COUNTED) <= set(_llm_configs())


@pytest.mark.slow
@pytest.mark.parametrize("name", COUNTED)
def test_no_recompilation_after_step_2(name, compilations, tmp_path):
    config = _smoke(name)
    config.total_steps, config.log_every, config.eval_every, config.checkpoint_every = STEPS, 1, 2, 2
    if config.warmup.steps:
        config.warmup.steps = STEPS
    trainer = Trainer(build_spec(config, progress=False), str(tmp_path))
    write = trainer.writer.write

    def write_and_mark(record):  # every step is logged (log_every=1): mark where each one ends
        write(record)
        compilations.append(("step", record["phase"], record.get("phase_step")))

    trainer.writer.write = write_and_mark
    start = len(compilations)
    trainer.run()
    log = compilations[start:]
    phases = list(dict.fromkeys(e[1] for e in log if e[0] == "step"))
    assert len(phases) == len(trainer.spec.phases)
    for phase in phases:
        after_2 = log.index(("step", phase, 2))
        after_5 = log.index(("step", phase, STEPS))
        recompiled = [e[1] for e in log[after_2:after_5] if e[0] == "compile"]
        assert not recompiled, f"{name}, phase {phase!r}: steps 3-{STEPS} compiled {recompiled}"
    assert any(e[0] == "compile" for e in log)  # the listener does see this run's compilations


def _signature(tree):
    avals = jax.eval_shape(lambda t: t, tree)
    return jax.tree.structure(avals), [(x.shape, x.dtype, x.weak_type) for x in jax.tree.leaves(avals)]


@pytest.mark.parametrize("name", _llm_configs())
def test_every_step_maps_the_state_to_the_same_signature(name, tmp_path):
    spec = build_spec(_smoke(name), progress=False)
    trainer = Trainer(spec, str(tmp_path))
    for index, phase in enumerate(spec.phases):
        if phase.collector.host:
            continue  # host verifier: numpy between two jitted calls, not traceable (counted above)
        state = init_phase_state(spec, phase, spec.init_params, jax.random.PRNGKey(0))
        rows = phase.collector.reads(phase.prompts_per_step)
        data = next(BatchIterator(phase.source, rows, task=spec.task, seed=index))
        step = trainer._step_fn(phase)
        device = trainer._device_data(data, rows)
        examples = device.pop("examples")
        out, _ = jax.eval_shape(lambda s, d: step(s, {**d, "examples": examples}), state, device)
        assert _signature(out) == _signature(state), f"{name}, phase {phase.name!r}"
