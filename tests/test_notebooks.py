"""House rules every notebook must keep (cheap static checks; the notebooks' behaviour is tested by nbdev-test)."""
import ast
import functools
import json
import re
import tempfile
from pathlib import Path

import pytest

NBS = Path(__file__).resolve().parents[1] / "nbs"
NOTEBOOKS = sorted(p for p in NBS.rglob("*.ipynb")
                   if not any(part.startswith(("_", ".")) for part in p.relative_to(NBS).parts))


def cells(nb):
    return json.loads(nb.read_text())["cells"]


def src(cell):
    return "".join(cell["source"])


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.relative_to(NBS).as_posix())
def test_front_matter(nb):
    first = src(cells(nb)[0]).splitlines()
    assert cells(nb)[0]["cell_type"] == "markdown" and first[0].startswith("# "), \
        f"{nb.name}: first cell must be '# Title'"
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
    assert (NBS.parent / "efficient_video" / f"{name}.py").exists(), \
        f"run nbdev-export: efficient_video/{name}.py is missing"


# --- figures: every figure a page shows has a caption and alt text, and is drawn at the size it is shown ---
MAX_FIG_WIDTH = 6.5   # inches: wider figures are shrunk to the page's column and their text becomes unreadable
MIN_FONT = 8          # points, at that size
# pyplot calls that start a figure (or draw into a new one), and matplotlib's `Figure(...)`
_STARTS_FIGURE = {"figure", "subplots", "subplot", "subplot_mosaic", "imshow", "matshow", "plot", "bar", "barh",
                  "scatter", "hist"}
_re_directive = re.compile(r"^#\|\s*([\w-]+)\s*:?\s*(.*?)\s*$")


def directives(s):
    "The leading `#| key: value` lines of a cell's source, as a dict (`#| export` -> {'export': ''})"
    res = {}
    for l in s.splitlines():
        m = _re_directive.match(l)
        if not m:
            break
        res[m.group(1)] = m.group(2)
    return res


def parse(s):
    "The cell's code as an AST (IPython magics and shell lines blanked), or None"
    try:
        return ast.parse("\n".join("" if l.lstrip().startswith(("%", "!")) else l for l in s.splitlines()))
    except SyntaxError:
        return None


def _walk_outside_defs(node):
    "The nodes under `node`, not descending into function or class bodies (what runs when the cell runs)"
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        yield child
        yield from _walk_outside_defs(child)


def _starts_figure(n):
    f = getattr(n, "func", None)
    return isinstance(n, ast.Call) and (
        (isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "plt"
         and f.attr in _STARTS_FIGURE) or (isinstance(f, ast.Name) and f.id == "Figure"))


def _defs(trees):
    "{name: FunctionDef} of the functions defined at any depth in `trees`"
    return {d.name: d for t in trees for d in ast.walk(t) if isinstance(d, (ast.FunctionDef, ast.AsyncFunctionDef))}


def _saves(call, fn):
    "Does `call` pass function `fn` its `path` argument (the figure is saved to a file and closed, not shown)?"
    names = [a.arg for a in fn.args.args]
    return "path" in names and (len(call.args) > names.index("path") or any(k.arg == "path" for k in call.keywords))


def _draws(nodes, drawing, defs):
    "Do `nodes` start a figure, call a function of `drawing` (unless to save it) or hand one to a caller (`interact`)?"
    for n in nodes:
        if _starts_figure(n):
            return True
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in drawing:
            if not _saves(n, defs[n.func.id]):
                return True
        elif isinstance(n, ast.Name) and n.id in drawing and isinstance(n.ctx, ast.Load):
            if not any(isinstance(c, ast.Call) and c.func is n for c in nodes):
                return True   # passed as an argument
    return False


def drawing_functions(library, local):
    """(names of the functions that draw a figure, all their defs): those of the `library` trees (the package, the
    notebook's exported cells) that start one themselves, and those of the `local` trees (the notebook's other cells)
    that do or call a drawing function"""
    lib, defs = _defs(library), _defs([*library, *local])
    drawing = {k for k, d in lib.items() if _draws(list(ast.walk(d)), set(), defs)}
    while True:
        more = {k for k, d in _defs(local).items() if k not in drawing and _draws(list(ast.walk(d)), drawing, defs)}
        if not more:
            return drawing, defs
        drawing |= more


@functools.lru_cache(None)
def _package_trees():
    return tuple(ast.parse(p.read_text()) for p in sorted((NBS.parent / "efficient_video").glob("*.py"))
                 if not p.name.startswith("_"))


