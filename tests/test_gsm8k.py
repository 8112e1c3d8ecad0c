"""GSM8K: answer extraction and reward on hand strings, prompts (plain and chat template), the
task from JSONL and from TFDS (prepared without TensorFlow, and under tfds.testing.mock_data),
the model.hf_path build path, and the experiment's :smoke config end to end."""
import importlib
import json
import pathlib
import sys

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from flax import nnx
from jinja2.exceptions import TemplateError

from polrl.models.hf import load_hf
from polrl.models.hf_tokenizer import HFTokenizer
from polrl.tasks import get_task, task_batch
from polrl.tasks.gsm8k import (
    completion_answer,
    format_prompt,
    gsm8k_examples,
    gsm8k_reward,
    gsm8k_splits,
    prepare_tfds,
    prompt_formatter,
    read_chat_template,
    read_tfds_split,
    reference_answer,
)
from polrl.tasks.registry import gsm8k_host_reward
from polrl.train import metrics as metrics_lib
from polrl.train.build import build_spec
from polrl.train.trainer import Trainer

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"
JSONL = str(FIXTURES / "gsm8k")
QWEN2 = str(FIXTURES / "hf" / "qwen2")
INSTRUCTION = "End with: #### answer."
# A ChatML template in the style of Qwen's, starting with {{ bos_token }} as Llama 3's does.
CHATML = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}\n"
)


@pytest.fixture(scope="module")
def tokenizer():
    return HFTokenizer.from_dir(QWEN2)


def fixture_task(tokenizer, **kwargs):
    kwargs = dict(data_dir="/nonexistent", source=JSONL, prompt_format="plain", instruction=INSTRUCTION) | kwargs
    return get_task("gsm8k", tokenizer=tokenizer, **kwargs)


# --- answers and rewards ---------------------------------------------------------


def test_reference_answer_is_the_number_after_the_last_mark():
    assert reference_answer("3+4=<<3+4=7>>7 pens.\n#### 7") == "7"
    assert reference_answer("1200+800=2000 pens.\n#### 2,000") == "2000"
    assert reference_answer("4-10=-6 degrees.\n#### -6") == "-6"
    assert reference_answer("#### 1 is wrong\n#### 12") == "12"
    for bad in ("3+4=7", "The answer is\n#### seven"):
        with pytest.raises(ValueError, match="does not end in '#### <number>'"):
            reference_answer(bad)


def test_completion_answer_marked_spans_and_precedence():
    assert completion_answer("So she sold \\boxed{1,200} pens.") == "1200"
    assert completion_answer("\\boxed{3} first, then \\boxed{\\$18}.") == "18"  # the last box
    assert completion_answer("#### 5\nbut really \\boxed{7}") == "7"  # a box beats ####
    assert completion_answer("5+6=11\n#### 11 apples\nand 3 pears") == "11"  # the line after ####
    assert completion_answer("#### none\n42") is None  # the marked line has no number
    assert completion_answer("It is 10-5, so 42.") == "42"  # no mark: the last number
    assert completion_answer("no digits here") is None


def test_gsm8k_reward_hand_values():
    assert gsm8k_reward("2000.0 pens in total: \\boxed{2000.0}", "2000") == 1.0
    assert gsm8k_reward("It drops to -6 degrees.\n#### -6", "-6") == 1.0
    assert gsm8k_reward("#### 6", "-6") == 0.0
    assert gsm8k_reward("The answer is 41.", "42") == 0.0
    assert gsm8k_reward("I do not know.", "42") == 0.0


def test_host_reward_rows():
    examples = [{"answer": "7"}, {"answer": b"2000"}, {"answer": "9"}]
    completions = ["#### 7", "\\boxed{2,000}", "about 8"]
    np.testing.assert_array_equal(gsm8k_host_reward(completions, examples), np.float32([1, 1, 0]))
    with pytest.raises(ValueError, match="got 2 completions for 3 examples"):
        gsm8k_host_reward(completions[:2], examples)


# --- prompts -----------------------------------------------------------------------


def test_plain_prompt():
    assert format_prompt("What is 2+2?", instruction="Be brief.") == "Question: What is 2+2?\nBe brief.\nAnswer:"


