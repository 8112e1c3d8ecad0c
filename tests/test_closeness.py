"""The hidden closeness rule s(y, t) = 1/(1 + |y − t|): hand values, and the device version equals
the host version on every kind of completion."""
import jax.numpy as jnp
import numpy as np
import pytest

from polrl.tasks import CharTokenizer, encode_answers
from polrl.tasks.closeness import closeness, closeness_reward

TOK = CharTokenizer()


def test_hand_values():
    assert closeness("17", "17") == 1.0
    assert closeness("16", "17") == 0.5
    assert closeness("-3", "2") == 1 / 6
    assert closeness("007", "7") == 1.0
    for bad in ("", "1 7", " 17", "17a", "--1", "-", "1-2", "+5"):
        assert closeness(bad, "17") == 0.0, bad
    with pytest.raises(ValueError, match="the answer 'x' is not an integer"):
        closeness("1", "x")


COMPLETIONS = ["17", "16", "0", "170", "-3", "-", "", "1-2", "--1", "12a", "99999", "7 ", "017", "-0"]


def test_device_equals_host():
    answers = ["17", "17", "0", "17", "2", "5", "5", "5", "5", "12", "99998", "7", "17", "0"]
    width = 7
    response, valid = encode_answers(TOK, COMPLETIONS, width)
    response[0, 3:] = TOK.encode("99", eos=True) + [0]  # masked tokens after the first EOS are not read
    valid[0, 3:6] = True
    answer, answer_valid = encode_answers(TOK, answers, 6)
    got = closeness_reward(TOK)(jnp.asarray(response), jnp.asarray(valid, jnp.float32), jnp.asarray(answer),
                                jnp.asarray(answer_valid))
    want = [closeness(c, a) for c, a in zip(COMPLETIONS, answers)]
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6)  # float32 of exact rationals


def test_a_response_cut_without_eos_is_read_to_its_end():
    response, valid = encode_answers(TOK, ["123"], 4)
    valid[0, 3] = False  # the EOS column is not part of the response: cut at the budget
    answer, answer_valid = encode_answers(TOK, ["120"], 4)
    got = closeness_reward(TOK)(jnp.asarray(response), jnp.asarray(valid), jnp.asarray(answer), jnp.asarray(answer_valid))
    np.testing.assert_allclose(np.asarray(got), [0.25], rtol=1e-6)
