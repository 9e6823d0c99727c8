"""docs/operators.md shows every argument of the run-outcome features in a Python example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

OPERATORS_DOC = Path(__file__).resolve().parents[1] / "docs" / "operators.md"
EXAMPLES = "\n".join(re.findall(r"```python\n(.*?)```", OPERATORS_DOC.read_text(), flags=re.DOTALL))


@pytest.mark.parametrize(
    "argument",
    [
        "max_failed_records=",
        "max_failed_ratio=",
        "diagnostics_rows=",
        "retrigger_failed=",
        "AEPRetriggerFlowRunOperator(",
        "run_id=",
        "AEPSetFlowStateOperator(",
        'state="disabled"',
        'state="enabled"',
        'if_exists="update"',
    ],
)
def test_each_new_argument_has_an_example(argument):
    assert argument in EXAMPLES
