"""Offline preference data (``polrl.tasks.preference_data``): JSONL and TFDS sources read back
exactly, and every bad row is a one-line error naming the source, the line, the field and the fix."""
import json

import numpy as np
import pytest
import tensorflow_datasets as tfds

from polrl.tasks import CharTokenizer, preference_data
from polrl.tasks.preference_data import Limits, as_examples, load_jsonl, load_tfds

LIMITS = Limits(CharTokenizer(), max_prompt_len=8, max_response_len=4)
PAIRED = [{"prompt": "1+2=", "chosen": "3", "rejected": "4"}, {"prompt": "9+9=", "chosen": "18", "rejected": "81"}]
UNPAIRED = [{"prompt": "1+2=", "completion": "3", "label": True}, {"prompt": "2+2=", "completion": "5", "label": False}]


def _write(tmp_path, rows, name="rows.jsonl"):
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


@pytest.mark.parametrize("rows", [PAIRED, UNPAIRED], ids=["paired", "unpaired"])
def test_jsonl_round_trip(tmp_path, rows):
    path = _write(tmp_path, rows[:1] + [""] + rows[1:])  # a blank line is skipped
    assert load_jsonl(path, LIMITS) == rows


def test_examples_carry_the_chosen_or_the_completion_as_answer():
    assert [e["answer"] for e in as_examples(PAIRED)] == ["3", "18"]
    assert [e["answer"] for e in as_examples(UNPAIRED)] == ["3", "5"]


OK_PAIR, OK_UNPAIRED = PAIRED[0], UNPAIRED[0]
# (case, bad row, what the message must say: the field and the fix)
BAD_ROWS = [
    ("missing prompt (paired)", {"chosen": "3", "rejected": "4"}, r"field 'prompt' is missing; a paired row needs prompt, chosen, rejected"),
    ("missing chosen", {"prompt": "1+2=", "rejected": "4"}, r"field 'chosen' is missing"),
    ("missing rejected", {"prompt": "1+2=", "chosen": "3"}, r"field 'rejected' is missing"),
    ("missing prompt (unpaired)", {"completion": "3", "label": True}, r"field 'prompt' is missing; an unpaired row needs prompt, completion, label"),
    ("missing completion", {"prompt": "1+2=", "label": True}, r"field 'completion' is missing"),
    ("missing label", {"prompt": "1+2=", "completion": "3"}, r"field 'label' is missing"),
    ("prompt not a string", {**OK_PAIR, "prompt": 12}, r"field 'prompt' is int 12, expected a string; write the text in quotes"),
    ("chosen not a string", {**OK_PAIR, "chosen": 3}, r"field 'chosen' is int 3, expected a string"),
    ("rejected not a string", {**OK_PAIR, "rejected": None}, r"field 'rejected' is NoneType None, expected a string"),
    ("completion not a string", {**OK_UNPAIRED, "completion": ["3"]}, r"field 'completion' is list \['3'\], expected a string"),
    ("label not a bool", {**OK_UNPAIRED, "label": 1}, r"field 'label' is int 1, expected a bool; write true \(desirable\) or false"),
    ("label a string", {**OK_UNPAIRED, "label": "yes"}, r"field 'label' is str 'yes', expected a bool"),
    ("empty prompt", {**OK_PAIR, "prompt": ""}, r"field 'prompt' is empty; give it text or drop the row"),
    ("empty chosen", {**OK_PAIR, "chosen": " "}, r"field 'chosen' is empty"),
    ("empty rejected", {**OK_PAIR, "rejected": ""}, r"field 'rejected' is empty"),
    ("empty completion", {**OK_UNPAIRED, "completion": ""}, r"field 'completion' is empty"),
    ("mixed schemas", {**OK_PAIR, "label": True}, r"the row mixes paired fields \['chosen', 'rejected'\] with unpaired fields \['label'\]; write either"),
    ("prompt too long", {**OK_PAIR, "prompt": "11+22+33="}, r"field 'prompt' is 10 tokens with BOS, longer than the 8 the model sees in this run \(the task's max_prompt_len\); shorten it"),
    ("chosen too long", {**OK_PAIR, "chosen": "1234"}, r"field 'chosen' is 5 tokens with EOS, longer than the 4 .*max_answer_len"),
    ("rejected too long", {**OK_PAIR, "rejected": "12345"}, r"field 'rejected' is 6 tokens with EOS"),
    ("completion too long", {**OK_UNPAIRED, "completion": "1234"}, r"field 'completion' is 5 tokens with EOS"),
    ("prompt not encodable", {**OK_PAIR, "prompt": "1+2=€"}, r"field 'prompt' has the character '€', which the tokenizer cannot encode; remove it"),
    ("chosen not encodable", {**OK_PAIR, "chosen": "3A"}, r"field 'chosen' has the character 'A'"),
    ("rejected not encodable", {**OK_PAIR, "rejected": "\t4"}, r"field 'rejected' has the character '\\t'"),
    ("completion not encodable", {**OK_UNPAIRED, "completion": "é"}, r"field 'completion' has the character 'é'"),
    ("not an object", [1, 2], r"expected a JSON object with prompt/chosen/rejected or prompt/completion/label, got list"),
    ("not JSON", '{"prompt": "1+2=", "chosen": "3",}', r"not valid JSON \(.*\); write one JSON object per line"),
]


