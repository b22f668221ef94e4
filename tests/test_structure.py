"""Notebook = module = reading order: a chapter imports only from the chapters before it, and every module that
registers a method is found through the `efficient_video.methods` entry points (cheap static checks)."""
import ast
import json
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS, PKG = ROOT / "nbs", ROOT / "efficient_video"


def chapters() -> dict[str, tuple[str, Path]]:
    "module name -> (the chapter's number prefix, e.g. '04', or '05a'; its notebook), from each `#| default_exp`."
    out = {}
    for nb in sorted(NBS.glob("[0-9]*.ipynb")):
        for cell in json.loads(nb.read_text())["cells"]:
            m = re.search(r"#\|\s*default_exp\s+(\S+)", "".join(cell["source"]))
            if m:
                out[m.group(1)] = (nb.name.split("_", 1)[0], nb)
                break
    return out


CHAPTERS = chapters()


def imported_modules(source: str, package_relative: bool = False) -> set[str]:
    "Names of `efficient_video` modules imported by `source` (absolute imports, and `.x` relative ones in the package)."
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and package_relative:          # from .engine import fit
                if node.module: found.add(node.module.split(".")[0])
                else: found.update(a.name for a in node.names)  # from . import engine
            elif node.module and node.module.startswith("efficient_video"):
                parts = node.module.split(".")
                if len(parts) > 1: found.add(parts[1])
                else: found.update(a.name for a in node.names)  # from efficient_video import engine
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == "efficient_video" and len(parts) > 1: found.add(parts[1])
    return found & set(CHAPTERS)


def test_chapters_are_found():
    assert {"core", "video", "engine", "methods", "train", "cli"} <= set(CHAPTERS)


@pytest.mark.parametrize("module", sorted(CHAPTERS))
def test_module_imports_only_earlier_chapters(module):
    "The exported module of chapter N imports the modules of chapters numbered below N, never N or later."
    number, _ = CHAPTERS[module]
    source = (PKG / f"{module}.py").read_text()
    later = {m: CHAPTERS[m][0] for m in imported_modules(source, package_relative=True)
             if m != module and CHAPTERS[m][0] >= number}
    assert not later, f"efficient_video/{module}.py (chapter {number}) imports later chapters {later}"


@pytest.mark.parametrize("module", sorted(CHAPTERS))
def test_notebook_cells_import_only_earlier_chapters(module):
    "No cell of a chapter, exported or not, imports a later chapter (its own module is fine)."
    number, nb = CHAPTERS[module]
    later = {}
    for cell in json.loads(nb.read_text())["cells"]:
        if cell["cell_type"] != "code": continue
        src = "\n".join(l for l in "".join(cell["source"]).splitlines() if not l.lstrip().startswith(("%", "!")))
        try: mods = imported_modules(src)
        except SyntaxError: continue
        later.update({m: CHAPTERS[m][0] for m in mods if m != module and CHAPTERS[m][0] > number})
    assert not later, f"{nb.name} imports later chapters {later}"


def test_the_check_fails_on_a_forward_import():
    "The checker itself: a module of chapter 04 importing chapter 09 is reported (so the tests above can fail)."
    src = "from efficient_video.train import load_config\nfrom .methods import get_method\n"
    found = imported_modules(src, package_relative=True)
    assert found == {"train", "methods"}
    assert CHAPTERS["train"][0] > CHAPTERS["engine"][0]


def test_every_registering_module_is_an_entry_point():
    "A module that calls `register_method` is listed under the 'efficient_video.methods' entry points."
    eps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["efficient_video.methods"]
    listed = {v.split(":")[0] for v in eps.values()}
    registering = {f"efficient_video.{p.stem}" for p in PKG.glob("*.py")
                   if re.search(r"^@register_method\(", p.read_text(), re.M)}
    assert registering, "no module registers a method?"
    assert registering <= listed, f"add to [project.entry-points.\"efficient_video.methods\"]: {registering - listed}"


def test_module_lines_fit_120_columns():
    "Every line of the package is at most 120 characters, except the first line of the `__all__` nbdev writes"
    long = []
    for py in sorted((ROOT / "efficient_video").glob('*.py')):
        if py.name == '_modidx.py':
            continue   # nbdev's index: one generated dict literal
        for n, line in enumerate(py.read_text(encoding='utf-8').splitlines(), 1):
            if len(line) > 120 and not line.startswith('__all__ = ['):
                long.append(f'{py.name}:{n} ({len(line)})')
    assert not long, f'lines over 120 characters: {long}'
