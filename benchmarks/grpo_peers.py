"""The GRPO iteration of ``benchmarks/grpo_step.py`` run with a peer framework (TRL or Tunix).

    median_step_seconds(peer, prompts, steps) -> float

Each peer runs the same work as polrl's iteration: the given prompts (8) × 8 samples, 8 new
tokens at temperature 1 (EOS never sampled, so every row is 8 tokens), an exact-match reward
against the arithmetic answer, reference log-probs with the k3 KL penalty (β = 0.04), one AdamW
update (lr 1e-5, grad-norm clip 1.0); same model shape (from ``grpo_step.model_config``),
random weights, float32, polrl's 64-id character vocabulary (BOS first, left padding). The time
is the median over ``steps`` iterations after two warm-up iterations.

Each peer lives in its own virtual environment next to polrl (see benchmarks/README.md, "Peers"),
so ``grpo_step.py --vs trl`` is run with that environment's python. Nothing here is imported by
polrl itself; a peer that is not installed raises RuntimeError with the command to install it.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time

from benchmarks.grpo_step import GROUP, NEW, PROMPTS, VOCAB, model_config
from polrl.tasks.rewards import exact_match, parse_expression
from polrl.tasks.tokenizer import BOS_ID, EOS_ID, PAD_ID, CharTokenizer

WARMUP = 2
LEARNING_RATE = 1e-5
BETA = 0.04

_INSTALL = {
    "trl": ("python3 -m venv /work/venv-trl && /work/venv-trl/bin/pip install torch==2.13.0 && "
            "/work/venv-trl/bin/pip install trl==1.16.0 transformers datasets accelerate && "
            "/work/venv-trl/bin/pip install -e .\n"
            "    then: /work/venv-trl/bin/python benchmarks/grpo_step.py --vs trl"),
    "tunix": ("python3 -m venv /work/venv-tunix && /work/venv-tunix/bin/pip install google-tunix==0.1.7 && "
              "/work/venv-tunix/bin/pip install -e .\n"
              "    then: /work/venv-tunix/bin/python benchmarks/grpo_step.py --vs tunix"),
}


def median_step_seconds(peer: str, prompts: list[str], steps: int) -> float:
    """Median seconds of one GRPO iteration of `peer` ("trl" or "tunix") on `prompts`."""
    if steps < 1:
        raise ValueError(f"median_step_seconds: steps must be >= 1, got {steps}.")
    if len(prompts) != PROMPTS:
        raise ValueError(f"median_step_seconds: expected {PROMPTS} prompts, got {len(prompts)}.")
    runners = {"trl": _trl, "tunix": _tunix}
    if peer not in runners:
        raise ValueError(f"median_step_seconds: unknown peer {peer!r}; choose one of {sorted(runners)}.")
    return runners[peer](list(prompts), steps)


def _answer(prompt: str) -> str:
    """The exact answer of an arithmetic prompt such as "37+48=" (polrl's own parser)."""
    value, _ = parse_expression(prompt.rstrip("="))
    return str(value)


def _prompt_len(prompts: list[str]) -> int:
    """Padded prompt width: BOS + the longest prompt.

    grpo_step pads to the task's maximum (BOS + "dd+dd=" = 7), which this equals whenever one of
    the 8 prompts has two 2-digit operands (as in grpo_step's fixed prompts).
    """
    return 1 + max(len(p) for p in prompts)


def _missing(peer: str, error: Exception) -> RuntimeError:
    return RuntimeError(
        f"grpo_peers: {peer} is not importable here ({type(error).__name__}: {error}). "
        f"Install it in its own virtual environment beside polrl, from the repository root:\n"
        f"    {_INSTALL[peer]}")


# ----------------------------------------------------------------------------------------------
# TRL (torch, CPU)
# ----------------------------------------------------------------------------------------------

def _trl_tokenizer():
    """A PreTrainedTokenizerFast with exactly polrl's CharTokenizer ids (pad 0, bos 1, eos 2)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    chars = CharTokenizer().chars
    vocab = {"<pad>": PAD_ID, "<bos>": BOS_ID, "<eos>": EOS_ID}
    vocab.update({c: i + 3 for i, c in enumerate(chars)})
    assert len(vocab) == VOCAB
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", BOS_ID)])
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<pad>", unk_token="<pad>", padding_side="left")


def _trl(prompts: list[str], steps: int) -> float:
    try:
        import datasets
        import torch
        import transformers
        import trl
    except ImportError as e:
        raise _missing("trl", e) from e

    transformers.utils.logging.disable_progress_bar()
    cfg = model_config(_prompt_len(prompts))
    tokenizer = _trl_tokenizer()
    for p in prompts:  # the char tokenizer must reproduce polrl's encoding exactly
        want = CharTokenizer().encode(p, bos=True)
        got = tokenizer(p)["input_ids"]
        if got != want:
            raise RuntimeError(f"grpo_peers: TRL tokenizer encodes {p!r} as {got}, polrl as {want}.")

    torch.manual_seed(0)
    llama = transformers.LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.mlp_dim,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads, head_dim=cfg.head_dim, hidden_act="silu",
        max_position_embeddings=cfg.max_len, rms_norm_eps=cfg.norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        tie_word_embeddings=cfg.tie_embeddings, attention_bias=cfg.qkv_bias, mlp_bias=False,
        pad_token_id=PAD_ID, bos_token_id=BOS_ID, eos_token_id=EOS_ID, dtype="float32")
    model = transformers.LlamaForCausalLM(llama)

    answers = {p: _answer(p) for p in prompts}

    def exact_match_reward(prompts, completions, answer, **kwargs):
        # Same verifier as polrl's arithmetic host reward; completions have no EOS (never sampled).
        return [exact_match(c, a) for c, a in zip(completions, answer)]

    dataset = datasets.Dataset.from_dict({"prompt": prompts, "answer": [answers[p] for p in prompts]})

    class StepTimer(transformers.TrainerCallback):
        """Wall time of each optimizer step: generation → reward → ref log-probs → loss → AdamW."""

        def __init__(self):
            self.times, self._t0 = [], None

        def on_step_begin(self, args, state, control, **kwargs):
            self._t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter() - self._t0)

    timer = StepTimer()
    with tempfile.TemporaryDirectory() as tmp:
        # GRPOTrainer builds its reference model from the policy's path, so the random
        # policy is saved first; policy and reference then start from the same weights.
        model_dir = os.path.join(tmp, "model")
        model.save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
        args = trl.GRPOConfig(
            output_dir=os.path.join(tmp, "out"),
            model_init_kwargs={"dtype": torch.float32},
            per_device_train_batch_size=PROMPTS * GROUP,  # one step = 8 prompts × 8 samples
            gradient_accumulation_steps=1,
            steps_per_generation=1,
            num_generations=GROUP,
            num_iterations=1,  # one update per batch: π_old = π_θ, no extra forward
            max_completion_length=NEW,
            generation_kwargs={"min_new_tokens": NEW},  # EOS masked: every row is exactly 8 tokens
            temperature=1.0, top_p=1.0, top_k=0,
            beta=BETA, epsilon=0.2,
            loss_type="grpo", scale_rewards="group",  # polrl's seq_mean_token_mean, std-scaled advantages
            learning_rate=LEARNING_RATE, lr_scheduler_type="constant", warmup_steps=0,
            weight_decay=0.0, adam_beta1=0.9, adam_beta2=0.999, max_grad_norm=1.0,
            max_steps=WARMUP + steps, seed=0,
            use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False,
            logging_strategy="no", save_strategy="no", eval_strategy="no", report_to="none",
            log_completions=False, disable_tqdm=True, dataloader_num_workers=0,
        )
        trainer = trl.GRPOTrainer(model=model_dir, reward_funcs=exact_match_reward, args=args,
                                  train_dataset=dataset, processing_class=tokenizer, callbacks=[timer])
        trainer.remove_callback(transformers.PrinterCallback)  # keep grpo_step's stdout to its JSON
        trainer.train()
    if len(timer.times) != WARMUP + steps:
        raise RuntimeError(f"grpo_peers: TRL ran {len(timer.times)} steps, expected {WARMUP + steps}.")
    return statistics.median(timer.times[WARMUP:])


# ----------------------------------------------------------------------------------------------
# Tunix (JAX)
# ----------------------------------------------------------------------------------------------

class _TunixCharTokenizer:
    """polrl's CharTokenizer in the shape Tunix's TokenizerAdapter accepts (methods, not properties).

    The sampler prepends BOS itself. ``eos_id`` is VOCAB, an id the model cannot emit: that is
    polrl's "EOS disabled" setting (grpo_step samples with eos_id=VOCAB), so Tunix neither stops
    a row early nor masks its loss after a sampled id 2.
    """

    def __init__(self):
        self._tok = CharTokenizer()

    def encode(self, text: str, **kwargs) -> list[int]:
        return self._tok.encode(text)

    def decode(self, ids, **kwargs) -> str:
        return self._tok.decode([i for i in ids if i < VOCAB])

    def bos_id(self) -> int:
        return BOS_ID

    def eos_id(self) -> int:
        return VOCAB

    def pad_id(self) -> int:
        return PAD_ID


def _tunix(prompts: list[str], steps: int) -> float:
    try:
        from tunix.models.llama3 import model as llama3
        from tunix.rl import rl_cluster as rl_cluster_lib
        from tunix.rl.grpo import grpo_learner
        from tunix.rl.rollout import base_rollout
        from tunix.utils import mesh as mesh_lib
    except ImportError as e:
        raise _missing("tunix", e) from e
    import jax
    import numpy as np
    from flax import nnx

    from polrl import optim

    prompt_len = _prompt_len(prompts)
    cfg = model_config(prompt_len)
    llama_cfg = llama3.ModelConfig(
        num_layers=cfg.num_layers, vocab_size=cfg.vocab_size, embed_dim=cfg.d_model,
        hidden_dim=cfg.mlp_dim, num_heads=cfg.num_heads, head_dim=cfg.head_dim,
        num_kv_heads=cfg.num_kv_heads, rope_theta=int(cfg.rope_theta), norm_eps=cfg.norm_eps,
        weight_tying=cfg.tie_embeddings)
    mesh = mesh_lib.create_mesh((1, 1), ("fsdp", "tp"), devices=jax.devices()[:1])
    with mesh:
        actor = llama3.Llama3(llama_cfg, rngs=nnx.Rngs(0))  # float32 params
        reference = nnx.clone(actor)  # same weights, like polrl's ref_params=params

    answers = {p: _answer(p) for p in prompts}

    def exact_match_reward(prompts, completions, answer, **kwargs):
        # Same verifier as polrl's arithmetic host reward; rows are 8 tokens, EOS never sampled.
        return [exact_match(c, str(a)) for c, a in zip(completions, answer)]

    rollout = base_rollout.RolloutConfig(
        max_tokens_to_generate=NEW, max_prompt_length=prompt_len, kv_cache_size=prompt_len + NEW,
        temperature=1.0, top_p=1.0, top_k=None, eos_tokens=[VOCAB])
    training = rl_cluster_lib.RLTrainingConfig(
        actor_optimizer=optim.adamw(LEARNING_RATE),  # polrl's own: clip 1.0 → AdamW, wd 0
        eval_every_n_steps=10**9, max_steps=WARMUP + steps,
        metrics_logging_options=None, checkpoint_root_directory=None, pbar_description=None)
    roles = (rl_cluster_lib.Role.ACTOR, rl_cluster_lib.Role.REFERENCE, rl_cluster_lib.Role.ROLLOUT)
    cluster = rl_cluster_lib.RLCluster(
        actor=actor, reference=reference, tokenizer=_TunixCharTokenizer(),
        cluster_config=rl_cluster_lib.ClusterConfig(
            role_to_mesh={r: mesh for r in roles}, rollout_engine="vanilla", offload_to_cpu=False,
            training_config=training, rollout_config=rollout))
    learner = grpo_learner.GRPOLearner(
        rl_cluster=cluster,
        algo_config=grpo_learner.GRPOConfig(
            num_generations=GROUP, num_iterations=1, beta=BETA, kl_loss_mode="low_var_kl",  # k3
            epsilon=0.2, loss_agg_mode="sequence-mean-token-mean"),
        reward_fns=exact_match_reward)

    # One global step = rollout → reward → reference log-probs → loss/grad → AdamW, i.e. one
    # polrl iteration. It is timed around the learner's own step, blocking on the updated
    # weights (JAX dispatch is asynchronous).
    times = []
    run_global_step = learner._run_global_step  # noqa: SLF001 (bound method, called unchanged)

    def timed_global_step(*args, **kwargs):
        rollout.seed = len(times)  # fresh samples each iteration (the sampler default is key 0)
        t0 = time.perf_counter()
        out = run_global_step(*args, **kwargs)
        jax.block_until_ready(nnx.state(cluster.actor_trainer.model, nnx.Param))
        times.append(time.perf_counter() - t0)
        return out

    learner._run_global_step = timed_global_step  # noqa: SLF001
    # Arrays, as a grain batch would give (Tunix repeats each leaf G times with np.repeat).
    batch = {"prompts": np.array(prompts), "answer": np.array([answers[p] for p in prompts])}
    with mesh:
        learner.train([dict(batch) for _ in range(WARMUP + steps)])
    if learner.should_sync_weights:
        raise RuntimeError("grpo_peers: Tunix did not share the actor and rollout weights; the "
                           "timed step would leave out the weight sync.")
    if len(times) != WARMUP + steps:
        raise RuntimeError(f"grpo_peers: Tunix ran {len(times)} steps, expected {WARMUP + steps}.")
    return statistics.median(times[WARMUP:])
