"""The committed notebooks: executed top to bottom in one kernel, at the profile their first cell names, and only
profile-independent cells left for nbval to compare (reads the .ipynb JSON only; nothing is executed here)."""
import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
IGNORE_TAG = "nbval-ignore-output"
# a compared cell must not read the profile, the result files or the code's version
PROFILE_DEPENDENT = re.compile(r"\bPROFILE\b|REPRO_PROFILE|\bRESULTS\b|\bresults\b|load_runs|\bRUNS\b|git_state")
# float round-off printed as a value (3.10e-08, 8.326672684688674e-17) differs between machines; a bound ("< 1e-10")
# or a rounded value does not
RAW_SMALL_FLOAT = re.compile(r"\d\.\d+e-(0[7-9]|[1-9]\d)")


def source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def code_cells(nb):
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def execution_problems(nb):
    """What keeps nb from being one top-to-bottom run in one kernel: unexecuted code cells, counts not 1..N."""
    counts = [c.get("execution_count") for c in code_cells(nb)]
    problems = [f"code cell {i + 1} of {len(counts)} has no execution_count" for i, n in enumerate(counts) if n is None]
    if not problems and counts != list(range(1, len(counts) + 1)):
        problems.append(f"execution counts {counts} are not 1..{len(counts)} in order")
    return problems


def compared(cell):
    """True when nbval (plain --nbval) compares this cell's output."""
    tags = cell.get("metadata", {}).get("tags", [])
    return IGNORE_TAG not in tags and "# NBVAL_IGNORE_OUTPUT" not in source(cell)


def output_text(cell):
    out = []
    for o in cell.get("outputs", []):
        text = o.get("text") or "".join("".join(v) if isinstance(v, list) else str(v)
                                        for k, v in o.get("data", {}).items() if k.startswith("text/"))
        out.append("".join(text) if isinstance(text, list) else text)
    return "".join(out)


def test_execution_check_catches_bad_notebooks():
    cell = lambda n: {"cell_type": "code", "execution_count": n, "source": "", "outputs": []}
    md = {"cell_type": "markdown", "source": "text"}
    assert execution_problems({"cells": [md, cell(1), md, cell(2), cell(3)]}) == []
    assert execution_problems({"cells": [cell(1), cell(None), cell(3)]})      # an unexecuted cell
    assert execution_problems({"cells": [cell(1), cell(3), cell(4)]})         # a gap: a cell was run twice or removed
    assert execution_problems({"cells": [cell(2), cell(1)]})                  # out of order
    assert execution_problems({"cells": [cell(2), cell(3)]})                  # not from a fresh kernel
    assert execution_problems({"cells": [cell(None), cell(None)]})            # never executed


def test_there_are_notebooks():
    assert {p.stem for p in NOTEBOOKS} >= {"decs", "dekm", "dcss", "saip", "rdc"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_executed_top_to_bottom_in_one_kernel(path):
    nb = json.loads(path.read_text())
    assert execution_problems(nb) == []
    errors = [i for i, c in enumerate(code_cells(nb)) if any(o["output_type"] == "error" for o in c.get("outputs", []))]
    assert not errors, f"code cells {errors} hold an error"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_executed_at_the_profile_its_first_cell_names(path):
    nb = json.loads(path.read_text())
    intro = source(nb["cells"][0])
    command = re.search(r"REPRO_PROFILE=(\w+) \S*jupyter nbconvert --to notebook --execute --inplace notebooks/"
                        + re.escape(path.name), intro)
    assert command, "the first cell must name the command that executes this notebook"
    first = output_text(code_cells(nb)[0])
    assert re.search(rf"^profile: {command.group(1)}\b", first, re.M), \
        f"the command names profile {command.group(1)!r}; the first code cell printed {first[:200]!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_compared_cells_do_not_depend_on_the_profile(path):
    nb = json.loads(path.read_text())
    cells = code_cells(nb)
    checked = [i for i, c in enumerate(cells) if compared(c)]
    assert checked, "nbval compares no cell of this notebook"
    assert not compared(cells[0]), "the first cell prints the profile and the commit: its output must be ignored"
    for i in checked:
        hit = PROFILE_DEPENDENT.search(source(cells[i]))
        assert not hit, f"code cell {i + 1} is compared by nbval but reads {hit.group(0)!r}: tag it {IGNORE_TAG}"
        noise = RAW_SMALL_FLOAT.search(output_text(cells[i]))
        assert not noise, f"code cell {i + 1} is compared by nbval but prints float round-off {noise.group(0)!r}"
