"""Pure steps (``steps``: scoring, prepare, the LLM update), the one update loop (``update``),
the trainer loop, checkpoints, metrics."""
