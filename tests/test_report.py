"""The documented figures agree with the raw results: ``benchmarks/report.py`` regenerates every
block of measured numbers in the README and the experiments' docstrings, and no measured figure
lives outside such a block."""
import importlib
import re

import pytest

from benchmarks import report

# A measured figure: a decimal percentage, a ± spread or a decimal ratio.
FIGURE = re.compile(r"\d\.\d+ ?%|±|\d\.\d+×")


def outside_blocks(text: str):
    inside = False
    for number, line in enumerate(text.split("\n"), 1):
        if report.START.search(line):
            inside = True
        elif report.END in line:
            inside = False
        elif not inside:
            yield number, line


def test_every_block_matches_the_raw_results():
    assert report.stale() == [], "run python benchmarks/report.py and commit the result"


@pytest.mark.parametrize("path", report.documents(), ids=lambda p: p.name)
def test_no_measured_figure_outside_a_generated_block(path):
    text = path.read_text()
    if path.suffix == ".py":  # only the docstring: code may hold constants such as 0.5%
        text = text[: text.index('"""', text.index('"""') + 3)]
    bad = [f"{path.name}:{n}: {line.strip()}" for n, line in outside_blocks(text) if FIGURE.search(line)]
    assert not bad, "measured figures must come from benchmarks/report.py blocks:\n" + "\n".join(bad)


def test_every_block_is_used():
    used = {m.group(1) for p in report.documents() for m in report.START.finditer(p.read_text())}
    assert used == set(report.BLOCKS), f"blocks never placed: {sorted(set(report.BLOCKS) - used)}"


def test_unknown_block_is_a_clear_error(tmp_path):
    path = tmp_path / "doc.md"
    with pytest.raises(KeyError, match="unknown report block 'nope'"):
        report.render("<!-- report: nope -->\n<!-- /report -->", path)


def test_unclosed_block_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no closing"):
        report.render("<!-- report: readme.speed -->\ntext", tmp_path / "doc.md")


def test_claims_table_matches_the_raw_results():
    from benchmarks import claims

    assert claims.OUT.read_text() == claims.render(), "run python benchmarks/claims.py and commit the result"


def test_async_table_matches_the_raw_results():
    bench = importlib.import_module("benchmarks.async")  # a keyword as a module name: imported by string
    assert bench.OUT.read_text() == bench.render(bench.latest(bench.read(bench.RESULTS))), \
        "run python benchmarks/async.py --arms '' and commit the result"


def test_claims_statistics_on_hand_values():
    from benchmarks import claims

    assert claims.sign_test([0.1, 0.2, 0.3]) == 0.125  # 3 wins of 3: 1/8
    assert claims.sign_test([0.1, -0.2, 0.0]) == 0.75  # tie dropped; 1 win of 2: (2 + 1)/4
    low, high = claims.bootstrap([0.01, 0.01, 0.01])
    assert low == high == 0.01
    assert claims.verdict("better", [0.1, 0.2, 0.3], 0.1, 0.3) == "reproduced"
    assert claims.verdict("better", [0.3, -0.1, 0.0], -0.1, 0.3) == "inconclusive"
    assert claims.verdict("better", [-0.1, 0.05], -0.1, 0.05) == "not reproduced"
    assert claims.verdict("parity", [-0.1, 0.05], -0.1, 0.05) == "parity consistent"


def test_length_table_matches_the_raw_results():
    from benchmarks import length
    from benchmarks.provenance import read

    root = report.ROOT / "benchmarks"
    done = read(root / "results" / "length.jsonl")
    steps = done[0]["steps"]
    assert (root / "length.md").read_text() == length.render(done, steps), "run python benchmarks/length.py"


def test_length_tail_means_and_counted_compute_on_hand_values():
    from benchmarks import length
    from polrl.models.flops import transformer_forward_flops
    from polrl.models import TransformerConfig

    series = {"step": [1, 2, 3, 4], "accuracy": [1.0, 0.5, 0.25, 0.75],
              "response_length_incorrect": [0.0, 10.0, 20.0, 30.0], "entropy": [4.0, 3.0, 2.0, 1.0]}
    run = {"series": series}
    # the last quarter of 4 steps is step 4 alone
    assert length.tail_mean(run, "entropy") == 1.0
    assert length.tail_mean(run, "response_length_incorrect") == 30.0
    # over every step, wrong lengths weigh by the wrong fraction: (0·0 + 10·.5 + 20·.75 + 30·.25) / 1.5
    old, length.TAIL = length.TAIL, 1.0
    try:
        assert length.tail_mean(run, "response_length_incorrect") == pytest.approx(27.5 / 1.5)
        assert length.tail_mean({"series": {**series, "accuracy": [1.0] * 4}}, "response_length_incorrect") is None
    finally:
        length.TAIL = old
    # one GRPO step: sampled 1000 response + 200 prompt tokens, trained the same 1200 tokens
    config, model = length._config_model("grpo")
    assert isinstance(model, TransformerConfig)
    rows = config.rollout.batch_size
    f = transformer_forward_flops(model, 1.0, 0.5 * 1200 / rows)
    got = length.step_flops("grpo", {"response_tokens": [1000.0], "update_tokens": [1000.0], "update_prompt_tokens": [200.0]})
    assert got == [pytest.approx(f * 1200 + 3 * f * 1200)]
    # DAPO samples 2× the prompts it trains on; SFT samples nothing
    dapo = length.step_flops("dapo", {"response_tokens": [2000.0], "update_tokens": [1000.0], "update_prompt_tokens": [200.0]})
    assert dapo == [pytest.approx(f * 2400 + 3 * f * 1200)]
    sft_rows = length._config_model("sft")[0].demos.batch_size
    f_sft = transformer_forward_flops(model, 1.0, 0.5 * 1200 / sft_rows)
    sft = length.step_flops("sft", {"response_tokens": [1000.0], "update_tokens": [1000.0], "update_prompt_tokens": [200.0]})
    assert sft == [pytest.approx(3 * f_sft * 1200)]


