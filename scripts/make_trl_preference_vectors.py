"""Writes tests/fixtures/trl_preference_vectors.json: TRL 1.16's preference losses (and their
gradients with respect to the per-token policy log-probs) on small fixed inputs.

    python scripts/make_trl_preference_vectors.py [TRL_SOURCE_DIR]   (default /tmp/trl_pkg/x)

TRL_SOURCE_DIR is an unpacked TRL 1.16 source tree (the directory holding ``trl/``). Importing
TRL's trainer modules needs accelerate / datasets; to avoid them, the script reads the TRL source
files and executes the loss FUNCTIONS THEMSELVES, unchanged, extracted with ``ast``:

  * ``DPOTrainer._compute_loss``   (trl/trainer/dpo_trainer.py; loss types sigmoid, hinge, ipo, robust)
  * ``KTOTrainer._compute_loss`` and ``_compute_kl_logps``   (trl/trainer/kto_trainer.py)
  * ``CPOTrainer.cpo_loss``        (trl/experimental/cpo/cpo_trainer.py; loss_type="simpo", alpha=0)
  * ``ORPOTrainer.odds_ratio_loss`` and ``log1mexp``   (trl/experimental/orpo/orpo_trainer.py)

Methods are called unbound with a ``SimpleNamespace`` ``self`` holding the attributes they read,
and a stub model whose ``log_probs`` output is the fixed per-token log-prob table (zero off the
completion mask, as TRL's fused head gives for label −100). Reference log-probs are passed
precomputed (``precompute_ref_logps=True``). For KTO the "KL" completions are the rows
themselves (matched pairs), so TRL's reference point equals polrl's batch estimate. CPO/ORPO
receive the per-row MEAN token log-prob, as their ``concatenated_forward`` computes for
``simpo`` / ORPO. Everything runs in float64 on CPU.
"""
from __future__ import annotations

import ast
import contextlib
import json
import math
import sys
import textwrap
import warnings
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "trl_preference_vectors.json"


def load_functions(path: Path, names: dict[str, str | None]) -> dict:
    """Executes the named functions of a TRL source file: {name: class name or None}."""
    src = path.read_text()
    tree = ast.parse(src)
    ns = {
        "torch": torch, "F": F, "math": math, "warnings": warnings,
        "is_peft_model": lambda m: False, "disable_gradient_checkpointing": lambda *a, **k: contextlib.nullcontext(),
    }
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and names.get(item.name) == node.name:
                    code = textwrap.dedent(ast.get_source_segment(src, item))
                    code = "\n".join(l for l in code.splitlines() if not l.lstrip().startswith("@"))
                    exec(code, ns)
                    out[item.name] = ns[item.name]
        elif isinstance(node, ast.FunctionDef) and node.name in names and names[node.name] is None and node.col_offset == 0:
            exec(ast.get_source_segment(src, node), ns)
            out[node.name] = ns[node.name]
    missing = set(names) - set(out)
    if missing:
        raise SystemExit(f"{path}: functions {sorted(missing)} not found")
    return out


class StubModel:
    """Returns the fixed per-token log-prob table for rows whose first input id is the row id."""

    training = True

    def __init__(self, table: torch.Tensor):
        self.table = table  # [N, T] per completion token

    def __call__(self, input_ids=None, labels=None, **kwargs):
        rows = input_ids[:, 0]
        lp = self.table[rows] * (labels[:, 1:] != -100)
        z = torch.zeros_like(lp)
        return SimpleNamespace(log_probs=lp, entropy=z.detach(), mean_logits=z.detach(), is_top1=z.detach().bool())


ACCEL = SimpleNamespace(device="cpu", gather_for_metrics=lambda x: x, gather=lambda x: x)


