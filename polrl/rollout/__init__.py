"""Generating responses from the policy."""
from polrl.rollout.sampler import SampleOutput, SamplingConfig, make_sampler, sample

__all__ = ["SampleOutput", "SamplingConfig", "make_sampler", "sample"]
