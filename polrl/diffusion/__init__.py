"""Masked-diffusion language models and their RL: "Large Language Diffusion Models" (LLaDA,
arXiv 2502.09992) trained with "Boundary-Guided Policy Optimization for Memory-efficient RL of
Diffusion Large Language Models" (BGPO, arXiv 2510.11683).

* :mod:`polrl.diffusion.model`   — bidirectional transformer over the char vocabulary + a mask id;
* :mod:`polrl.diffusion.elbo`    — Monte-Carlo ELBO of log π(y | x) from K drawn masks;
* :mod:`polrl.diffusion.sampler` — iterative unmasking with low-confidence remasking;
* :mod:`polrl.diffusion.bgpo`    — BGPO's linear lower bound and the ELBO-ratio objective, gradients;
* :mod:`polrl.diffusion.preference` — DPO on shared-mask ELBO log-ratios: SePPO and DRAGON;
* :mod:`polrl.diffusion.train`   — SFT warm start then BGPO on arithmetic (``trainer = "diffusion"``).
"""
