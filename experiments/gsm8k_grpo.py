"""GRPO on GSM8K from a pretrained Hugging Face checkpoint (e.g. Qwen2.5-0.5B-Instruct).

Task: GSM8K (Cobbe et al. 2021, arXiv 2110.14168) through TFDS. 7,473 train and 1,319 test
problems. The prompt is the model's chat template around "<question>\\n<instruction>", and the
reward is 1 when the last number in the completion's last \\boxed{…} (or on the line after
"####", or anywhere in the completion) equals the reference number (polrl.tasks.gsm8k).
Recipe (variants '' and 'gpu', one GPU): Qwen2.5-0.5B-Instruct with float32 master weights and
bfloat16 compute, rematerialized blocks, the LM head applied 256 positions at a time. Then GRPO:
300 steps of 32 prompts × 8 samples (up to 512 new tokens, temperature 1), lr 1e-6, k3 KL
β = 0.001 to the checkpoint, zero-variance groups masked out, 4 minibatches per batch. Greedy
evaluation on the whole test split every 25 steps. There is no SFT warm start.

1. Data (once, on a machine with network access; neither this nor reading needs TensorFlow):
  python -c "from polrl.tasks.gsm8k import prepare_tfds; prepare_tfds('DATA')"
  (TFDS gsm8k written as array_record; with TensorFlow installed, `tfds build gsm8k
  --data_dir=DATA --file_format=array_record` does the same). Pass --config.task.data_dir=DATA
  or set $POLRL_DATA_DIR=DATA. To read openai/grade-school-math's train.jsonl / test.jsonl
  instead, set --config.task.source=/path/to/grade_school_math/data.
2. Checkpoint (safetensors + tokenizer.json), e.g.
  huggingface-cli download Qwen/Qwen2.5-0.5B-Instruct --local-dir ~/models/Qwen2.5-0.5B-Instruct
  model.hf_path is required: without it, building the task fails with a message saying so.

Launch on a GPU box:
  python -m polrl.launch --config experiments/gsm8k_grpo.py:gpu \\
    --config.model.hf_path=$HOME/models/Qwen2.5-0.5B-Instruct --workdir runs/gsm8k_grpo
Launch on a TPU VM: the same command on every host, with --multihost so that
jax.distributed.initialize() detects the hosts (a v4-8 or v5e-8 VM is one host; larger slices
have more, and need the checkpoint and data on every worker or on shared storage):
  gcloud compute tpus tpu-vm ssh $TPU_NAME --zone=$ZONE --worker=all --command='cd polrl && \\
    python -m polrl.launch --multihost --config experiments/gsm8k_grpo.py:tpu_v5e_8 \\
    --config.model.hf_path=$HOME/models/Qwen2.5-0.5B-Instruct \\
    --config.task.data_dir=$HOME/tensorflow_datasets --workdir $HOME/runs/gsm8k_grpo'
  (single quotes: $HOME expands on each worker. :tpu_v4_8 on a v4-8, which JAX sees as 4
  devices; for larger slices keep the variant and set --config.mesh.fsdp=-1.) The meshes also
  divide Qwen2.5-1.5B-Instruct's heads (12 heads, 2 KV heads); that model was not tried either.
Smoke (about 20 s of CPU time, run by the test suite; the tiny qwen2 fixture and 24
GSM8K-format problems written for the tests, so no TFDS data is needed):
  python -m polrl.launch --config experiments/gsm8k_grpo.py:smoke --workdir /tmp/polrl/gsm8k_smoke

Expected result: NOT MEASURED. No accelerator was available when this recipe was written, so
neither the accuracy nor the speed and memory of the GPU / TPU variants has been observed; only
the smoke variant has run (CPU). A hint, not a measurement: public reports put
Qwen2.5-0.5B-Instruct at roughly 40-50% greedy accuracy on the GSM8K test split, depending on
the prompt. That is the range to expect from the step-0 evaluation. GRPO on the train split
should then raise eval/accuracy. Note that polrl prepends the tokenizer's BOS id to every prompt
(for Qwen that is config.json's bos_token_id, <|endoftext|>), which HF's own chat-template
tokenization does not do.
"""
import pathlib

