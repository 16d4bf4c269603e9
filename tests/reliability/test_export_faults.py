"""Exports: a path that cannot be written is one clear error; CSV never carries a live formula."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from llm_energy_widget.errors import InvalidInputError
from llm_energy_widget.exports import csv_safe_text
from llm_energy_widget.testing import synthetic_run

FORMULAS = ["=1+1", "+SUM(A1)", "-2+3", "@cmd", "\tx", "\rx", '=HYPERLINK("http://x","y")']


def test_token_text_that_a_spreadsheet_would_run_is_quoted_in_csv_only(tmp_path: Path) -> None:
    run = synthetic_run(n_tokens=len(FORMULAS) + 1, n_layers=1, texts=[" ok", *FORMULAS])
    run.to_csv(tmp_path)
    texts = pd.read_csv(tmp_path / "tokens.csv", keep_default_na=False)["text"].tolist()
    assert texts[0] == " ok"
    assert texts[1:] == ["'" + f for f in FORMULAS]
    # the run itself and its JSON keep the model's text as it was
    assert [t["text"] for t in run.tokens()][1:] == FORMULAS
    assert [t["text"] for t in run.to_dict()["tokens"]][1:] == FORMULAS


@pytest.mark.parametrize(("value", "expected"), [("a=b", "a=b"), (" =x", " =x"), (3, 3), ("", "")])
def test_harmless_cells_are_left_alone(value: object, expected: object) -> None:
    assert csv_safe_text(value) == expected


@pytest.mark.parametrize("export", ["to_json", "to_csv", "to_chrome_trace"])
def test_an_unwritable_path_is_one_clear_error(export: str, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    target = blocker / "out"  # below a file: no OS lets that be created
    with pytest.raises(InvalidInputError, match=r"^cannot write \S*a-file\S*: [A-Z][a-z]+"):
        getattr(synthetic_run(n_tokens=2, n_layers=1), export)(target)
