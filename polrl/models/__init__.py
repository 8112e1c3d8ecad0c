"""Policy / value networks: the NNX decoder, HF checkpoint import/export, LoRA adapters, and
``build_model`` (the model protocol every family implements is in ``polrl.models.build``)."""
from polrl.models.build import build_model, model_kwargs, pretrained_model
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
    "build_model",
    "init_cache",
    "load_hf",
    "lora_optimizer",
    "merge_lora",
    "model_kwargs",
    "pretrained_model",
    "save_hf",
    "split_lora",
]
