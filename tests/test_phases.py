"""``config.phases``: a run as a list of phase sections after the warm-up (build's phase list),
each starting from — and anchored to — the previous phase's final parameters."""
import json

import jax
import ml_collections
import numpy as np
import pytest

from polrl.train import trainer as trainer_lib
from polrl.train.build import build_spec
from polrl.train.trainer import Trainer

pytestmark = pytest.mark.usefixtures("data_dir")


@pytest.fixture
def data_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("POLRL_DATA_DIR", str(tmp_path_factory.getbasetemp() / "data"))


def _smoke(**fields):
    from experiments import arithmetic_grpo

    c = arithmetic_grpo.get_config("smoke")
    for field, value in fields.items():  # replaced, not merged into the smoke config's sections
        c[field] = value
    return c


def _section(**fields):
    return ml_collections.ConfigDict(fields)


def test_phases_build_in_order_with_their_own_collector_and_data(tmp_path):
    """A Light-R1-like curriculum: SFT on the demos → DPO on offline pairs → GRPO on prompts; the
    top-level GRPO fields are the defaults of the last entry."""
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in [
        {"prompt": "1+2+3=", "chosen": "6", "rejected": "7"},
        {"prompt": "4+4+1=", "chosen": "9", "rejected": "10"}]))
    c = _smoke(total_steps=6)
    c.phases = [
        _section(name="sft", steps=1, algorithm="sft", algorithm_kwargs=dict(learning_rate=1e-3),
                 collector="demonstrations", data="demos"),
        _section(name="dpo", steps=2, algorithm="dpo", algorithm_kwargs=dict(beta=0.1), collector="offline_pairs",
                 data="pairs", pairs=dict(path=str(pairs), batch_size=2)),
        _section(name="grpo", steps=3),
    ]
    spec = build_spec(c, progress=False)
    assert [(p.name, p.steps) for p in spec.phases] == [("sft_warmup", 3), ("sft", 1), ("dpo", 2), ("grpo", 3)]
    _, sft, dpo, grpo = spec.phases
    assert (sft.prompts_per_step, len(sft.source)) == (c.demos.batch_size, c.demos.num)
    assert sft.collector.example(sft.prompts_per_step).response_bt.shape[0] == c.demos.batch_size
    assert (dpo.prompts_per_step, [e["prompt"] for e in dpo.source]) == (2, ["1+2+3=", "4+4+1="])
    assert dpo.collector.host and dpo.collector.example(2).group_size == 2
    assert "ref_logp" in dpo.algorithm.needs and "ref_logp" not in sft.algorithm.needs
    g = c.rollout.group_size
    assert grpo.prompts_per_step == c.rollout.batch_size // g and len(grpo.source) == c.task.num_train
    assert grpo.collector.example(grpo.prompts_per_step).group_size == g


def test_kwargs_default_to_the_top_level_only_for_the_same_noun():
    c = _smoke(total_steps=2, collector="preference_pairs", collector_kwargs=dict(gold=True),
               algorithm="dpo", algorithm_kwargs=dict(beta=0.5))
    c.phases = [_section(name="pairs", steps=1),  # inherits preference_pairs(gold=True) and dpo(beta=0.5)
                _section(name="groups", steps=1, collector="group_samples", algorithm="grpo")]
    # grpo(beta=0.5) or group_samples(gold=True) would be a TypeError: the second entry takes neither
    _, pairs, groups = build_spec(c, progress=False).phases
    example = pairs.collector.example(pairs.prompts_per_step)
    assert example.source_b is not None and example.group_size == 2  # the gold candidate's source marks
    assert groups.collector.example(groups.prompts_per_step).group_size == c.rollout.group_size


def _signature(spec):
    out = []
    for p in spec.phases:
        example = p.collector.example(p.prompts_per_step)
        out.append((p.name, p.steps, p.prompts_per_step, len(p.source), p.algorithm.needs, p.collector.needs,
                    p.algorithm.num_epochs, p.algorithm.num_minibatches, jax.tree.structure(example),
                    [(x.shape, x.dtype) for x in jax.tree.leaves(example)]))
    return out


def test_then_is_the_two_entry_phase_list():
    from experiments import arithmetic_remix

    with_then = arithmetic_remix.get_config("smoke")
    then = with_then.then
    as_list = arithmetic_remix.get_config("smoke")
    del as_list["then"]
    main_steps = round(then.switch_fraction * as_list.total_steps)
    as_list.phases = [_section(name="rl", steps=main_steps),
                      _section(name=then.name, steps=as_list.total_steps - main_steps, algorithm=then.algorithm,
                               algorithm_kwargs=then.algorithm_kwargs)]
    assert _signature(build_spec(with_then, progress=False)) == _signature(build_spec(as_list, progress=False))


