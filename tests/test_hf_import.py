"""HF import/export: logits against transformers' (committed fixtures), round trips, tokenizer.

The fixtures in tests/fixtures/hf/ come from scripts/make_hf_fixtures.py (torch + transformers);
these tests need neither, except the optional transformers load of an export.
"""
import dataclasses
import functools
import json
import math
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from polrl.models import RopeScaling, TransformerConfig, init_cache
from polrl.models.hf import load_hf, save_hf
from polrl.models.hf_config import config_from_hf, config_to_hf, model_type_of
from polrl.models.hf_tokenizer import HFTokenizer
from polrl.models.layers import rope_inv_freq
from tiny_models import tiny_params

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "hf")
FAMILIES = ("llama", "qwen2", "gemma", "gemma2", "qwen3", "gemma3", "qwen3_moe")


def fixture(family):
    return os.path.join(FIXTURES, family)


@functools.lru_cache(maxsize=None)
def loaded(family):
    return load_hf(fixture(family))


def logits_of(model, tokens):
    graphdef, params = nnx.split(model, nnx.Param)
    return np.asarray(jax.jit(lambda p, t: nnx.merge(graphdef, p)(t))(params, tokens))


def reference(family):
    return (np.load(os.path.join(fixture(family), "reference_tokens.npy")),
            np.load(os.path.join(fixture(family), "reference_logits.npy")))


def pure(model):
    return jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model, nnx.Param)))


@pytest.mark.parametrize("family", FAMILIES)
def test_logits_match_transformers(family):
    model, _ = loaded(family)
    tokens, expected = reference(family)
    got = logits_of(model, jnp.asarray(tokens))
    assert got.shape == expected.shape == (2, 10, model.config.vocab_size)
    assert np.abs(got - expected).max() <= 1e-4


def test_family_settings_are_read_from_config():
    llama, qwen2, gemma, gemma2 = (loaded(f)[0].config for f in FAMILIES[:4])
    assert llama.rope_scaling == RopeScaling("llama3", 8.0, 1.0, 4.0, 16)
    assert not llama.tie_embeddings and not llama.qkv_bias and llama.head_dim == 8
    assert qwen2.qkv_bias and qwen2.tie_embeddings and qwen2.rope_theta == 1e6
    assert (gemma.activation, gemma.norm_offset, gemma.scale_embeddings) == ("gelu_tanh", 1.0, True)
    assert gemma.head_dim == 16 and gemma.head_dim * gemma.num_heads != gemma.d_model
    assert not gemma.post_norms and gemma.final_softcap is None and not gemma.sliding_layers
    assert gemma2.post_norms and (gemma2.attn_softcap, gemma2.final_softcap) == (2.0, 5.0)
    assert (gemma2.query_pre_attn_scalar, gemma2.sliding_window, gemma2.sliding_layers) == (
        24.0, 4, (0,))


def test_new_family_settings_are_read_from_config():
    qwen3, gemma3, moe = (loaded(f)[0].config for f in ("qwen3", "gemma3", "qwen3_moe"))
    assert qwen3.qk_norm and not qwen3.qkv_bias and qwen3.tie_embeddings and qwen3.head_dim == 16
    assert (qwen3.norm_offset, qwen3.rope_theta, qwen3.moe_layers) == (0.0, 1e6, ())
    assert gemma3.qk_norm and gemma3.post_norms and gemma3.norm_offset == 1.0
    assert (gemma3.sliding_layers, gemma3.sliding_window, gemma3.query_pre_attn_scalar) == ((0, 2), 4, 24.0)
    assert (gemma3.rope_theta, gemma3.rope_scaling, gemma3.rope_local_theta) == (
        1e6, RopeScaling("linear", 2.0), 1e4)
    assert gemma3.attn_softcap is None and gemma3.final_softcap is None
    assert moe.qk_norm and moe.head_dim == 8 and not moe.tie_embeddings
    assert (moe.num_experts, moe.experts_per_token, moe.expert_mlp_dim, moe.moe_layers,
            moe.renormalize_topk) == (4, 2, 24, (0,), True)


