"""Rewards: string rewards on hand-made cases, token_exact_match under jit,
check_rewards errors."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from polrl.tasks.rewards import (
    check_rewards,
    countdown_reward,
    exact_match,
    extract_number,
    format_reward,
    numeric_match,
    parse_expression,
    token_exact_match,
)
from polrl.tasks.tokenizer import CharTokenizer


def test_exact_match():
    assert exact_match("522", "522") == 1.0
    assert exact_match(" 522\n", "522") == 1.0
    assert exact_match("522 apples", "522") == 0.0
    assert exact_match("-7", "7") == 0.0


@pytest.mark.parametrize(
    "text, expected",
    [
        ("the answer is 42", "42"),
        ("x = -1,234.", "-1234"),
        ("1,234,567 and then 12", "12"),
        ("costs 1,234,567", "1234567"),
        ("3.5 apples", "3.5"),
        ("-0.25", "-0.25"),
        ("10-5", "5"),
        ("(-3)", "-3"),
        ("is 42. done", "42"),
        ("3,7,25", "25"),
        ("no digits here", None),
        ("", None),
    ],
)
def test_extract_number(text, expected):
    assert extract_number(text) == expected


def test_numeric_match():
    assert numeric_match("so it is 1,234", "1234") == 1.0
    assert numeric_match("42.0", "42") == 1.0
    assert numeric_match("-5", "5") == 0.0
    assert numeric_match("I don't know", "5") == 0.0
    with pytest.raises(ValueError, match="answer 'five' contains no number"):
        numeric_match("5", "five")


def test_format_reward():
    pattern = r"<a>\d+</a>"
    assert format_reward("<a>12</a>", pattern) == 1.0
    assert format_reward("<a>12</a> extra", pattern) == 0.0
    assert format_reward("x\ny", re.compile(r"x.y")) == 0.0
    assert format_reward("x\ny", r"(?s)x.y") == 1.0


def test_parse_expression_precedence_and_literals():
    assert parse_expression("3+4*5") == (23, [3, 4, 5])
    assert parse_expression("(3+4) * 5") == (35, [3, 4, 5])
    assert parse_expression("3-(4-5)") == (4, [3, 4, 5])
    assert parse_expression("2-3-4") == (-5, [2, 3, 4])


@pytest.mark.parametrize(
    "text", ["", "3+", "(3", "3)", "3 4", "-3", "3/4", "3**4", "03+1", "eval(3)", "3٣"]
)
def test_parse_expression_rejects(text):
    with pytest.raises(ValueError, match="parse_expression"):
        parse_expression(text)


def test_parse_expression_depth_limit():
    with pytest.raises(ValueError, match="deeper than 32"):
        parse_expression("(" * 1000 + "3" + ")" * 1000)


@pytest.mark.parametrize(
    "completion, reward",
    [
        ("25+3*7", 1.0),
        ("3*7+25", 1.0),
        (" 25 + 3 * 7 ", 1.0),
        ("(25+3*7)", 1.0),
        ("25+21", 0.0),  # 21 is not one of the numbers
        ("25+7+7+7", 0.0),  # 7 reused
        ("25+3*7=46", 0.0),  # trailing text
        ("25+3*7 is it", 0.0),
        ("25+3*", 0.0),  # malformed
        ("(25+3*7", 0.0),
        ("25+3*7+0", 0.0),  # 0 is not allowed
        ("25*3-7", 0.0),  # wrong value
        ("", 0.0),
    ],
)
def test_countdown_reward(completion, reward):
    assert countdown_reward(completion, [3, 7, 25], 46) == reward


def test_countdown_reward_repeated_numbers_and_subsets():
    assert countdown_reward("5*5", [5, 5, 2], 25) == 1.0
    assert countdown_reward("5*5*5", [5, 5, 2], 125) == 0.0
    assert countdown_reward("25", np.array([25, 3]), np.int32(25)) == 1.0


def _answers(tok, texts, width):
    answer = np.zeros((len(texts), width), np.int32)
    valid = np.zeros((len(texts), width), bool)
    for b, text in enumerate(texts):
        ids = tok.encode(text, eos=True)
        answer[b, : len(ids)] = ids
        valid[b, : len(ids)] = True
    return answer, valid


def _responses(tok, rows, width):
    """rows: (token ids, number of generated tokens the mask covers)."""
    response = np.zeros((len(rows), width), np.int32)
    mask = np.zeros((len(rows), width), bool)
    for b, (ids, length) in enumerate(rows):
        response[b, : len(ids)] = ids
        mask[b, :length] = True
    return response, mask


def test_token_exact_match_cases_under_jit():
    tok = CharTokenizer()
    eos = tok.eos_id
    d = tok.encode
    answer, valid = _answers(tok, ["522"] * 7, width=6)
    rows = [
        (d("522") + [eos], 4),  # match
        (d("523") + [eos], 4),  # wrong digit
        (d("522"), 3),  # missing EOS
        (d("522") + [eos] + d("77"), 4),  # junk after EOS, masked off
        (d("522") + [eos] + d("77"), 6),  # junk after EOS, still in the mask
        (d("5222") + [eos], 5),  # longer answer
        (d("52") + [eos], 3),  # shorter answer
    ]
    response, mask = _responses(tok, rows, width=8)
    reward = jax.jit(token_exact_match)(
        jnp.asarray(response), jnp.asarray(mask), jnp.asarray(answer), jnp.asarray(valid)
    )
    assert reward.dtype == jnp.float32
    np.testing.assert_array_equal(reward, [1, 0, 0, 1, 1, 0, 0])


def test_token_exact_match_response_shorter_than_answer_array():
    tok = CharTokenizer()
    answer, valid = _answers(tok, ["12", "12345"], width=8)
    response, mask = _responses(
        tok, [(tok.encode("12", eos=True), 3), (tok.encode("1234"), 4)], width=4
    )
    reward = jax.jit(token_exact_match)(response, mask, answer, valid)
    np.testing.assert_array_equal(reward, [1, 0])


def test_token_exact_match_empty_answer_never_matches():
    response = np.zeros((1, 3), np.int32)
    mask = np.ones((1, 3), bool)
    reward = token_exact_match(response, mask, np.zeros((1, 2), np.int32), np.zeros((1, 2), bool))
    np.testing.assert_array_equal(reward, [0])


def test_check_rewards_passes_and_converts():
    reward = check_rewards(jnp.array([1, 0, 0.5]), 3, "my_reward")
    assert reward.dtype == np.float32
    np.testing.assert_array_equal(reward, [1, 0, 0.5])


def test_check_rewards_shape_error():
    with pytest.raises(
        ValueError, match=r"my_reward returned rewards of shape \(2, 2\); expected \[batch_size\] = \(4,\)"
    ):
        check_rewards(np.zeros((2, 2)), 4, "my_reward")


def test_check_rewards_non_finite_rows():
    with pytest.raises(ValueError, match=r"my_reward returned non-finite rewards at rows \[1, 3\]"):
        check_rewards(np.array([0.0, np.nan, 1.0, np.inf]), 4, "my_reward")
