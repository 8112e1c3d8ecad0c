"""The offline preference collectors (``offline_pairs``, ``offline_unpaired``): rows equal a
brute-force construction on a tiny file and the layout of ``best_and_worst``, the pair and KTO
losses on collected rows equal hand-computed values, and the config wiring (``config.data =
"pairs"``) fails with one-line errors."""
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl import algorithms, collectors, sharding
from polrl.collectors.context import Context
from polrl.rollout import SamplingConfig
from polrl.tasks import CharTokenizer, Task, preference_data, task_batch, token_exact_match
from polrl.train.build import build_spec

TOK = CharTokenizer()
P, T = 6, 4  # prompt width (BOS included), response width
TASK = Task(name="tiny", tokenizer=TOK, max_prompt_len=P, max_answer_len=3, train=[], test=[], host_reward=None,
            device_reward=token_exact_match)
CTX = Context(graphdef=None, task=TASK, sampling=SamplingConfig(max_new_tokens=T, eos_id=TOK.eos_id, pad_id=TOK.pad_id),
              group_size=2, layout=sharding.layout_from_config(None))
LIMITS = preference_data.Limits(TOK, P, TASK.max_answer_len)
PAIRS = [{"prompt": "1+2=", "chosen": "3", "rejected": "12"},
         {"prompt": "9+9=", "chosen": "18", "rejected": "81"},
         {"prompt": "0+0=", "chosen": "0", "rejected": "00"}]
LABELS = [{"prompt": "1+2=", "completion": "3", "label": True},
          {"prompt": "2+2=", "completion": "5", "label": False},
          {"prompt": "7+0=", "completion": "7", "label": True}]


def _examples(tmp_path, rows):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return preference_data.as_examples(preference_data.load_jsonl(str(path), LIMITS))


def _collect(collector, examples):
    data = task_batch(TASK, examples)
    return collector.collect((), None, {**CTX.layout.from_global({k: v for k, v in data.items() if k != "examples"}),
                                        "examples": data["examples"]}, jax.random.key(0))


def _prompt_row(text):
    ids = TOK.encode(text, bos=True)
    return [TOK.pad_id] * (P - len(ids)) + ids, [False] * (P - len(ids)) + [True] * len(ids)


def _response_row(text):
    ids = TOK.encode(text, eos=True)
    return ids + [TOK.pad_id] * (T - len(ids)), [1.0] * len(ids) + [0.0] * (T - len(ids))


def test_offline_pairs_rows_equal_a_brute_force_construction(tmp_path):
    batch, cstate, metrics = _collect(collectors.offline_pairs(CTX), _examples(tmp_path, PAIRS))
    rows = [(p["prompt"], text) for p in PAIRS for text in (p["chosen"], p["rejected"])]
    np.testing.assert_array_equal(batch.prompt_bp, [_prompt_row(p)[0] for p, _ in rows])
    np.testing.assert_array_equal(batch.prompt_valid_bp, [_prompt_row(p)[1] for p, _ in rows])
    np.testing.assert_array_equal(batch.response_bt, [_response_row(r)[0] for _, r in rows])
    np.testing.assert_array_equal(batch.mask_bt, [_response_row(r)[1] for _, r in rows])
    np.testing.assert_array_equal(batch.reward_b, [1.0, 0.0] * 3)
    np.testing.assert_array_equal(batch.group_b, [0, 0, 1, 1, 2, 2])
    assert batch.group_size == 2 and batch.aux == {} and cstate == ()
    assert float(metrics["response_tokens"]) == sum(len(r) + 1 for _, r in rows)


