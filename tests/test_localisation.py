"""The retrieval and localisation chapters name only code that exists (the chapters' behaviour is tested by nbdev-test)."""
import ast
import builtins
import importlib
import json
import re
from pathlib import Path

import pytest

NBS = Path(__file__).resolve().parents[1] / "nbs"
CHAPTERS = {"12_retrieval.ipynb": "efficient_video.retrieval", "12a_localisation.ipynb": "efficient_video.localisation"}
FILE = re.compile(r"^[\w./-]+\.(py|m|json|jsonl|csv|txt|ipynb|png|mp4)$")     # a file named in the prose, not code


def defined_in_code_cells(cells) -> set:
    "Every name a code cell of the notebook defines, assigns, imports or takes as an argument."
    names = set()
    for c in cells:
        if c["cell_type"] != "code": continue
        src = "\n".join(l for l in "".join(c["source"]).splitlines() if not l.startswith("#|"))
        for n in ast.walk(ast.parse(src)):
            if isinstance(n, (ast.FunctionDef, ast.ClassDef)): names.add(n.name)
            elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store): names.add(n.id)
            elif isinstance(n, ast.alias): names.add((n.asname or n.name).split(".")[0])
            elif isinstance(n, ast.arg): names.add(n.arg)
    return names


def undefined_names(cells, module) -> list:
    "Code spans of the prose whose leading name (`name`, `name(...)`, `name.attr`, `name[...]`) exists nowhere."
    known = defined_in_code_cells(cells)
    bad = []
    for c in cells:
        if c["cell_type"] != "markdown": continue
        for span in re.findall(r"`([^`]+)`", "".join(c["source"])):
            m = re.match(r"^([A-Za-z_]\w*)(?:$|[.(\[])", span)
            if not m or FILE.match(span): continue
            name = m.group(1)
            if hasattr(module, name) or name in known or hasattr(builtins, name): continue
            try: importlib.import_module(name)
            except ImportError: bad.append(span)
    return bad


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_prose_names_real_code(chapter):
    cells = json.loads((NBS / chapter).read_text())["cells"]
    bad = undefined_names(cells, importlib.import_module(CHAPTERS[chapter]))
    assert not bad, f"{chapter}: the prose names {bad}, which no code defines; use the real names"


def test_the_check_catches_a_made_up_name():
    cells = [{"cell_type": "code", "source": ["x = 1\n"]},
             {"cell_type": "markdown", "source": ["`x`, `temporal_iou(a, b)`, `eval_detection.py` and `made_up(...)[i]`"]}]
    assert undefined_names(cells, importlib.import_module("efficient_video.localisation")) == ["made_up(...)[i]"]
