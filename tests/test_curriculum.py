"""A phase's ``difficulty`` section: its data (train prompts, demos or pairs) filtered by the task's
per-example difficulty; and experiments/arithmetic_light_r1 (Light-R1's curriculum, arXiv
2503.10460) built as the phases it means."""
import json

import ml_collections
import pytest

from polrl.tasks import arithmetic
from polrl.tasks.data import decode_example
from polrl.train.build import build_spec, select_by_difficulty

pytestmark = pytest.mark.usefixtures("data_dir")


@pytest.fixture
def data_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("POLRL_DATA_DIR", str(tmp_path_factory.getbasetemp() / "data"))


def _section(**fields):
    return ml_collections.ConfigDict(fields)


def _smoke(total_steps=3):
    from experiments import arithmetic_grpo

    c = arithmetic_grpo.get_config("smoke")
    c.total_steps = total_steps
    return c


def _carries(example) -> bool:
    """Sum of the one-digit operands of "a+b+c=" >= 10, read without the task's parser."""
    prompt = decode_example(example)["prompt"]
    return sum(int(x) for x in prompt[:-1].split("+")) >= 10


@pytest.mark.parametrize("prompt,level", [
    ("3+5+1=", 1), ("0+0=", 1), ("9+8+7=", 2), ("5+5+0=", 2), ("12-40=", 2), ("5-9=", 1), ("99*99=", 4),
    ("2+3*4=", 2)])
def test_arithmetic_difficulty_is_the_answer_digit_count(prompt, level):
    assert arithmetic.difficulty({"prompt": prompt}) == level


def test_select_keeps_the_rows_in_range_in_order_and_undecoded():
    rows = [{"prompt": b"1+2+3=", "answer": b"6"}, {"prompt": b"9+9+9=", "answer": b"27"},
            {"prompt": b"99*99=", "answer": b"9801"}, {"prompt": b"5+5+0=", "answer": b"10"}]
    kept = select_by_difficulty(rows, arithmetic.difficulty, {"min": 2, "max": 3}, "phases[0].difficulty", "demos")
    assert kept == [rows[1], rows[3]]  # the bytes originals, not decoded copies
    assert select_by_difficulty(rows, arithmetic.difficulty, {"max": 1}, "f", "demos") == [rows[0]]
    assert select_by_difficulty(rows, arithmetic.difficulty, {"min": 4}, "f", "demos") == [rows[2]]


def test_each_data_kind_is_filtered(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in [
        {"prompt": "1+2+3=", "chosen": "6", "rejected": "7"},
        {"prompt": "9+8+7=", "chosen": "24", "rejected": "23"},
        {"prompt": "4+4+1=", "chosen": "9", "rejected": "10"},
        {"prompt": "5+5+0=", "chosen": "10", "rejected": "11"}]))
    c = _smoke(total_steps=3)
    c.phases = [
        _section(name="hard_demos", steps=1, algorithm="sft", collector="demonstrations", data="demos",
                 difficulty=dict(min=2)),
        _section(name="hard_pairs", steps=1, algorithm="dpo", collector="offline_pairs", data="pairs",
                 pairs=dict(path=str(pairs), batch_size=2), difficulty=dict(min=2)),
        _section(name="easy_prompts", steps=1, difficulty=dict(max=1)),
    ]
    _, demos, pairs_phase, prompts = build_spec(c, progress=False).phases
    from polrl.train.build import build_task, demonstrations

    task = build_task(c)
    all_demos = demonstrations(task, c.demos.num, c.seed)
    assert demos.source == [d for d in all_demos if _carries(d)] and 0 < len(demos.source) < len(all_demos)
    assert [e["prompt"] for e in pairs_phase.source] == ["9+8+7=", "5+5+0="]
    easy = [task.train[i] for i in range(len(task.train)) if not _carries(task.train[i])]
    assert [decode_example(e) for e in prompts.source] == [decode_example(e) for e in easy]
    assert 0 < len(easy) < len(task.train)