def test_offline_pairs_have_the_layout_of_best_and_worst(tmp_path):
    """Groups of three sampled rows (rejected, a middle one, chosen) reduced by best_and_worst
    give the offline collector's rows, field for field."""
    offline, _, _ = _collect(collectors.offline_pairs(CTX), _examples(tmp_path, PAIRS))
    texts = [(p["prompt"], text) for p in PAIRS for text in (p["rejected"], "7", p["chosen"])]
    sampled = offline.replace(
        prompt_bp=jnp.asarray([_prompt_row(p)[0] for p, _ in texts]),
        prompt_valid_bp=jnp.asarray([_prompt_row(p)[1] for p, _ in texts]),
        response_bt=jnp.asarray([_response_row(r)[0] for _, r in texts]),
        mask_bt=jnp.asarray([_response_row(r)[1] for _, r in texts]),
        reward_b=jnp.asarray([0.0, 0.5, 1.0] * 3), group_b=jnp.arange(9, dtype=jnp.int32) // 3, group_size=3)
    paired = collectors.best_and_worst(sampled)
    assert jax.tree.structure(paired) == jax.tree.structure(offline)
    for a, b in zip(jax.tree.leaves(paired), jax.tree.leaves(offline)):
        np.testing.assert_array_equal(a, b)


def test_offline_unpaired_rows_carry_the_label(tmp_path):
    batch, _, _ = _collect(collectors.offline_unpaired(CTX), _examples(tmp_path, LABELS))
    np.testing.assert_array_equal(batch.response_bt, [_response_row(r["completion"])[0] for r in LABELS])
    np.testing.assert_array_equal(batch.prompt_bp, [_prompt_row(r["prompt"])[0] for r in LABELS])
    np.testing.assert_array_equal(batch.aux["label_b"], [True, False, True])
    np.testing.assert_array_equal(batch.reward_b, [1.0, 0.0, 1.0])
    np.testing.assert_array_equal(batch.group_b, [0, 1, 2])
    assert batch.group_size == 1


@pytest.mark.parametrize("factory,rows", [(collectors.offline_pairs, PAIRS), (collectors.offline_unpaired, LABELS)])
def test_collected_batch_matches_example(tmp_path, factory, rows):
    collector = factory(CTX)
    batch, _, _ = _collect(collector, _examples(tmp_path, rows))
    example = collector.example(len(rows))
    assert collector.host and jax.tree.structure(batch) == jax.tree.structure(example)
    assert [(x.shape, x.dtype) for x in jax.tree.leaves(batch)] == [(x.shape, x.dtype) for x in jax.tree.leaves(example)]


def _scored(batch):
    """Per-token log-probs for the loss, in float64: the policy's −0.1·(id + t), the reference's −0.05·id."""
    t = np.arange(T)
    ids = np.asarray(batch.response_bt, np.float64)
    return batch.replace(mask_bt=jnp.asarray(batch.mask_bt, jnp.float64), reward_b=jnp.asarray(batch.reward_b, jnp.float64),
                         logp_bt=jnp.asarray(-0.1 * (ids + t)), ref_logp_bt=jnp.asarray(-0.05 * ids))


def _sums(text):
    ids = TOK.encode(text, eos=True)
    return sum(-0.1 * (i + t) for t, i in enumerate(ids)), sum(-0.05 * i for i in ids)


def test_dpo_loss_on_offline_pairs_equals_the_hand_value(tmp_path):
    beta = 0.3
    with jax.enable_x64(True):
        batch = _scored(_collect(collectors.offline_pairs(CTX), _examples(tmp_path, PAIRS))[0])
        objective = algorithms.dpo(beta=beta).objective
        out, _ = objective.apply(batch, objective.init())
        hand = []
        for p in PAIRS:
            (s_w, r_w), (s_l, r_l) = _sums(p["chosen"]), _sums(p["rejected"])
            hand.append(math.log1p(math.exp(-beta * ((s_w - r_w) - (s_l - r_l)))))
        np.testing.assert_allclose(float(out.losses["dpo"]), np.mean(hand), rtol=1e-12)


def test_kto_loss_on_offline_unpaired_rows_equals_the_hand_value(tmp_path):
    beta = 0.5
    with jax.enable_x64(True):
        batch = _scored(_collect(collectors.offline_unpaired(CTX), _examples(tmp_path, LABELS))[0])
        objective = algorithms.kto(beta=beta, threshold=2.0).objective  # the label decides, not reward_b ≥ 2
        out, _ = objective.apply(batch, objective.init())
        r = [s - ref for s, ref in (_sums(row["completion"]) for row in LABELS)]
        z = max(0.0, np.mean(r))
        sig = lambda x: 1 / (1 + math.exp(-x))
        hand = [1 - sig(beta * (ri - z)) if row["label"] else 1 - sig(beta * (z - ri)) for ri, row in zip(r, LABELS)]
        np.testing.assert_allclose(float(out.losses["kto"]), np.mean(hand), rtol=1e-12)


# ----------------------------------------------------------------------------- config wiring


@pytest.fixture
def smoke(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("POLRL_DATA_DIR", str(tmp_path_factory.getbasetemp() / "data"))
    from experiments import arithmetic_dpo_offline

    return arithmetic_dpo_offline.get_config("smoke")


def test_offline_phase_reads_the_file(smoke):
    spec = build_spec(smoke, progress=False)
    phase = spec.phases[-1]
    assert phase.name == "dpo_offline" and phase.prompts_per_step == smoke.pairs.batch_size
    assert len(phase.source) == 2000 and phase.source[0]["answer"] == phase.source[0]["chosen"]
    assert phase.collector.host


def test_unpaired_file_trains_kto(smoke, tmp_path):
    path = tmp_path / "labels.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in LABELS))
    smoke.pairs.path, smoke.collector, smoke.algorithm = str(path), "offline_unpaired", "kto"
    phase = build_spec(smoke, progress=False).phases[-1]
    assert phase.collector.example(2).aux["label_b"].shape == (2,)


@pytest.mark.parametrize("change,message", [
    (dict(data="train"), r"collector='offline_pairs' with data='train': the offline collectors .* read exactly "
                         r"config.data='pairs'"),
    (dict(collector="group_samples"), r"collector='group_samples' with data='pairs'"),
    (dict(collector="offline_unpaired"), r"config.pairs holds paired rows, which collector='offline_pairs' reads; "
                                         r"config.collector is 'offline_unpaired'"),
    (dict(pairs=dict(batch_size=8)), r"set exactly one of pairs.path \(a JSONL file\) and pairs.tfds_name"),
    (dict(pairs=dict(path="x.jsonl", tfds_name="y", batch_size=8)), r"set exactly one of pairs.path"),
    (dict(pairs=dict(path="x.jsonl", batch_size=0)), r"pairs.batch_size=0 must be a positive int"),
    (dict(pairs=dict(path="/nonexistent/pairs.jsonl", batch_size=8)), r"/nonexistent/pairs.jsonl: cannot read"),
])
def test_config_errors(smoke, change, message):
    smoke.update(change) if "pairs" not in change else setattr(smoke, "pairs", change["pairs"])
    with pytest.raises(ValueError, match=message) as e:
        build_spec(smoke, progress=False)
    assert "\n" not in str(e.value)
