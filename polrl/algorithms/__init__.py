"""Algorithms as nouns: each returns a ``polrl.core.Algorithm`` built from shared transforms.

Configs name them by attribute (``getattr(polrl.algorithms, name)``); there is no second
string registry.
"""
from polrl.algorithms.chord import chord
from polrl.algorithms.lp_reg import lp_reg
from polrl.algorithms.mdpo import mdpo
from polrl.algorithms.rover import rover
from polrl.algorithms.off_policy_reinforce import asymre, opmd, rec
from polrl.algorithms.cispo import cispo
from polrl.algorithms.entropy_cov import clip_cov, kl_cov
from polrl.algorithms.gmpo import gmpo
from polrl.algorithms.gepo import gepo
from polrl.algorithms.gkd import gkd
from polrl.algorithms.ded import ded
from polrl.algorithms.nlpo import nlpo
from polrl.algorithms.inspo import inspo
from polrl.algorithms.ampo import ampo
from polrl.algorithms.sophia import sophia
from polrl.algorithms.gpg import gpg
from polrl.algorithms.opo import opo
from polrl.algorithms.opa_dpo import opa_dpo
from polrl.algorithms.otb import otb
from polrl.algorithms.passk import passk_grpo
from polrl.algorithms.dapo import dapo
from polrl.algorithms.dr_grpo import dr_grpo
from polrl.algorithms.flow_grpo import flow_grpo
from polrl.algorithms.gspo import gspo
from polrl.algorithms.policy_gradient import grpo, ppo
from polrl.algorithms.reinforce_pp import reinforce_pp
from polrl.algorithms.remax import remax
from polrl.algorithms.remix import remix
from polrl.algorithms.copg import copg
from polrl.algorithms.dragon import dragon
from polrl.algorithms.drpo import drpo
from polrl.algorithms.rl_plus import rl_plus
from polrl.algorithms.otr import otr
from polrl.algorithms.tppo import tppo
from polrl.algorithms.treepo import treepo
from polrl.algorithms.dialtree_rpo import dialtree_rpo
from polrl.algorithms.rloo import rloo
from polrl.algorithms.sapo import sapo
from polrl.algorithms.preference import dpo, kto, orpo, simpo
from polrl.algorithms.ra_dpo import ra_dpo
from polrl.algorithms.process_reward import process_reward_model
from polrl.algorithms.digi_q import digi_q
from polrl.algorithms.reward_model import reward_model
from polrl.algorithms.seppo import seppo
from polrl.algorithms.spark import spark
from polrl.algorithms.supervised import sft

__all__ = ["dpo", "simpo", "orpo", "kto", "grpo", "ppo", "sft", "dr_grpo", "dapo", "gspo", "cispo", "rloo", "reinforce_pp", "remax", "sapo", "opmd", "asymre", "rec", "chord", "lp_reg", "rover", "mdpo", "remix", "tppo", "otr", "copg", "drpo", "rl_plus", "flow_grpo", "treepo", "clip_cov", "kl_cov", "gmpo", "gpg", "opo", "passk_grpo", "otb", "reward_model", "process_reward_model", "gepo", "opa_dpo", "seppo", "dragon", "ra_dpo", "spark", "digi_q", "dialtree_rpo", "gkd", "ded", "ampo", "nlpo", "sophia", "inspo"]


def get(name: str):
    """Returns the algorithm noun called ``name``, with an error listing the valid names."""
    if name not in __all__:
        raise ValueError(f"unknown algorithm {name!r}; polrl.algorithms has {__all__}")
    return globals()[name]
