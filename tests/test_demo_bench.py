"""`demo` and `bench` keep a finished row only when it was made under the current settings (issue #19), the chapters
print their claims about the recorded reports from the records, and the README claims only what is true."""
import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import efficient_video.bench as bench
import efficient_video.demo as demo

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT/'benchmarks'/'results'
EXE = shutil.which('efficient-video') or str(Path(sys.executable).parent/'efficient-video')


@pytest.fixture
def calls(monkeypatch):
    "Training replaced by a stub that records `(run folder, epochs, device, seed)` of every run it is asked for."
    seen = []
    def fake_train_and_test(cfg, trains=True):
        seen.append((Path(cfg.output_dir).name, cfg.epochs, cfg.device, cfg.seed))
        return {'top1': 0.25, 'opposite_direction_acc': 0.5}, 7, 1.0
    monkeypatch.setattr(demo, 'train_and_test', fake_train_and_test)
    monkeypatch.setattr(bench, 'train_and_test', fake_train_and_test)
    monkeypatch.setattr(demo, 'profile_method', lambda *a, **k: {'gflops_per_view': 1.0})
    return seen


def test_demo_retrains_a_row_made_with_other_epochs_or_device(tmp_path, calls):
    out, logs = tmp_path/'demo', []
    demo.run_demo(out, rows=['aim'], epochs=1, device='cpu', log=logs.append)
    demo.run_demo(out, rows=['aim'], epochs=1, device='cpu', log=logs.append)
    assert calls == [('aim', 1, 'cpu', 0)], calls                       # the same settings: kept
    r = demo.run_demo(out, rows=['aim'], epochs=2, device='cpu', log=logs.append)
    assert calls[-1] == ('aim', 2, 'cpu', 0) and r['methods']['aim']['preset_epochs'] == 2, calls
    assert any('epochs: 1 → 2' in line and 'training it again' in line for line in logs), logs
    r = demo.run_demo(out, rows=['aim'], epochs=2, device='cuda', log=logs.append)
    assert calls[-1] == ('aim', 2, 'cuda', 0) and r['device'] == 'cuda', calls
    assert 'device: "cpu" → "cuda"' in logs[-3], logs


def test_demo_row_without_a_key_is_retrained(tmp_path, calls):
    "A row.json written before rows carried their key (the committed report's rows look like that) is not trusted."
    old = json.loads((RESULTS/'demo.json').read_text())['methods']['aim']
    (tmp_path/'aim').mkdir(); (tmp_path/'aim'/'row.json').write_text(json.dumps(old))
    logs = []
    r = demo.run_demo(tmp_path, rows=['aim'], epochs=old['preset_epochs'], log=logs.append)
    assert len(calls) == 1 and r['methods']['aim']['top1'] == 0.25, (calls, r)
    assert 'older version' in logs[0], logs
    assert 'key' in json.loads((tmp_path/'aim'/'row.json').read_text())


def test_demo_retrains_when_the_data_or_weights_change(tmp_path, calls, monkeypatch):
    "The same lists and weights elsewhere keep the row; one changed label, or changed weights, retrain it."
    cfg0, _ = demo.demo_config('aim', tmp_path)
    data = tmp_path/'data'; data.mkdir()
    for name in ('train_list', 'val_list', 'test_list', 'class_names'):
        (data/Path(getattr(cfg0, name)).name).write_bytes(Path(getattr(cfg0, name)).read_bytes())
    weights = data/'weights.safetensors'; weights.write_bytes(Path(cfg0.pretrained).read_bytes())
    real = demo.demo_config
    def on_copies(row, out, epochs=demo.DEMO_EPOCHS, device=None):
        cfg, zs = real(row, out, epochs, device)
        return demo.override(cfg, video_root=str(Path(cfg0.train_list).parent), pretrained=str(weights),
                             **{n: str(data/Path(getattr(cfg, n)).name) for n in ('train_list', 'val_list', 'test_list', 'class_names')}), zs
    monkeypatch.setattr(demo, 'demo_config', on_copies)
    out, logs = tmp_path/'demo', []
    demo.run_demo(out, rows=['aim'], epochs=1, log=logs.append)
    demo.run_demo(out, rows=['aim'], epochs=1, log=logs.append)
    assert len(calls) == 1, calls
    lines = (data/'train.txt').read_text().splitlines()
    path, label = lines[0].rsplit(maxsplit=1)
    (data/'train.txt').write_text('\n'.join([f'{path} {(int(label) + 1) % 40}'] + lines[1:]) + '\n')
    demo.run_demo(out, rows=['aim'], epochs=1, log=logs.append)
    assert len(calls) == 2 and 'train_list: ' in logs[-3], logs
    blob = bytearray(weights.read_bytes()); blob[-1] ^= 1; weights.write_bytes(bytes(blob))
    demo.run_demo(out, rows=['aim'], epochs=1, log=logs.append)
    assert len(calls) == 3 and 'pretrained: ' in logs[-3], logs


