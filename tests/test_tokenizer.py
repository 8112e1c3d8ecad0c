"""CharTokenizer: table, round trips, special ids, errors."""
import numpy as np
import pytest

from polrl.tasks.tokenizer import DEFAULT_CHARS, CharTokenizer


def test_default_table_has_64_ids_with_specials_first():
    tok = CharTokenizer()
    assert tok.vocab_size == 64
    assert (tok.pad_id, tok.bos_id, tok.eos_id) == (0, 1, 2)
    assert tok.encode("0") == [3]
    assert tok.encode("9") == [12]
    assert tok.encode("+-*/=(),:? ") == list(range(13, 24))
    assert tok.encode("a") == [24]
    assert tok.encode("z") == [49]
    assert tok.encode("\n") == [63]


def test_round_trip_every_character():
    tok = CharTokenizer()
    text = DEFAULT_CHARS + "37+485=522"
    assert tok.decode(tok.encode(text)) == text
    ids = tok.encode(text, bos=True, eos=True)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    assert tok.decode(ids) == text


def test_decode_stops_at_first_eos_and_skips_pad_and_bos():
    tok = CharTokenizer()
    ids = [0, 0, 1] + tok.encode("12") + [0] + tok.encode("3") + [2] + tok.encode("99")
    assert tok.decode(ids) == "123"
    assert tok.decode(np.array([2, 5, 6])) == ""


def test_decode_batch_rows():
    tok = CharTokenizer()
    rows = np.array([tok.encode("12", eos=True) + [7], [1] + tok.encode("ab?")])
    assert tok.decode_batch(rows) == ["12", "ab?"]


def test_unknown_character_names_char_and_allowed_set():
    with pytest.raises(ValueError, match=r"'A'.*allowed characters"):
        CharTokenizer().encode("3A")


def test_decode_errors():
    tok = CharTokenizer()
    with pytest.raises(ValueError, match=r"id 64 is outside the vocabulary \[0, 64\)"):
        tok.decode([5, 64])
    with pytest.raises(ValueError, match="decode_batch"):
        tok.decode([[5]])
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        tok.decode_batch([5, 6])


def test_custom_table_and_duplicates():
    tok = CharTokenizer("ab")
    assert tok.vocab_size == 5
    assert tok.encode("ba", eos=True) == [4, 3, 2]
    with pytest.raises(ValueError, match=r"\['a'\] more than once"):
        CharTokenizer("aba")
