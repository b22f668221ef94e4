"""House rules every notebook must keep (cheap static checks; the notebooks' behaviour is tested by nbdev-test)."""
import ast
import json
from pathlib import Path

import pytest

NBS = Path(__file__).resolve().parents[1] / "nbs"
NOTEBOOKS = sorted(p for p in NBS.rglob("*.ipynb") if not any(part.startswith(("_", ".")) for part in p.relative_to(NBS).parts))


def cells(nb):
    return json.loads(nb.read_text())["cells"]


def src(cell):
    return "".join(cell["source"])


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.relative_to(NBS).as_posix())
def test_front_matter(nb):
    first = src(cells(nb)[0]).splitlines()
    assert cells(nb)[0]["cell_type"] == "markdown" and first[0].startswith("# "), f"{nb.name}: first cell must be '# Title'"
    assert any(l.startswith("> ") for l in first[1:]), f"{nb.name}: front matter needs a '> subtitle' line"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.relative_to(NBS).as_posix())
def test_imports_in_their_own_cells(nb):
    """nbdev's docs processing runs every cell that contains an import: mixed cells break the docs build."""
    bad = []
    for i, c in enumerate(cells(nb)):
        s = src(c)
        if c["cell_type"] != "code" or "#| export" in s or "#| exec_doc" in s or "eval: false" in s:
            continue
        try:
            tree = ast.parse("\n".join(l for l in s.splitlines() if not l.lstrip().startswith(("%", "!"))))
        except SyntaxError:
            continue
        has_import = any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in ast.walk(tree))
        only_imports = all(isinstance(t, (ast.Import, ast.ImportFrom)) for t in tree.body)
        if has_import and not only_imports:
            bad.append(i)
    assert not bad, f"{nb.name}: cells {bad} mix imports with other code; move the imports to an imports cell"


@pytest.mark.parametrize("nb", [p for p in NOTEBOOKS if p.parent == NBS and p.name[:2].isdigit()], ids=lambda p: p.name)
def test_exports_where_the_name_says(nb):
    """`nbs/NN_name.ipynb` exports `efficient_video/name.py` (notebook = module = reading order)."""
    exp = [src(c) for c in cells(nb) if "#| default_exp" in src(c)]
    assert exp, f"{nb.name} has no '#| default_exp'"
    name = exp[0].split("default_exp", 1)[1].split()[0]
    assert nb.stem.split("_", 1)[1] == name, f"{nb.name} exports {name}.py"
    assert (NBS.parent / "efficient_video" / f"{name}.py").exists(), f"run nbdev-export: efficient_video/{name}.py is missing"