def test_bench_run_retrains_a_run_made_with_other_settings(tmp_path, calls):
    logs = []
    bench.bench_run('aim', tmp_path, seed=0, epochs=1, device='cpu', log=logs.append)
    bench.bench_run('aim', tmp_path, seed=0, epochs=1, device='cpu', log=logs.append)
    assert calls == [('seed0-all', 1, 'cpu', 0)], calls
    bench.bench_run('aim', tmp_path, seed=0, epochs=2, device='cpu', log=logs.append)
    bench.bench_run('aim', tmp_path, seed=0, epochs=2, device='cuda', log=logs.append)
    assert calls[1:] == [('seed0-all', 2, 'cpu', 0), ('seed0-all', 2, 'cuda', 0)], calls
    assert 'epochs: 1 → 2' in logs[0] and 'device: "cpu" → "cuda"' in logs[1], logs
    # a run of another seed in this seed's folder (copied, or left by an older layout) is not this seed's run
    bench.bench_run('aim', tmp_path, seed=1, epochs=2, device='cuda', log=logs.append)
    seed0 = tmp_path/'aim'/'seed0-all'/'run.json'
    seed0.write_text((tmp_path/'aim'/'seed1-all'/'run.json').read_text())
    r = bench.bench_run('aim', tmp_path, seed=0, epochs=2, device='cuda', log=logs.append)
    assert calls[-1] == ('seed0-all', 2, 'cuda', 0) and r['seed'] == 0 and 'seed: 1 → 0' in logs[-1], logs
    assert 'key' not in r                                               # the report carries the numbers, not the key


def test_bench_report_keeps_only_current_runs(tmp_path, calls):
    "run_motion_bench with other epochs: the image-tower rows run again, the frame average (its own epochs) is kept."
    kw = dict(rows=['frame-average', 'aim'], seeds=(0,), shots=(2,), device='cpu', log=lambda *a: None)
    bench.run_motion_bench(tmp_path, epochs=1, **kw)
    n = len(calls)
    r = bench.run_motion_bench(tmp_path, epochs=3, **kw)
    assert sorted(calls[n:]) == [('seed0-all', 3, 'cpu', 0), ('seed0-k2', 3, 'cpu', 0)], calls[n:]
    assert {x['epochs'] for x in r['runs'] if x['row'] == 'aim'} == {3} and r['device'] == 'cpu'


def test_cli_demo_retests_an_old_row_then_keeps_it(tmp_path):
    "End to end, real: the zero-shot row (tested, not trained) with a keyless row.json is measured again, then kept."
    out = tmp_path/'demo'; (out/'zero-shot').mkdir(parents=True)
    (out/'zero-shot'/'row.json').write_text(json.dumps({'top1': 0.999, 'opposite_direction_acc': 0.999,
                                                         'zero_shot_top1': 0.999, 'params_trainable': 0,
                                                         'gflops_per_view': 0.1, 'gflops_per_view_vitb16': 140.0,
                                                         'seconds': 0.0, 'method': 'efficient-prompt'}))
    env = {**os.environ, 'HF_HUB_OFFLINE': '1'}
    cmd = [EXE, 'demo', '--methods', 'zero-shot', '--out', str(out), '--json']
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert first.returncode == 0, first.stderr
    assert 'older version' in first.stderr and 'training it again' in first.stderr, first.stderr
    assert json.loads(first.stdout)['methods']['zero-shot']['top1'] != 0.999
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert again.returncode == 0 and 'kept from' in again.stderr, again.stderr
    assert json.loads(again.stdout)['methods'] == json.loads(first.stdout)['methods']


