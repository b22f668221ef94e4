"""The chapters name only code that exists. Two checks, one test over the chapters with a symbol table:

* `table`: every name in the `code` column of the chapter's symbol table (each part of a dotted name too) is one the
  chapter's code defines or uses;
* `prose`: every code span of the chapter's Markdown (the symbol table included) starts with a name that the chapter's
  code defines, its module has, a builtin or an importable module (file names excepted).

`prose` cannot take the chapters whose prose names the attributes of `open_clip`'s objects (`encode_text`, `ln_final`);
`table` cannot take the retrieval chapter's table, which names the attributes of chapter 11's model that its own code
does not touch (`model.prompts.prompt_vectors`, `model.temporal`). Each chapter gets every check it passes: a name
made up in its prose or table fails its test. (The chapters' behaviour is tested by nbdev-test.)"""
import ast
import builtins
import importlib
import json
import re
from pathlib import Path

import pytest

NBS = Path(__file__).resolve().parents[1] / 'nbs'
CHECKS = {'10_prompt_learning.ipynb': ('table',), '11_temporal.ipynb': ('table',),
          '12_retrieval.ipynb': ('prose',), '12a_localisation.ipynb': ('table', 'prose')}
FILE = re.compile(r"^[\w./-]+\.(py|m|json|jsonl|csv|txt|ipynb|png|mp4)$")     # a file named in the prose, not code
SPAN = re.compile(r"`([^`]+)`")


def code_names(cells: list[dict]) -> tuple[set[str], set[str]]:
    """`(defined, known)`: the names the code cells define, assign, import or take as arguments; and those, every name
    and attribute the code uses, and the builtins."""
    defined, known = set(), set(dir(builtins))
    for c in cells:
        if c['cell_type'] != 'code':
            continue
        src = '\n'.join(l for l in ''.join(c['source']).splitlines() if not l.lstrip().startswith(('%', '!', '#|')))
        for n in ast.walk(ast.parse(src)):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined.add(n.name)
            elif isinstance(n, ast.Name):
                (defined if isinstance(n.ctx, ast.Store) else known).add(n.id)
            elif isinstance(n, ast.alias):
                defined.add((n.asname or n.name).split('.')[0])
            elif isinstance(n, ast.arg):
                defined.add(n.arg)
            elif isinstance(n, ast.Attribute):
                known.add(n.attr)
    return defined, defined | known


def table_names(cells: list[dict]) -> list[str]:
    "Every Python name in the `code` column of the first symbol table (`| symbol | meaning | code |`) of the Markdown."
    table = next((''.join(c['source']) for c in cells
                  if c['cell_type'] == 'markdown' and '| symbol |' in ''.join(c['source'])), None)
    if table is None:
        return []
    names = []
    for row in table.split('| symbol |', 1)[1].splitlines()[2:]:
        if not row.startswith('|'):
            break
        for span in SPAN.findall(row.rstrip(' |').rsplit('|', 1)[-1]):
            try:
                tree = ast.parse(span)
            except SyntaxError:                           # a shape such as `K×L×D`, not code
                continue
            names += [n.id if isinstance(n, ast.Name) else n.attr for n in ast.walk(tree)
                      if isinstance(n, (ast.Name, ast.Attribute))]
    return names


def unknown_in_table(cells: list[dict]) -> list[str]:
    "The names of the symbol table's `code` column that the chapter's code neither defines nor uses."
    names = table_names(cells)
    assert names, 'no symbol table found'
    known = code_names(cells)[1]
    return [n for n in names if n not in known]


def unknown_in_prose(cells: list[dict], module) -> list[str]:
    "Code spans of the prose whose leading name (`name`, `name(...)`, `name.attr`, `name[...]`) exists nowhere."
    defined = code_names(cells)[0]
    bad = []
    for c in cells:
        if c['cell_type'] != 'markdown':
            continue
        for span in SPAN.findall(''.join(c['source'])):
            m = re.match(r"^([A-Za-z_]\w*)(?:$|[.(\[])", span)
            if not m or FILE.match(span):
                continue
            name = m.group(1)
            if hasattr(module, name) or name in defined or hasattr(builtins, name):
                continue
            try:
                importlib.import_module(name)
            except ImportError:
                bad.append(span)
    return bad


def chapter_module(cells: list[dict]):
    "The module the notebook exports (its `#| default_exp`)."
    for c in cells:
        m = re.search(r"^#\|\s*default_exp\s+(\S+)", ''.join(c['source']), re.M)
        if m:
            return importlib.import_module(f'efficient_video.{m.group(1)}')
    raise AssertionError('no #| default_exp')


def unknown_names(cells: list[dict], checks: tuple[str, ...]) -> dict[str, list[str]]:
    "`{check: the names it finds unknown}` for the checks that find any."
    found = {}
    if 'table' in checks:
        found['table'] = unknown_in_table(cells)
    if 'prose' in checks:
        found['prose'] = unknown_in_prose(cells, chapter_module(cells))
    return {k: v for k, v in found.items() if v}


@pytest.mark.parametrize('chapter', CHECKS)
def test_chapter_names_real_code(chapter):
    cells = json.loads((NBS / chapter).read_text())['cells']
    bad = unknown_names(cells, CHECKS[chapter])
    assert not bad, f"{chapter} names {bad}, which no code defines (table: nor uses); use the real names"


def test_the_checks_catch_a_made_up_name():
    table = ('| symbol | meaning | code |\n|:--|:--|:--|\n| $x$ | a number | `x`, `K×L` |\n'
             '| $y$ | another | `made.up_attr(x)` |\n')
    cells = [{"cell_type": "code", "source": ["#| default_exp localisation\n", "x = made.real(1)\n"]},
             {"cell_type": "markdown", "source": [table]},
             {"cell_type": "markdown",
              "source": ["`x`, `temporal_iou(a, b)`, `eval_detection.py` and `made_up(...)[i]`"]}]
    assert unknown_names(cells, ('table', 'prose')) == {'table': ['up_attr'],
                                                        'prose': ['made.up_attr(x)', 'made_up(...)[i]']}
    assert unknown_names(cells[:2], ('table',)) == {'table': ['up_attr']}