def data():
    rng = np.random.default_rng(20240607)
    n_pairs, t = 3, 4
    lengths = np.array([[4, 2], [3, 4], [1, 3]])  # chosen, rejected
    mask = np.zeros((2 * n_pairs, t))
    for k in range(n_pairs):
        for j in range(2):
            mask[2 * k + j, : lengths[k, j]] = 1.0
    logp = np.round(rng.uniform(-2.0, -0.05, (2 * n_pairs, t)), 4) * mask
    ref = np.round(rng.uniform(-2.0, -0.05, (2 * n_pairs, t)), 4) * mask
    return logp, ref, mask


def dpo_case(fn, logp, ref, mask, loss_type, beta, eps):
    # TRL's batch is [chosen rows; rejected rows]; polrl's rows alternate (chosen, rejected).
    order = np.concatenate([np.arange(0, len(logp), 2), np.arange(1, len(logp), 2)])
    table = torch.tensor(logp[order], dtype=torch.float64, requires_grad=True)
    n, t = table.shape
    completion_mask = torch.cat([torch.zeros(n, 1), torch.tensor(mask[order])], 1).long()
    input_ids = torch.cat([torch.arange(n)[:, None], torch.ones(n, t, dtype=torch.long)], 1)
    ref_sums = torch.tensor((ref[order] * mask[order]).sum(1), dtype=torch.float64)
    self = SimpleNamespace(
        model=StubModel(table), accelerator=ACCEL, aux_loss_enabled=False, ld_alpha=None,
        precompute_ref_logps=True, f_divergence_type="reverse_kl", loss_types=[loss_type], loss_weights=[1.0],
        beta=beta, label_smoothing=eps, use_weighting=False, _metrics=defaultdict(lambda: defaultdict(list)),
        _total_train_tokens=0, _tp_size=1,
    )
    inputs = {
        "input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "completion_mask": completion_mask,
        "ref_chosen_logps": ref_sums[: n // 2], "ref_rejected_logps": ref_sums[n // 2 :],
    }
    loss = fn(self, self.model, inputs, return_outputs=False)
    (grad,) = torch.autograd.grad(loss, table)
    g = np.zeros_like(logp)
    g[order] = grad.numpy()
    return float(loss.detach()), (g * mask).tolist()


def kto_case(fns, logp, ref, mask, labels, beta, wd, wu):
    table = torch.tensor(logp, dtype=torch.float64, requires_grad=True)
    n, t = table.shape
    completion_mask = torch.cat([torch.zeros(n, 1), torch.tensor(mask)], 1).long()
    input_ids = torch.cat([torch.arange(n)[:, None], torch.ones(n, t, dtype=torch.long)], 1)
    ref_sums = torch.tensor((ref * mask).sum(1), dtype=torch.float64)
    self = SimpleNamespace(
        model=StubModel(table), accelerator=ACCEL, calculate_KL=True, precompute_ref_logps=True, loss_type="kto",
        beta=beta, desirable_weight=wd, undesirable_weight=wu, aux_loss_enabled=False,
        _metrics=defaultdict(lambda: defaultdict(list)), _total_train_tokens=0, _tp_size=1,
    )
    self._compute_kl_logps = lambda model, batch: fns["_compute_kl_logps"](self, model, batch)
    batch = {
        "input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "completion_mask": completion_mask,
        "KL_input_ids": input_ids, "KL_attention_mask": torch.ones_like(input_ids), "KL_completion_mask": completion_mask,
        "label": torch.tensor(labels), "ref_logps": ref_sums, "ref_KL_logps": ref_sums,
    }
    loss = fns["_compute_loss"](self, self.model, batch, return_outputs=False)
    (grad,) = torch.autograd.grad(loss, table)
    return float(loss.detach()), float(self._metrics["train"]["kl"][-1]), (grad.numpy() * mask).tolist()


def avg_case(fn, self, logp, mask, post):
    table = torch.tensor(logp, dtype=torch.float64, requires_grad=True)
    m = torch.tensor(mask)
    avg = (table * m).sum(1) / m.sum(1)
    out = fn(self, avg[0::2], avg[1::2])
    loss = post(out)
    (grad,) = torch.autograd.grad(loss, table)
    return float(loss.detach()), (grad.numpy() * mask).tolist()


def main(root: str = "/tmp/trl_pkg/x") -> None:
    trl = Path(root) / "trl"
    dpo = load_functions(trl / "trainer" / "dpo_trainer.py", {"_compute_loss": "DPOTrainer"})["_compute_loss"]
    kto = load_functions(trl / "trainer" / "kto_trainer.py", {"_compute_loss": "KTOTrainer", "_compute_kl_logps": "KTOTrainer"})
    cpo = load_functions(trl / "experimental" / "cpo" / "cpo_trainer.py", {"cpo_loss": "CPOTrainer"})["cpo_loss"]
    orpo_fns = load_functions(trl / "experimental" / "orpo" / "orpo_trainer.py", {"odds_ratio_loss": "ORPOTrainer", "log1mexp": None})
    orpo_fns["odds_ratio_loss"].__globals__["log1mexp"] = orpo_fns["log1mexp"]

    logp, ref, mask = data()
    cases = []
    for loss_type in ("sigmoid", "hinge", "ipo", "robust"):
        for beta in (0.1, 0.5):
            for eps in ((0.0, 0.2) if loss_type in ("sigmoid", "robust") else (0.0,)):
                loss, grad = dpo_case(dpo, logp, ref, mask, loss_type, beta, eps)
                cases.append(dict(trl="DPOTrainer._compute_loss", loss_type=loss_type, beta=beta,
                                  label_smoothing=eps, loss=loss, grad_logp_bt=grad))
    labels = [True, False, True, True, False, False]
    for beta, wd, wu, shift in ((0.1, 1.0, 1.0, 1.0), (0.5, 1.5, 0.7, 1.0), (0.5, 1.0, 1.0, -0.5)):
        # shift moves the policy log-probs per token: +1 makes the mean log-ratio positive (z > 0), −0.5 negative (z = 0)
        lp = logp + shift * mask
        loss, z, grad = kto_case(kto, lp, ref, mask, labels, beta, wd, wu)
        cases.append(dict(trl="KTOTrainer._compute_loss", loss_type="kto", beta=beta, desirable_weight=wd,
                          undesirable_weight=wu, logp_shift=shift, label_b=labels, loss=loss, kto_z=z, grad_logp_bt=grad))
    for beta, gamma in ((0.1, 0.5), (2.0, 0.5), (2.5, 1.4)):
        self = SimpleNamespace(alpha=0.0, accelerator=ACCEL, loss_type="simpo", simpo_gamma=gamma, beta=beta, label_smoothing=0.0)
        loss, grad = avg_case(cpo, self, logp, mask, lambda out: out[0].mean())
        cases.append(dict(trl="CPOTrainer.cpo_loss", loss_type="simpo", beta=beta, simpo_gamma=gamma, loss=loss, grad_logp_bt=grad))
    for lam in (0.1, 0.25):
        self = SimpleNamespace(accelerator=ACCEL, beta=lam)
        # TRL's full loss is nll − losses.mean(); the odds-ratio part alone is −losses.mean()
        loss, grad = avg_case(orpo_fns["odds_ratio_loss"], self, logp, mask, lambda out: -out[0].mean())
        cases.append(dict(trl="ORPOTrainer.odds_ratio_loss", loss_type="orpo", orpo_lambda=lam, loss=loss, grad_logp_bt=grad))

    doc = {
        "source": "TRL 1.16 loss functions executed on fixed inputs by scripts/make_trl_preference_vectors.py",
        "layout": "rows alternate (chosen, rejected) per pair; per-token arrays [rows, T], zero off mask_bt",
        "logp_bt": logp.tolist(), "ref_logp_bt": ref.tolist(), "mask_bt": mask.tolist(),
        "cases": cases,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {OUT}: {len(cases)} cases")


if __name__ == "__main__":
    main(*sys.argv[1:])