@pytest.mark.parametrize("case,row,message", BAD_ROWS, ids=[c[0] for c in BAD_ROWS])
def test_a_bad_row_names_file_line_field_and_fix(tmp_path, case, row, message):
    first = OK_UNPAIRED if "unpaired" in case or "completion" in case or "label" in case else OK_PAIR
    path = _write(tmp_path, [first, "", row])
    with pytest.raises(ValueError, match=message) as e:
        load_jsonl(path, LIMITS)
    assert str(e.value).startswith(f"{path}: line 3: ")
    assert "\n" not in str(e.value)


def test_one_schema_per_file(tmp_path):
    path = _write(tmp_path, [OK_PAIR, OK_UNPAIRED])
    with pytest.raises(ValueError, match=r"line 2: an unpaired row in a source of paired rows; keep one schema"):
        load_jsonl(path, LIMITS)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(ValueError, match=r"nope.jsonl: cannot read the preference file .*; check pairs.path"):
        load_jsonl(str(tmp_path / "nope.jsonl"), LIMITS)
    with pytest.raises(ValueError, match=r"empty.jsonl: no rows; give at least one preference row"):
        load_jsonl(_write(tmp_path, [""], "empty.jsonl"), LIMITS)


# ----------------------------------------------------------------------------- TFDS


class MockPreferencePairs(tfds.core.GeneratorBasedBuilder):
    """A paired-preference dataset's features (never generated: the tests mock its data source)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        text = tfds.features.Text()
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
            {"prompt": text, "chosen": text, "rejected": text}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        yield from ()


class MockPreferenceLabels(MockPreferencePairs):
    """An unpaired (KTO) dataset's features."""

    def _info(self):
        text = tfds.features.Text()
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
            {"prompt": text, "completion": text, "label": tfds.features.Scalar(dtype=np.bool_)}))


def _as_stored(rows):
    """Rows as a TFDS data source returns them: text as UTF-8 bytes, the label a numpy bool."""
    return [{k: v.encode() if isinstance(v, str) else np.bool_(v) for k, v in r.items()} for r in rows]


@pytest.mark.parametrize("name,rows", [("mock_preference_pairs", PAIRED), ("mock_preference_labels", UNPAIRED)])
def test_tfds_source_reads_the_rows(name, rows):
    splits = []

    def source(builder, split, **kwargs):
        splits.append((builder.name, split))
        return _as_stored(rows)

    with tfds.testing.mock_data(as_data_source_fn=source):
        assert load_tfds(name, "test", LIMITS) == rows
    assert splits == [(name, "test")]


def test_tfds_mock_generator_rows_are_checked():
    """TFDS's own mock examples (random text) come back as the data source holds them."""
    with tfds.testing.mock_data(num_examples=3):
        stored = tfds.data_source("mock_preference_labels", split="train")
        expected = [{k: (bool(v) if k == "label" else v) for k, v in stored[i].items()} for i in range(3)]
        wide = Limits(CharTokenizer(), max_prompt_len=64, max_response_len=64)
        assert load_tfds("mock_preference_labels", "train", wide) == [
            {k: e[k] for k in preference_data.UNPAIRED} for e in expected]


def test_tfds_bad_example_names_the_dataset_and_index():
    rows = _as_stored(PAIRED) + [{"prompt": b"1+1=", "chosen": b"", "rejected": b"3"}]
    with tfds.testing.mock_data(as_data_source_fn=lambda builder, split, **kw: rows):
        with pytest.raises(ValueError, match=r"^tfds:mock_preference_pairs\[train\]: example 2: field 'chosen' is empty"):
            load_tfds("mock_preference_pairs", "train", LIMITS)
