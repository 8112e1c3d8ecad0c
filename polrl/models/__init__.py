"""Policy / value networks: the NNX decoder, HF checkpoint import/export, LoRA adapters."""
from polrl.models.hf import load_hf, save_hf
from polrl.models.hf_tokenizer import HFTokenizer
from polrl.models.lora import LoRAParam, apply_lora, lora_optimizer, merge_lora, split_lora
from polrl.models.transformer import KVCache, RopeScaling, Transformer, TransformerConfig, init_cache

__all__ = [
    "HFTokenizer",
    "KVCache",
    "LoRAParam",
    "RopeScaling",
    "Transformer",
    "TransformerConfig",
    "apply_lora",
    "init_cache",
    "load_hf",
    "lora_optimizer",
    "merge_lora",
    "save_hf",
    "split_lora",
]