@pytest.mark.parametrize("family", ["gemma2", "gemma3"])
def test_sliding_window_with_cache_and_left_padding_matches_full_forward(family):
    """The window (4 slots on layer 0, and layer 2 of gemma3 with its local RoPE base) through the
    KV cache, one token at a time, after a left-padded prompt, gives the unpadded full forward's
    logits."""
    model, _ = loaded(family)
    tokens, _ = reference(family)
    tokens = jnp.asarray(tokens)
    full = logits_of(model, tokens)
    graphdef, params = nnx.split(model, nnx.Param)

    @jax.jit
    def incremental(p, tokens_bt, valid_bt):
        m = nnx.merge(graphdef, p)
        b, t = tokens_bt.shape
        positions = jnp.maximum(jnp.cumsum(valid_bt, axis=1) - 1, 0).astype(jnp.int32)
        cache = init_cache(m.config, b, t)
        prefill = t - 3  # then 3 single-token steps, each seeing only the last 4 slots when sliding
        hidden, cache = m.forward(tokens_bt[:, :prefill], positions[:, :prefill],
                                  valid_bt[:, :prefill], cache)
        out = [m.logits(hidden)]
        for i in range(prefill, t):
            hidden, cache = m.forward(tokens_bt[:, i:i + 1], positions[:, i:i + 1],
                                      valid_bt[:, i:i + 1], cache)
            out.append(m.logits(hidden))
        return jnp.concatenate(out, axis=1)

    padded = jnp.concatenate([jnp.zeros((2, 3), jnp.int32), tokens], axis=1)
    valid = jnp.concatenate([jnp.zeros((2, 3), bool), jnp.ones(tokens.shape, bool)], axis=1)
    np.testing.assert_allclose(incremental(params, padded, valid)[:, 3:], full, rtol=1e-5, atol=1e-5)