def test_chat_prompt_renders_the_checkpoint_template(tmp_path):
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": CHATML}))
    prompt = prompt_formatter("chat", instruction="Be brief.", chat_template_dir=str(tmp_path))
    # transformers' apply_chat_template(add_generation_prompt=True) gives the same text after
    # "<bos>", which encode_prompts adds as an id instead.
    assert prompt("What is 2+2?") == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?\nBe brief.<|im_end|>\n<|im_start|>assistant\n"
    )


def test_read_chat_template_sources(tmp_path):
    assert read_chat_template(str(tmp_path)) is None
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps({"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}))
    assert read_chat_template(str(tmp_path)) == "D"
    (tmp_path / "chat_template.jinja").write_text("J")
    assert read_chat_template(str(tmp_path)) == "J"


def test_template_raise_exception_is_wired(tmp_path):
    (tmp_path / "chat_template.jinja").write_text("{{ raise_exception('users are not allowed') }}")
    prompt = prompt_formatter("chat", chat_template_dir=str(tmp_path))
    with pytest.raises(TemplateError, match="users are not allowed"):
        prompt("Q")


def test_prompt_format_errors(tmp_path):
    with pytest.raises(ValueError, match="prompt_format='markdown'"):
        prompt_formatter("markdown")
    with pytest.raises(ValueError, match="needs task.chat_template_dir"):
        prompt_formatter("chat")
    with pytest.raises(ValueError, match="has no chat template"):
        prompt_formatter("chat", chat_template_dir=str(tmp_path))


# --- the task --------------------------------------------------------------------


def test_task_from_jsonl(tokenizer):
    task = fixture_task(tokenizer)
    assert (task.name, len(task.train), len(task.test)) == ("gsm8k", 16, 8)
    assert task.device_reward is None
    example = task.test[6]
    assert example["answer"] == "2000"
    assert example["prompt"] == f"Question: {example['question']}\n{INSTRUCTION}\nAnswer:"
    assert example["solution"].endswith("#### 2,000")
    # "2000" → ▁ 2 0 0 0, plus EOS: the longest reference number of the fixture.
    assert task.max_answer_len == 6
    everything = list(task.train) + list(task.test)
    assert task.max_prompt_len == max(len(tokenizer.encode(e["prompt"], bos=True)) for e in everything)
    batch = task_batch(task, everything)
    assert batch["prompt_bp"].shape == (24, task.max_prompt_len)
    assert batch["prompt_valid_bp"].sum(axis=1).max() == task.max_prompt_len  # the longest fills its row
    solutions = [e["solution"] for e in everything]
    np.testing.assert_array_equal(task.host_reward(solutions, batch["examples"]), np.ones(24))


def test_task_needs_the_model_tokenizer():
    with pytest.raises(ValueError, match="set model.hf_path"):
        get_task("gsm8k", data_dir="/nonexistent", source=JSONL)


def test_record_without_answer_mark_names_the_record(tmp_path):
    rows = [{"question": "q1", "answer": "#### 1"}, {"question": "q2", "answer": "no mark"}]
    with pytest.raises(ValueError, match=r"gsm8k x:train record 1: .*'#### <number>'"):
        gsm8k_examples(rows, str, where="x:train")


# --- TFDS ------------------------------------------------------------------------


def test_tfds_source_equals_the_jsonl_source(tmp_path, monkeypatch):
    """prepare_tfds with the download answered by the fixture files, then read back."""

    def local_files(self, urls):
        return {split: f"{JSONL}/{'train' if split.startswith('train') else 'test'}.jsonl" for split in urls}

    monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract", local_files)
    data_dir = str(tmp_path / "tfds")
    prepare_tfds(data_dir)
    prompt = prompt_formatter("plain", instruction=INSTRUCTION)
    assert isinstance(read_tfds_split("test", data_dir=data_dir)[0]["question"], bytes)
    from_tfds = gsm8k_splits("tfds", prompt, data_dir=data_dir)
    from_jsonl = gsm8k_splits(JSONL, prompt, data_dir=data_dir)
    for split in ("train", "test"):  # TFDS stores the records in its own order
        key = lambda e: e["question"]
        assert sorted(from_tfds[split], key=key) == sorted(from_jsonl[split], key=key)
    assert "tensorflow" not in sys.modules


def test_tfds_source_not_prepared(tmp_path):
    with pytest.raises(ValueError, match=r"prepare_tfds\('.*'\)"):
        read_tfds_split("train", data_dir=str(tmp_path))


def test_tfds_mock_data_gives_text_records(tmp_path):
    with tfds.testing.mock_data(num_examples=3, policy=tfds.testing.MockPolicy.USE_CODE):
        source = read_tfds_split("train", data_dir=str(tmp_path))
        records = [source[i] for i in range(len(source))]
    assert len(records) == 3
    # Text features: the mock gives str, prepared array_record data bytes; the task takes both.
    assert all(isinstance(r[k], str) and r[k] for r in records for k in ("question", "answer"))
    # The mock's text is random letters: no "#### <number>", which the task reports.
    with pytest.raises(ValueError, match="tfds:train record 0"):
        gsm8k_examples(records, str, where="tfds:train")
    assert not any(tmp_path.iterdir())


# --- model.hf_path and the experiment -----------------------------------------------


def smoke_config():
    return importlib.import_module("experiments.gsm8k_grpo").get_config("smoke")


def test_hf_path_loads_the_checkpoint_and_its_tokenizer():
    config = smoke_config()
    config.model.d_model = 32  # a shape field equal to the checkpoint's is accepted
    config.model.logits_chunk_size = 8  # a run option config.json does not fix
    spec = build_spec(config, progress=False)
    assert isinstance(spec.task.tokenizer, HFTokenizer)
    assert spec.sampling.eos_id == spec.task.tokenizer.eos_id == 2
    reference, _ = load_hf(QWEN2, max_len=128)
    model = nnx.merge(spec.graphdef, spec.init_params)
    assert model.config.logits_chunk_size == 8 and model.config.max_len == 128
    for got, want in zip(jax.tree.leaves(spec.init_params), jax.tree.leaves(nnx.state(reference, nnx.Param))):
        np.testing.assert_array_equal(got, want)


def test_hf_path_shape_conflict():
    config = smoke_config()
    config.model.num_layers = 4
    with pytest.raises(ValueError, match=r"model.num_layers=4 \(checkpoint: 2\).*come from config.json"):
        build_spec(config, progress=False)


def test_hf_path_errors():
    config = smoke_config()
    config.task = dict(name="arithmetic", data_dir="", num_train=50, num_test=10)
    with pytest.raises(ValueError, match="task 'arithmetic' has its own tokenizer"):
        build_spec(config, progress=False)
    config = smoke_config()
    config.model.hf_path = "/nonexistent/qwen"
    with pytest.raises(ValueError, match="model.hf_path='/nonexistent/qwen' is not a directory"):
        build_spec(config, progress=False)
    default = importlib.import_module("experiments.gsm8k_grpo").get_config()
    with pytest.raises(ValueError, match="set model.hf_path"):
        build_spec(default, progress=False)


def test_chat_template_dir_follows_hf_path():
    config = importlib.import_module("experiments.gsm8k_grpo").get_config("tpu_v5e_8")
    config.model.hf_path = "/models/qwen"
    assert dict(config.task)["chat_template_dir"] == "/models/qwen"
    assert (config.mesh.data, config.mesh.fsdp, config.mesh.tensor) == (1, 4, 2)


@pytest.mark.slow
def test_smoke_config_trains_and_evaluates(tmp_path):
    config = smoke_config()
    summary = Trainer(build_spec(config, progress=False), str(tmp_path)).run()
    records = metrics_lib.read_metrics(str(tmp_path))
    evals = [r for r in records if "eval/accuracy" in r]
    assert [r["step"] for r in evals] == [0, config.total_steps]  # before training and at the end
    assert summary["rl"]["eval/accuracy"] == evals[-1]["eval/accuracy"]
    steps = [r for r in records if "reward_mean" in r]
    assert len(steps) == config.total_steps
    assert all(0.0 <= r["reward_mean"] <= 1.0 and np.isfinite(r["loss"]) for r in steps)