def test_top_level_difficulty_filters_the_main_phase():
    c = _smoke()
    c.difficulty = ml_collections.ConfigDict(dict(min=2))
    _, rl = build_spec(c, progress=False).phases
    assert rl.source and all(_carries(e) for e in rl.source) and len(rl.source) < c.task.num_train


@pytest.mark.parametrize("difficulty,message", [
    (dict(min=3), r"^phases\[0\]\.difficulty=\{'min': 3\} selects none of the 500 train prompts \(their "
                  r"difficulties span 1\.\.2\); widen the bounds$"),
    (dict(low=1), r"^phases\[0\]\.difficulty\.low is not a difficulty bound; use min and/or max"),
    (dict(min="2"), r"^phases\[0\]\.difficulty\.min='2' must be a number"),
    (dict(min=2, max=1), r"^phases\[0\]\.difficulty: min=2 > max=1; give min <= max$"),
])
def test_bad_difficulty_fails_with_the_field(difficulty, message):
    c = _smoke()
    c.phases = [_section(name="a", steps=3, difficulty=difficulty)]
    with pytest.raises(ValueError, match=message) as e:
        build_spec(c, progress=False)
    assert "\n" not in str(e.value)


def test_a_task_without_difficulty_names_the_field():
    from experiments import chain_grpo

    c = chain_grpo.get_config("smoke")
    c.phases = [_section(name="a", steps=c.total_steps, difficulty=dict(min=5))]
    with pytest.raises(ValueError, match=r"^phases\[0\]\.difficulty is set but task 'chain' defines no difficulty "
                                         r"\(a difficulty\(example\) function in polrl\.tasks\.chain\)") as e:
        build_spec(c, progress=False)
    assert "\n" not in str(e.value)
    c = chain_grpo.get_config("smoke")
    c.difficulty = ml_collections.ConfigDict(dict(min=5))
    with pytest.raises(ValueError, match=r"^config\.difficulty is set but task 'chain'"):
        build_spec(c, progress=False)


def test_light_r1_phase_lengths_follow_total_steps():
    from experiments import arithmetic_light_r1

    c = arithmetic_light_r1.get_config()
    assert [(p.name, p.steps) for p in c.phases] == [("sft_stage2", 300), ("dpo", 600), ("grpo", 2100)]
    c.total_steps = 600
    assert [p.steps for p in c.phases] == [60, 120, 420]
    c.total_steps = 7  # 0 + 1 + 6: the remainder goes to GRPO
    assert [p.steps for p in c.phases] == [0, 1, 6]


def test_light_r1_builds_the_curriculum():
    from experiments import arithmetic_light_r1

    c = arithmetic_light_r1.get_config("smoke")
    c.total_steps = 600
    spec = build_spec(c, progress=False)
    assert [(p.name, p.steps) for p in spec.phases] == [("sft_warmup", 3), ("sft_stage2", 60), ("dpo", 120),
                                                        ("grpo", 420)]
    warm, sft2, dpo, grpo = spec.phases
    from polrl.train.build import build_task

    task = build_task(c)
    # SFT stage 2: the warm-up's demos that carry, demos.batch_size per step
    assert sft2.source == [d for d in warm.source if _carries(d)] and 0 < len(sft2.source) < len(warm.source)
    assert sft2.prompts_per_step == c.demos.batch_size and "ref_logp" not in sft2.algorithm.needs
    # DPO: hard train prompts; pairs of the reference's samples with the gold answer as a candidate
    hard = [task.train[i] for i in range(len(task.train)) if _carries(task.train[i])]
    assert [decode_example(e) for e in dpo.source] == [decode_example(e) for e in hard]
    assert dpo.prompts_per_step == c.rollout.batch_size // c.rollout.group_size
    assert "ref_logp" in dpo.algorithm.needs and "reference" in dpo.collector.needs
    example = dpo.collector.example(dpo.prompts_per_step)
    assert example.group_size == 2 and example.source_b is not None
    # GRPO: every train prompt, groups of rollout.group_size
    assert len(grpo.source) == c.task.num_train
    assert grpo.collector.example(grpo.prompts_per_step).group_size == c.rollout.group_size