def test_llama3_rope_frequencies_by_hand():
    # e = 8, θ = 1e4: ω = 1, 0.1, 0.01, 0.001, wavelengths 2π·(1, 10, 100, 1000).
    # L = 100, low 1, high 4 → λ_lo = 100, λ_hi = 25: ω₀ kept (6.3 < 25), ω₁ blended
    # (62.8 ∈ [25, 100]) with m = (100/62.83 − 1)/3, ω₂ and ω₃ divided by 8.
    scaling = RopeScaling("llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                          original_max_len=100)
    m = (100 / (2 * math.pi * 10) - 1) / 3
    expected = [1.0, 0.1 * ((1 - m) / 8 + m), 0.01 / 8, 0.001 / 8]
    np.testing.assert_allclose(rope_inv_freq(8, 1e4, scaling), expected, rtol=1e-5)
    np.testing.assert_allclose(rope_inv_freq(8, 1e4, RopeScaling("linear", 4.0)),
                               [0.25, 0.025, 0.0025, 0.00025], rtol=1e-5)


def test_legacy_rope_keys_are_read():
    base = json.load(open(os.path.join(fixture("llama"), "config.json")))
    base.pop("rope_parameters")
    legacy = {**base, "rope_theta": 5e5, "rope_scaling": {"type": "linear", "factor": 2.0}}
    cfg = config_from_hf(legacy)
    assert cfg.rope_theta == 5e5 and cfg.rope_scaling == RopeScaling("linear", 2.0)
    assert config_from_hf(base).rope_scaling is None and config_from_hf(base).rope_theta == 1e4


@pytest.mark.parametrize("change, message", [
    ({"model_type": "gemma3"}, "unsupported model_type 'gemma3'.*'llama', 'qwen2', 'gemma', 'gemma2'"),
    ({"rope_parameters": {"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e4}}, "'yarn'"),
    ({"attention_bias": True}, "attention_bias"),
    ({"hidden_act": "relu"}, "hidden_act 'relu'"),
])
def test_unsupported_configs_raise(change, message):
    hf = {**json.load(open(os.path.join(fixture("llama"), "config.json"))), **change}
    with pytest.raises(ValueError, match=message):
        config_from_hf(hf)


def test_gemma3_legacy_rope_keys_are_read():
    """transformers<5 writes rope_theta / rope_scaling / rope_local_base_freq and a pattern
    instead of layer_types: the same model as the fixture's per-layer-type rope_parameters."""
    hf = json.load(open(os.path.join(fixture("gemma3"), "config.json")))
    legacy = {k: v for k, v in hf.items() if k not in ("rope_parameters", "layer_types")}
    legacy.update(rope_theta=1e6, rope_scaling={"rope_type": "linear", "factor": 2.0},
                  rope_local_base_freq=1e4)
    assert config_from_hf(legacy) == loaded("gemma3")[0].config
    # HF defaults: global θ 1e6 unscaled, local θ 1e4, every 6th layer global
    bare = {k: v for k, v in legacy.items() if not k.startswith(("rope", "sliding_window_", "_sliding"))}
    cfg = config_from_hf({**bare, "num_hidden_layers": 7})
    assert (cfg.rope_theta, cfg.rope_scaling, cfg.rope_local_theta) == (1e6, None, 1e4)
    assert cfg.sliding_layers == (0, 1, 2, 3, 4, 6)


def test_qwen3_moe_sparse_layers_by_hand():
    """Layer i is sparse iff i ∉ mlp_only_layers and (i + 1) % decoder_sparse_step == 0; the
    expert count may be spelled num_experts (Hub) or num_local_experts (transformers 5)."""
    hf = json.load(open(os.path.join(fixture("qwen3_moe"), "config.json")))
    hf = {**{k: v for k, v in hf.items() if k != "num_local_experts"}, "num_hidden_layers": 6}
    cfg = config_from_hf({**hf, "num_experts": 3, "decoder_sparse_step": 2, "mlp_only_layers": [3]})
    assert (cfg.moe_layers, cfg.num_experts) == ((1, 5), 3)
    cfg = config_from_hf({**hf, "num_local_experts": 5, "mlp_only_layers": None})
    assert (cfg.moe_layers, cfg.num_experts) == ((0, 1, 2, 3, 4, 5), 5)


@pytest.mark.parametrize("family, change, message", [
    ("qwen3", {"attention_bias": True}, "qwen3 with attention_bias"),
    ("qwen3", {"use_sliding_window": True}, "qwen3 with use_sliding_window"),
    ("qwen3_moe", {"mlp_only_layers": [0, 1]}, "leave no sparse layer"),
    ("gemma3", {"sliding_window": None}, "sliding_window null"),
    ("gemma3", {"rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 1e6},
                                    "sliding_attention": {"rope_type": "linear", "factor": 2.0}}},
     "rope_parameters.sliding_attention.rope_type"),
])
def test_unsupported_new_family_options_raise(family, change, message):
    hf = {**json.load(open(os.path.join(fixture(family), "config.json"))), **change}
    with pytest.raises(ValueError, match=message):
        config_from_hf(hf)


def test_weights_of_another_family_are_refused(tmp_path):
    path = shutil.copytree(fixture("qwen2"), tmp_path / "q")
    hf = json.load(open(path / "config.json"))
    json.dump({**hf, "model_type": "llama"}, open(path / "config.json", "w"))
    with pytest.raises(ValueError, match="does not use.*q_proj.bias"):
        load_hf(str(path))
    os.remove(path / "model.safetensors.index.json")
    for shard in path.glob("model-0000[2-5]*"):
        os.remove(shard)
    with pytest.raises(ValueError, match="lacks"):
        load_hf(str(path))


@pytest.mark.parametrize("family", FAMILIES)
def test_export_round_trip(family, tmp_path):
    model, tokenizer = loaded(family)
    # qwen2 is written in shards (index + several files), the others as one file.
    shard = 20_000 if family == "qwen2" else 5 * 2 ** 30
    save_hf(model, model.config, str(tmp_path), tokenizer=tokenizer, max_shard_bytes=shard)
    assert os.path.exists(tmp_path / "model.safetensors.index.json") == (family == "qwen2")
    again, tok_again = load_hf(str(tmp_path))
    assert again.config == model.config
    jax.tree.map(np.testing.assert_array_equal, pure(again), pure(model))
    assert (tok_again.eos_id, tok_again.pad_id, tok_again.bos_id) == (
        tokenizer.eos_id, tokenizer.pad_id, tokenizer.bos_id)
    _check_with_transformers(str(tmp_path), family)


def _check_with_transformers(path, family):
    """transformers loads the export and computes the reference logits (skipped without it)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.float32, attn_implementation="eager").eval()
    tokens, expected = reference(family)
    with torch.no_grad():
        got = hf(torch.from_numpy(tokens).long()).logits.numpy()
    assert np.abs(got - expected).max() <= 1e-4


def test_value_head_round_trips_and_can_be_added(tmp_path):
    model, _ = load_hf(fixture("llama"), value_head=True)
    assert model.config.value_head and float(jnp.abs(model.value_w[...]).sum()) == 0.0
    model.value_w[...] = jnp.arange(32, dtype=jnp.float32)
    model.value_b[...] = jnp.asarray(0.5)
    save_hf(model, model.config, str(tmp_path))
    again, _ = load_hf(str(tmp_path))
    assert again.config.value_head
    np.testing.assert_array_equal(again.value_w[...], np.arange(32))
    assert float(again.value_b[...]) == 0.5


def test_bfloat16_export_loads_into_float32(tmp_path):
    model, _ = loaded("gemma")
    save_hf(model, model.config, str(tmp_path), dtype=jnp.bfloat16)
    assert json.load(open(tmp_path / "config.json"))["torch_dtype"] == "bfloat16"
    again, _ = load_hf(str(tmp_path))
    assert again.embed[...].dtype == jnp.float32
    embed = np.asarray(model.embed[...])
    np.testing.assert_array_equal(again.embed[...], embed.astype(jnp.bfloat16).astype(np.float32))


def test_export_needs_a_matching_family():
    cfg = TransformerConfig(vocab_size=8, d_model=8, num_layers=1, num_heads=2, num_kv_heads=1,
                            mlp_dim=8, activation="gelu_tanh")
    with pytest.raises(ValueError, match="no HF family matches"):
        model_type_of(cfg)
    assert model_type_of(TransformerConfig(vocab_size=8, d_model=8, num_layers=1, num_heads=2,
                                           num_kv_heads=1, mlp_dim=8, qkv_bias=True)) == "qwen2"
    for bad in (dict(qk_norm=True, qkv_bias=True),  # Qwen3 has no q/k/v biases
                dict(num_experts=2, experts_per_token=1, expert_mlp_dim=4, moe_layers=(0,))):  # no q/k norm
        with pytest.raises(ValueError, match="no HF family matches"):
            model_type_of(TransformerConfig(vocab_size=8, d_model=8, num_layers=1, num_heads=2,
                                            num_kv_heads=1, mlp_dim=8, **bad))
    gemma3 = loaded("gemma3")[0].config
    # Gemma 2 has no local RoPE base; Gemma 3's sliding layers need theirs (HF's is unscaled)
    for bad in (dict(qk_norm=False), dict(rope_local_theta=None)):
        with pytest.raises(ValueError, match="no HF family matches"):
            model_type_of(dataclasses.replace(gemma3, **bad))
    hf = config_to_hf(loaded("llama")[0].config)
    assert hf["rope_scaling"]["rope_type"] == "llama3" and hf["model_type"] == "llama"
    assert config_from_hf(hf) == loaded("llama")[0].config


def test_export_refuses_unmerged_lora():
    from polrl.models.lora import apply_lora

    config = TransformerConfig(vocab_size=16, d_model=8, num_layers=1, num_heads=2, num_kv_heads=1,
                               mlp_dim=8)
    model = nnx.merge(*tiny_params(config))
    apply_lora(model, rank=2, rngs=nnx.Rngs(1))
    with pytest.raises(ValueError, match="merge_lora"):
        save_hf(model, model.config, "/nonexistent")


# ----------------------------------------------------------------------------- tokenizer


def test_tokenizer_round_trip_and_special_ids():
    tok = loaded("qwen2")[1]
    assert isinstance(tok, HFTokenizer)
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.vocab_size) == (0, 1, 2, 160)
    text = "What is 12 + 30? The answer is 42."
    ids = tok.encode(text)
    assert 0 not in ids and 1 not in ids and 2 not in ids
    assert tok.decode(ids) == text
    assert tok.encode(text, bos=True, eos=True) == [1, *ids, 2]
    # decode stops at the first EOS and skips pads and BOS, like CharTokenizer.
    row = [0, 0, 1, *ids, 2, *ids]
    assert tok.decode(row) == text
    other = [1, *ids, 2] + [0] * (len(row) - len(ids) - 2)
    assert tok.decode_batch(np.asarray([row, other])) == [text, text]


def test_tokenizer_without_pad_pads_with_eos():
    tok = loaded("llama")[1]  # tokenizer_config.json has no pad_token
    assert tok.pad_id == tok.eos_id == 2


def test_tokenizer_bad_input_raises(tmp_path):
    tok = loaded("gemma")[1]
    with pytest.raises(ValueError, match="decode_batch"):
        tok.decode(np.zeros((2, 3), int))
    with pytest.raises(ValueError, match="decode for a single"):
        tok.decode_batch([1, 2, 3])
    with pytest.raises(ValueError, match="tokenizer.json"):
        HFTokenizer.from_dir(str(tmp_path))
