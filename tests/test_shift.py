"""The motion benchmark's distribution-shift split through the engine: `train` tests it beside the test split and
writes `shift.json`, `eval --split shift` reproduces it from the run folder, and a config without a shift list is
refused with the field to set. The frame average is the benchmark's control there too: its twins are exact time
reversals, so it stays at 50% between opposite directions."""
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from efficient_video.checkpoints import find_checkpoint
from efficient_video.config import ConfigError
from efficient_video.samples import samples_dir, BACKGROUND_PHOTOS, SPRITE_SCALE, MOTION_SIZE
from efficient_video.train import load_config, train, evaluate

EXE = shutil.which('efficient-video') or str(Path(sys.executable).parent/'efficient-video')


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    "A frame-average run of the motion preset (its shift list included), one epoch on cached features."
    d = tmp_path_factory.mktemp('shift')
    cfg = load_config('frame-average-tiny', output_dir=str(d/'run'), feature_cache=str(d/'cache'), epochs=1,
                      val_list=None)
    return d, train(cfg)


def test_train_tests_the_shift_split_beside_the_test(run):
    d, res = run
    assert {'test', 'shift'} <= set(res), res.keys()
    assert (d/'run'/'shift.json').is_file() and (d/'run'/'shift_confusion.png').is_file()
    kinds = [json.loads(line)['kind'] for line in (d/'run'/'metrics.jsonl').read_text().splitlines()]
    assert kinds[-2:] == ['test', 'shift'], kinds
    assert abs(res['shift']['opposite_direction_acc'] - 0.5) <= 0.03, res['shift']   # order-blind: the control
    assert res['shift']['top1'] != res['test']['top1']                                 # another list was tested


def test_eval_split_shift_reproduces_the_run(run, tmp_path):
    d, res = run
    ev = evaluate(d/'run', 'shift', out=tmp_path)
    assert ev['split'] == 'shift' and ev['top1'] == res['shift']['top1'], (ev, res['shift'])
    assert (tmp_path/'shift.json').is_file()
    p = subprocess.run([EXE, 'eval', '--checkpoint', str(d/'run'), '--split', 'shift', '--out', str(tmp_path/'cli'),
                        '--json'], capture_output=True, text=True, env={**os.environ, 'HF_HUB_OFFLINE': '1'})
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads(p.stdout)['top1'] == res['shift']['top1']


def test_a_run_without_a_shift_list_is_refused_naming_the_field(run, tmp_path):
    d, _ = run
    cfg = json.loads((find_checkpoint(d/'run')/'config.json').read_text())
    assert cfg['shift_list'].endswith('motion/shift.txt')
    with pytest.raises(ConfigError, match='names no shift_list: pass shift_list=FILE'):
        evaluate(d/'run', 'shift', overrides=['shift_list=None'], out=tmp_path)


def test_the_shift_split_shares_no_factor_with_training():
    "Held-out backgrounds, test garments, other sprite sides; twins adjacent; every class five times."
    with open(samples_dir()/'motion'/'shift.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 200
    assert not {r['background'] for r in rows} & set(BACKGROUND_PHOTOS)
    assert round(SPRITE_SCALE * MOTION_SIZE) not in {int(r['side']) for r in rows}
    with open(samples_dir()/'motion'/'motion.csv', newline='') as f:
        train_backgrounds = {r['background'] for r in csv.DictReader(f)}
    assert not {r['background'] for r in rows} & train_backgrounds
    assert all(a['pair'] == b['pair'] and a['direction'] != b['direction'] for a, b in zip(rows[::2], rows[1::2]))
