"""Generating responses: the rollout engine and the programs built on it."""
from polrl.rollout import engine
from polrl.rollout.engine import Generation, Slots
from polrl.rollout.sampler import SampleOutput, make_sampler, sample
from polrl.rollout.sampling import SamplingConfig

__all__ = ["Generation", "SampleOutput", "SamplingConfig", "Slots", "engine", "make_sampler", "sample"]