import ml_collections

_FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "tests" / "fixtures"

# (logical axis, mesh axes) rules, first match wins (polrl.sharding). Update: weights split over
# fsdp on the model width and over tensor on heads / MLP / vocabulary. Rollout: tensor only, so
# that the decode loop does not all-gather weights at every token.
_TPU_UPDATE_RULES = (("batch", ("data", "fsdp")), ("vocab", "tensor"), ("embed", "fsdp"),
                     ("q_heads", "tensor"), ("kv_heads", "tensor"), ("mlp", "tensor"))
_TPU_ROLLOUT_RULES = (("batch", ("data", "fsdp")), ("vocab", "tensor"), ("q_heads", "tensor"),
                      ("kv_heads", "tensor"), ("mlp", "tensor"))
_TPU_MESHES = {
    "tpu_v4_8": dict(data=1, fsdp=4, tensor=1),  # 4 chips × 32 GiB
    "tpu_v5e_8": dict(data=1, fsdp=4, tensor=2),  # 8 chips × 16 GiB: tensor 2 halves the rollout copy
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.total_steps = 300
    c.eval_every = 25
    c.checkpoint_every = 25
    c.log_every = 1

    c.model = ml_collections.ConfigDict(dict(hf_path="", dtype="bfloat16", param_dtype="float32", max_len=1024, remat=True, logits_chunk_size=256))
    c.task = ml_collections.ConfigDict(dict(name="gsm8k", data_dir="", source="tfds", prompt_format="chat", instruction="Please reason step by step, and put your final answer within \\boxed{}."))
    # The chat template comes from the checkpoint itself: this field follows model.hf_path.
    c.task.chat_template_dir = c.model.get_ref("hf_path")
    c.demos = ml_collections.ConfigDict(dict(num=32, batch_size=32))  # only read by a warm start
    c.warmup = ml_collections.ConfigDict(dict(steps=0, learning_rate=1e-6))

    c.algorithm = "grpo"
    c.algorithm_kwargs = ml_collections.ConfigDict(dict(learning_rate=1e-6, kl_coef=0.001, filter_zero_variance=True, num_minibatches=4))
    c.collector = "group_samples"
    c.rollout = ml_collections.ConfigDict(dict(batch_size=256, group_size=8, max_new_tokens=512, temperature=1.0, top_k=0, top_p=1.0))
    c.eval = ml_collections.ConfigDict(dict(num_examples=1319, batch_size=256))
    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1, expert=1))  # data parallel over every device
    c.guards = ml_collections.ConfigDict(dict(max_nonfinite_steps=5))

    if arg in _TPU_MESHES:
        c.mesh = ml_collections.ConfigDict(dict(**_TPU_MESHES[arg], update_rules=_TPU_UPDATE_RULES, rollout_rules=_TPU_ROLLOUT_RULES))
    elif arg == "smoke":
        c.total_steps = 2
        c.eval_every = 2
        c.checkpoint_every = 2
        c.model.update(hf_path=str(_FIXTURES / "hf" / "qwen2"), dtype="float32", max_len=128, remat=False, logits_chunk_size=0)
        c.task.update(source=str(_FIXTURES / "gsm8k"), prompt_format="plain", instruction="End with: #### answer.")
        c.demos.update(num=4, batch_size=4)
        c.algorithm_kwargs.update(learning_rate=1e-3, num_minibatches=1)
        c.rollout.update(batch_size=8, group_size=4, max_new_tokens=16)
        c.eval.update(num_examples=8, batch_size=8)
        c.mesh.data = 1  # one device (the test suite runs on 8 fake devices)
    elif arg not in (None, "", "gpu"):
        raise ValueError(f"unknown config arg {arg!r}; use '', 'gpu', 'tpu_v4_8', 'tpu_v5e_8' or 'smoke'")
    return c
