"""Policy / value networks."""
from polrl.models.transformer import KVCache, Transformer, TransformerConfig, init_cache

__all__ = ["KVCache", "Transformer", "TransformerConfig", "init_cache"]
