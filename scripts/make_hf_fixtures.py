"""Writes the tiny Hugging Face checkpoints under ``tests/fixtures/hf/<family>/``.

Each fixture is a random transformers model (2 layers, gemma3 3; width 32, GQA 4:2, vocab 192)
saved with ``save_pretrained`` (safetensors + config.json), a tiny BPE ``tokenizer.json``
trained here with the ``tokenizers`` library, and reference outputs for :mod:`tests.test_hf_import`:
``reference_tokens.npy`` [2, 10] int32 and ``reference_logits.npy`` [2, 10, 192] float32,
computed by transformers in float32 (eager attention).

What each fixture exercises:
  * llama: untied LM head, Llama-3 RoPE scaling (``rope_type: llama3``, original context 16,
    so every frequency band — kept, blended, divided — occurs at head_dim 8), no pad token
    (the tokenizer wrapper pads with EOS);
  * qwen2: q/k/v biases, tied head, rope_theta 1e6, weights sharded over several files
    (``model.safetensors.index.json``);
  * gemma: GeGLU, RMSNorm (1 + w), √d-scaled embeddings, head_dim 16 ≠ d_model / heads;
  * gemma2: gemma plus post-norms, soft-capped scores (cap 2) and logits (cap 5), score scale
    1/√24, and a sliding window of 4 slots on layer 0 (the reference has 10 tokens);
  * qwen3: q/k norms, head_dim 16 ≠ d_model / heads, tied head, rope_theta 1e6;
  * gemma3 (``gemma3_text``): 3 layers with sliding_window_pattern 2 (layers 0 and 2 slide over
    4 slots, layer 1 is global), q/k norms (1 + w), score scale 1/√24, no soft-capping, global
    RoPE θ 1e6 with linear scaling ×2 and local θ 1e4;
  * qwen3_moe: 4 experts of width 24, top-2 renormalised, layer 0 sparse and layer 1 dense
    (``mlp_only_layers: [1]``, width 48), head_dim from hidden_size / heads, untied head.
Every parameter (biases and norm weights included) is redrawn at random, so a transposed or
misnamed tensor cannot go unnoticed.

Needs torch and transformers (the test suite does not): ``python scripts/make_hf_fixtures.py
[family …]`` writes the named fixtures (default: all); each family keeps its seed whichever are
written.
"""
import json
import os
import shutil
import sys

import numpy as np
import tokenizers
import torch
import transformers
from tokenizers import decoders, models, pre_tokenizers, trainers

ROOT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "hf")
VOCAB = 192
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Policy optimization turns rewards into better answers.",
    "What is 12 + 30? The answer is 42.",
    "A tiny model for tests, with a tiny tokenizer.",
    "Gemma, Llama and Qwen share a decoder with rotary positions.",
]
SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]
COMMON = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
              rms_norm_eps=1e-6, bos_token_id=1, eos_token_id=2)


def family_configs():
    return {
        "llama": transformers.LlamaConfig(
            **COMMON, head_dim=8, tie_word_embeddings=False,
            rope_parameters={"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0,
                             "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 16}),
        "qwen2": transformers.Qwen2Config(
            **COMMON, tie_word_embeddings=True, pad_token_id=0,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6}),
        "gemma": transformers.GemmaConfig(
            **COMMON, head_dim=16, pad_token_id=0, hidden_act="gelu_pytorch_tanh",
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
        "gemma2": transformers.Gemma2Config(
            **COMMON, head_dim=16, pad_token_id=0, hidden_act="gelu_pytorch_tanh",
            query_pre_attn_scalar=24, sliding_window=4, attn_logit_softcapping=2.0,
            final_logit_softcapping=5.0,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
        "qwen3": transformers.Qwen3Config(
            **COMMON, head_dim=16, tie_word_embeddings=True, pad_token_id=0,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6}),
        "gemma3": transformers.Gemma3TextConfig(
            **{**COMMON, "num_hidden_layers": 3}, head_dim=16, pad_token_id=0,
            hidden_activation="gelu_pytorch_tanh", query_pre_attn_scalar=24, sliding_window=4,
            sliding_window_pattern=2, final_logit_softcapping=None, attn_logit_softcapping=None,
            rope_parameters={"full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e6},
                             "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}}),
        "qwen3_moe": transformers.Qwen3MoeConfig(
            **COMMON, tie_word_embeddings=False, pad_token_id=0, num_experts=4,
            num_experts_per_tok=2, moe_intermediate_size=24, norm_topk_prob=True,
            decoder_sparse_step=1, mlp_only_layers=[1],
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
    }


def build_tokenizer() -> tokenizers.Tokenizer:
    """A BPE over Metaspace pieces (SentencePiece-like, as Llama / Gemma), ids 0-3 special."""
    tok = tokenizers.Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=160, special_tokens=SPECIALS, show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    assert tok.get_vocab_size() <= VOCAB
    return tok


def randomize(model: torch.nn.Module, model_type: str, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:  # around the identity: w ≈ 1, or Gemma's w ≈ 0 (scale 1 + w)
                center = 0.0 if model_type.startswith("gemma") else 1.0
                p.copy_(center + 0.2 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))


def write_fixture(name: str, config, tokenizer: tokenizers.Tokenizer, seed: int) -> None:
    out = os.path.join(ROOT, name)
    shutil.rmtree(out, ignore_errors=True)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(
        config, attn_implementation="eager", dtype=torch.float32).eval()
    randomize(model, config.model_type, seed)
    shard = "20KB" if name == "qwen2" else "10GB"
    model.save_pretrained(out, safe_serialization=True, max_shard_size=shard)
    tokenizer.save(os.path.join(out, "tokenizer.json"))
    tok_config = {"eos_token": "<eos>", "bos_token": "<bos>", "unk_token": "<unk>"}
    if name != "llama":
        tok_config["pad_token"] = {"content": "<pad>", "special": True}
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump(tok_config, f, indent=2)
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, VOCAB, size=(2, 10)).astype(np.int32)
    with torch.no_grad():
        logits = model(torch.from_numpy(tokens).long()).logits.float().numpy()
    np.save(os.path.join(out, "reference_tokens.npy"), tokens)
    np.save(os.path.join(out, "reference_logits.npy"), logits.astype(np.float32))
    generation_config = os.path.join(out, "generation_config.json")  # not read by polrl
    if os.path.exists(generation_config):
        os.remove(generation_config)


def main(names):
    tokenizer = build_tokenizer()
    configs = family_configs()
    unknown = sorted(set(names) - set(configs))
    if unknown:
        raise SystemExit(f"unknown families {unknown}; choose among {list(configs)}")
    for seed, (name, config) in enumerate(configs.items()):
        if names and name not in names:
            continue
        write_fixture(name, config, tokenizer, seed)
        size = sum(os.path.getsize(os.path.join(ROOT, name, f))
                   for f in os.listdir(os.path.join(ROOT, name)))
        print(f"{name}: {size / 1024:.0f} KiB")


if __name__ == "__main__":
    main(sys.argv[1:])