def test_preference_table_matches_the_raw_results():
    from benchmarks import preference
    from benchmarks.provenance import read

    root = report.ROOT / "benchmarks"
    done = read(root / "results" / "preference.jsonl")
    steps = done[0]["budget"]
    assert (root / "preference.md").read_text() == preference.render(done, steps), "run python benchmarks/preference.py"


def test_preference_accuracy_edges_and_hidden_gain_on_hand_values():
    from benchmarks import preference

    run = {"evals": [{"step": s, "eval/accuracy": a} for s, a in ((0, 0.2), (100, 0.4), (200, 0.5), (300, 0.6),
                                                                   (300, 0.6), (400, 0.7))]}
    # the last 3 evaluations, the phase boundary at step 300 counted once
    assert preference.accuracy(run) == pytest.approx((0.5 + 0.6 + 0.7) / 3)
    steps = [{"step": i, "loss": float(i), "hidden_score_mean": i / 20} for i in range(1, 21)]
    steps[0]["only_first"] = 7.0
    head, tail = preference._edge_means(steps, False), preference._edge_means(steps, True)
    assert head == pytest.approx({"loss": 1.5, "hidden_score_mean": 0.075, "only_first": 7.0})  # steps 1, 2 of 20
    assert tail == pytest.approx({"loss": 19.5, "hidden_score_mean": 0.975})  # steps 19, 20
    assert preference.hidden_gain({"head": head, "tail": tail}) == pytest.approx(0.9)


def test_guided_table_matches_the_raw_results():
    from benchmarks import guided
    from benchmarks.provenance import read

    root = report.ROOT / "benchmarks"
    assert (root / "guided.md").read_text() == guided.render(read(root / "results" / "guided.jsonl")), \
        "run python benchmarks/guided.py"


def test_frontier_page_matches_the_raw_results():
    from benchmarks import frontier

    assert (report.ROOT / "benchmarks" / "frontier.md").read_text() == frontier.render(), \
        "run python benchmarks/frontier.py"


def test_guided_selector_is_calibrated_on_one_half_and_scored_on_the_other():
    """Four prompts, difficulty 1, 1, 2, 2; halves by index parity. Calibrated on prompts 0, 2: bin 1 →
    beam@4 (accuracy 1 within the budget 10; best_of_n@16 is as accurate but spends 50), bin 2 →
    greedy_small; scored on prompts 1, 3: beam@4 right, greedy_small wrong → 0.5, FLOPs (5 + 1)/2.
    Calibrated on 1, 3: bin 1 → beam@4, bin 2 → greedy_small (every setting within the budget scores
    0, the fewest FLOPs win); scored on 0, 2: both right → 1.0, FLOPs 3."""
    from benchmarks import guided

    d = [1, 1, 2, 2]
    settings = {
        "greedy_small": {"accuracy": 0.25, "correct": [0, 0, 1, 0], "flops": [1.0] * 4, "difficulty": d},
        "greedy_large": {"accuracy": 0.5, "correct": [1, 0, 1, 0], "flops": [10.0] * 4, "difficulty": d},
        "beam@4": {"accuracy": 0.5, "correct": [1, 1, 0, 0], "flops": [5.0] * 4, "difficulty": d},
        "best_of_n@16": {"accuracy": 1.0, "correct": [1, 1, 1, 1], "flops": [50.0] * 4, "difficulty": d},
    }
    accuracy, flops, chosen = guided.selector_accuracy(settings)
    assert accuracy == pytest.approx((0.5 + 1.0) / 2)
    assert flops == pytest.approx(3.0)
    assert chosen == {1: "beam@4", 2: "greedy_small"}
    assert guided.setting_key("dvts@16") == ("dvts", 16) and guided.setting_key("greedy_large") == ("greedy_large", 1)