def figure_cells(nb):
    """(index, source) of the code cells of `nb` that show a figure on the page: not exported, not hidden, and
    drawing one (directly or with a plotting function of the notebook or the package), unless they close it"""
    cs = [(i, src(c)) for i, c in enumerate(cells(nb)) if c["cell_type"] == "code"]
    trees = {i: parse(s) for i, s in cs}
    exported = {i for i, s in cs if {"export", "exports"} & set(directives(s))}
    drawing, defs = drawing_functions([*_package_trees(), *(t for i, t in trees.items() if t and i in exported)],
                                      [t for i, t in trees.items() if t and i not in exported])
    res = []
    for i, s in cs:
        d, t = directives(s), trees[i]
        if t is None or "export" in d or "exports" in d or "hide" in d or d.get("include") == "false" \
           or d.get("output") == "false":
            continue
        last = t.body[-1] if t.body else None
        closes = isinstance(last, ast.Expr) and isinstance(last.value, ast.Call) and \
            ast.unparse(last.value.func) == "plt.close"
        if not closes and _draws(list(_walk_outside_defs(t)), drawing, defs):
            res.append((i, s))
    return res


def test_figure_cells_are_found():
    "The detector itself: direct pyplot calls, notebook and package plotting functions, `interact`, saved figures"
    nb = {"cells": [{"cell_type": "code", "source": s} for s in (
        "#| export\ndef show(x):\n    plt.figure()\n    plt.plot(x)",
        "fig, ax = plt.subplots()",             # 1: draws
        "show([1, 2])",                          # 2: a notebook function that draws
        "interact(show, x=(1, 5))",              # 3: handed to interact, which calls it
        "plot_motion(m)",                        # 4: a package function that draws
        "plot_motion(m, out/'m.png')",           # saved to a file, not shown
        "def later():\n    plt.figure()",        # only defines
        "fig = plt.figure()\nplt.close(fig)",    # closed
        "#| hide\nplt.figure()",                 # not on the page
        "s = 'plt.figure()'",                    # a string
    )]}
    path = Path(tempfile.mkdtemp()) / "nb.ipynb"
    path.write_text(json.dumps(nb))
    assert [i for i, _ in figure_cells(path)] == [1, 2, 3, 4]


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.relative_to(NBS).as_posix())
def test_figures_have_caption_and_alt_text(nb):
    """The docs builder numbers every figure and reads `#| fig-cap:` (one line under it) and `#| fig-alt:` (what is
    drawn, for a reader who cannot see it); without them the page falls back to a code comment."""
    missing = [f"cell {i} ({s.splitlines()[0][:50]!r}): " + " and ".join(k for k in ("fig-cap", "fig-alt")
                                                                    if not directives(s).get(k))
               for i, s in figure_cells(nb) if not (directives(s).get("fig-cap") and directives(s).get("fig-alt"))]
    assert not missing, f"{nb.name}: figure cells without a caption or alt text: {missing}"


def _plotting_sources(nb):
    "The sources of `nb`'s figure cells and of the cells defining the notebook's functions they (transitively) call"
    cs = [src(c) for c in cells(nb) if c["cell_type"] == "code"]
    owner = {}
    for s in cs:
        t = parse(s)
        for name in _defs([t] if t else []):
            owner.setdefault(name, s)
    todo, seen = [s for _, s in figure_cells(nb)], set()
    while todo:
        s = todo.pop()
        if s in seen:
            continue
        seen.add(s)
        t = parse(s)
        called = {n.id for n in ast.walk(t) if isinstance(n, ast.Name)} if t else set()   # calls, and names handed on
        todo += [owner[c] for c in called if c in owner]
    return seen


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.relative_to(NBS).as_posix())
def test_figures_fit_the_page(nb):
    """No figure is wider than the page's column (`figsize=(W, H)` with W <= 6.5 in, anywhere in the notebook), and
    the text its figure cells and plotting functions draw is at least 8 pt"""
    wide = [m.group(0) for c in cells(nb) if c["cell_type"] == "code"
            for m in re.finditer(r"figsize\s*=\s*\(\s*([\d.]+)\s*,", src(c)) if float(m.group(1)) > MAX_FIG_WIDTH]
    assert not wide, f"{nb.name}: figures wider than {MAX_FIG_WIDTH} in: {wide}"
    sizes = (m for s in _plotting_sources(nb) for m in re.finditer(r"\b(?:fontsize|labelsize)\s*=\s*([\d.]+)", s))
    small = sorted({m.group(0) for m in sizes if float(m.group(1)) < MIN_FONT})
    assert not small, f"{nb.name}: text smaller than {MIN_FONT} pt in its figures: {small}"