def _run_two_dno_phases(workdir, monkeypatch):
    """Two DPO phases of one step each; returns {phase: ref params at its start} and {phase:
    final params}, copied to the host when they are made (the step donates the state)."""
    from experiments import arithmetic_dno

    c = arithmetic_dno.get_config("smoke")
    c.total_steps = 2
    c.phases = [_section(name="dno_1", steps=1), _section(name="dno_2", steps=1)]
    refs, finals = {}, {}
    init = trainer_lib.init_phase_state

    def spy_init(spec, phase, params, rng):
        state = init(spec, phase, params, rng)
        if not isinstance(jax.tree.leaves(state.params)[0], jax.core.Tracer):
            refs[phase.name] = jax.tree.map(np.array, state.ref_params)
        return state

    run_phase = Trainer._run_phase

    def spy_run(self, phase, *args):
        params, *rest = run_phase(self, phase, *args)
        finals[phase.name] = jax.tree.map(np.array, params)
        return (params, *rest)

    monkeypatch.setattr(trainer_lib, "init_phase_state", spy_init)
    monkeypatch.setattr(Trainer, "_run_phase", spy_run)
    Trainer(build_spec(c, progress=False), str(workdir)).run()
    return refs, finals


def test_each_phase_is_anchored_to_the_previous_phase_final_params(tmp_path, monkeypatch):
    refs, finals = _run_two_dno_phases(tmp_path, monkeypatch)
    assert list(refs) == list(finals) == ["sft_warmup", "dno_1", "dno_2"]
    same = lambda a, b: all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))
    assert same(refs["dno_1"], finals["sft_warmup"])
    assert same(refs["dno_2"], finals["dno_1"])
    assert not same(finals["dno_1"], finals["sft_warmup"])  # the first iteration moved: the check can fail


def test_identical_phases_share_one_compiled_step(tmp_path):
    """DNO's iterations are one method run again: they get the same algorithm and collector, so the
    trainer compiles their step once; a phase with other keywords gets its own."""
    from experiments import arithmetic_dno

    c = arithmetic_dno.get_config("smoke")
    c.total_steps = 3
    c.phases = [_section(name="a", steps=1), _section(name="b", steps=1),
                _section(name="c", steps=1, algorithm_kwargs=dict(beta=0.5))]
    spec = build_spec(c, progress=False)
    a, b, other = spec.phases[-3:]
    assert a.algorithm is b.algorithm and a.collector is b.collector
    assert other.algorithm is not a.algorithm and other.collector is not a.collector
    trainer = Trainer(spec, str(tmp_path))
    assert trainer._step_fn(a) is trainer._step_fn(b)
    assert trainer._step_fn(other) is not trainer._step_fn(a)


@pytest.mark.parametrize("change,message", [
    (dict(phases=[dict(name="a", steps=3, collectr="group_samples")]),
     r"^phases\[0\]\.collectr is not a phase field; a phase takes \['name', 'steps'"),
    (dict(phases=[dict(name="a", steps=2), dict(steps=1)]), r"^phases\[1\]\.name=None: give every phase a non-empty"),
    (dict(phases=[dict(name="a")]), r"^phases\[0\]\.steps=None must be an int >= 0"),
    (dict(phases=[dict(name="a", steps=2), dict(name="a", steps=1)]),
     r"^phases\[1\]\.name='a' repeats phases\[0\]\.name; give every phase a unique name"),
    (dict(phases=[dict(name="sft_warmup", steps=3)]), r"^phases\[0\]\.name='sft_warmup' is the warm-up phase's name"),
    (dict(phases=[dict(name="a", steps=1), dict(name="b", steps=1)]),
     r"^total_steps=3 but phases\[\*\]\.steps sum to 2; .* set total_steps=2"),
    (dict(phases=[]), r"^config\.phases=\[\] must be a non-empty list"),
    (dict(phase_name="rl", phases=[dict(name="a", steps=3)]), r"^config\.phase_name is set with config\.phases"),
    (dict(phases=[dict(name="a", steps=1), dict(name="b", steps=2, algorithm="dpoo")]),
     r"^phases\[1\]\.algorithm='dpoo': unknown algorithm 'dpoo'"),
    (dict(phases=[dict(name="a", steps=3, collector="preference_pairs", collector_kwargs=dict(margin=-1.0))]),
     r"^phases\[0\]\.collector_kwargs=.*margin=-1\.0 must be a finite number >= 0"),
    (dict(phases=[dict(name="a", steps=3, data="prompts")]), r"^phases\[0\]\.data='prompts'; use 'train'"),
])
def test_bad_phase_entries_fail_with_the_field(change, message):
    c = _smoke()
    if "phase_name" in change:
        c.phase_name = change["phase_name"]
    c.phases = [_section(**entry) for entry in change["phases"]]
    with pytest.raises(ValueError, match=message) as e:
        build_spec(c, progress=False)
    assert "\n" not in str(e.value)


def test_then_with_phases_is_refused():
    from experiments import arithmetic_remix

    c = arithmetic_remix.get_config("smoke")
    c.phases = [_section(name="a", steps=c.total_steps)]
    with pytest.raises(ValueError, match=r"^config\.then is set with config\.phases; remove it"):
        build_spec(c, progress=False)