def test_committed_records_still_display():
    "The committed reports (made before rows carried keys) load and format: a report is a record, not a cache."
    d = json.loads((RESULTS/'demo.json').read_text())
    assert demo.format_demo(d).count('\n') == len(d['methods']) + 1
    assert 'frame order' in demo.describe_demo(d)
    b = json.loads((RESULTS/'bench.json').read_text())
    assert 'K = 2' in bench.format_bench(b)
    assert 'Frame order' in bench.describe_motion(b['motion']) and 'GFLOP' in bench.describe_reference(b['reference']['cpu'])


def _motion(**std):
    "The committed motion record, with the top-1 standard deviations of some rows replaced."
    m = json.loads((RESULTS/'bench.json').read_text())['motion']
    for row, s in std.items(): m['methods'][row]['top1']['std'] = s
    return m


def test_describe_motion_follows_the_record():
    "The chapter's reading of the benchmark is printed from the record: change the record and the text changes."
    rows = list(_motion()['methods'])
    wide = [r for r in rows if r != 'zero-shot']
    a, b = wide[0], wide[1]
    assert f"{a} varies most with the seed" in bench.describe_motion(_motion(**{a: 0.9}))
    assert f"{b} varies most with the seed" in bench.describe_motion(_motion(**{b: 0.9}))
    m = _motion()
    tt, ep = m['methods']['temporal-transformer'], m['methods']['efficient-prompt']
    tt['zero_shot_top1']['mean'], ep['zero_shot_top1']['mean'] = 0.1, 0.9
    text = bench.describe_motion(m)
    zs = next(line for line in text.splitlines() if 'Zero-shot' in line)
    assert zs.index('efficient-prompt') < zs.index('temporal-transformer') and 'less well' not in zs, zs


def test_describe_demo_follows_the_record():
    d = json.loads((RESULTS/'demo.json').read_text())
    d['methods']['vpt']['opposite_direction_acc'] = 0.97
    text = demo.describe_demo(d)
    timed = text.split('At 90% or more')[1].split('.')[0]
    assert 'vpt' in timed, text
    d['methods']['vpt']['gflops_per_view_vitb16'] = 1.0
    assert 'is vpt (1.0 GFLOPs' in demo.describe_demo(d)


def _code_cells(nb):
    return [''.join(c['source']) for c in json.loads((ROOT/'nbs'/nb).read_text())['cells'] if c['cell_type'] == 'code']


@pytest.mark.parametrize('nb', ['16_demo.ipynb', '17_bench.ipynb'])
def test_chapters_do_not_assert_the_record(nb):
    "No fast cell asserts on the recorded report (`recorded`): claims about it are printed from it instead."
    bad = []
    for src in _code_cells(nb):
        if src.startswith(('#| slow', '#| cuda', '#| export')) or 'recorded' not in src: continue
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.Assert) or (isinstance(node, ast.Call) and getattr(node.func, 'id', '').startswith('test_')):
                bad.append(ast.get_source_segment(src, node)[:80])
    assert not bad, f"{nb}: assertions on the recorded report: {bad}"


@pytest.mark.parametrize('nb', ['16_demo.ipynb', '17_bench.ipynb'])
def test_code_cells_fit_a_screen(nb):
    "Every code cell is at most 40 lines (issue #21): a long one is split, with prose between, or calls functions."
    long = [(i, n) for i, src in enumerate(_code_cells(nb)) if (n := len(src.splitlines())) > 40]
    assert not long, f"{nb}: code cells over 40 lines (index among code cells, lines): {long}"


def test_record_keeping_and_figures_live_once():
    "Keeping or redoing a finished run, and the figures' set-up and bars, are written once (demo) and used by bench."
    src = [Path(m.__file__).read_text() for m in (demo, bench)]
    for phrase in ("run the same command again", "{why}: training it again", "matplotlib.use('Agg')", "'#4c72b0'"):
        assert sum(s.count(phrase) for s in src) == 1, phrase


def test_readme_claims_what_is_true():
    "The README names the demo's rows and the full-scale presets as the code has them, one for each dataset format."
    from efficient_video.methods import list_presets, get_preset
    from efficient_video.config import DATA_FORMATS
    readme = (ROOT/'README.md').read_text()
    assert 'every method of the book' not in readme
    full = [p for p in list_presets() if get_preset(p).get('pretrained') == 'openai']
    assert full and all(p in readme for p in full), full
    formats = {get_preset(p)['data_format'] for p in full}
    assert formats == set(DATA_FORMATS[1:]), f'no full-scale preset for {set(DATA_FORMATS[1:]) - formats}'
    assert all(row in readme for row in demo.DEMO_ROWS), demo.DEMO_ROWS
