"""Faults of the frame-feature cache (`efficient_video.features`): a damaged cache (overwritten, truncated, deleted or
emptied files) is named and rebuilt, never trained on; NaN features are refused naming the clip; an unwritable cache
folder, an out-of-range label and a list that is not UTF-8 are each one line naming the folder or file and the fix.
Every fixture is made here from the shipped motion clips."""
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from efficient_video.features import FeatureDataset, extract_features, cache_dir
from efficient_video.samples import samples_dir
from efficient_video.video import SegmentSampler, VideoDataset, eval_transform, read_path_label_list

EXE = shutil.which("efficient-video") or str(Path(sys.executable).parent / "efficient-video")
MOTION = samples_dir() / "motion"
KEY = {'test': 'feature cache faults', 'frames': 4}


class Encoder:
    "A frozen 'image tower' that is fast and exact: the mean colour of every frame (B×T×C×H×W -> B×T×3); counts its calls."
    def __init__(self, nan_at: int | None = None):
        self.calls, self.nan_at = 0, nan_at
    def __call__(self, x):
        self.calls += 1
        f = x.mean((-1, -2))
        if self.nan_at is not None and self.calls == self.nan_at: f[-1, 0, 0] = float('nan')   # the batch's last clip
        return f


def motion_list(tmp_path: Path, n: int, name: str = 'train.txt') -> Path:
    p = tmp_path / name
    rows = (MOTION / 'train.txt').read_text().splitlines()[:n]
    p.write_text(''.join(f"{MOTION / r}\n" for r in rows))
    return p


def dataset(tmp_path: Path, n: int = 8) -> VideoDataset:
    return VideoDataset(read_path_label_list(motion_list(tmp_path, n)), SegmentSampler(4, train=False), eval_transform(32))


@pytest.fixture
def built(tmp_path):
    "A complete cache of 8 clips (batches of 3), its dataset and the arrays it holds."
    ds, root = dataset(tmp_path), tmp_path / 'cache'
    fd = extract_features(Encoder(), ds, KEY, root, batch_size=3)
    return ds, root, fd.folder, {k: np.array(getattr(fd, k)) for k in ('features', 'labels', 'valid')}


def _overwrite_half(value):
    def damage(folder):
        a = np.load(folder / 'features.npy', mmap_mode='r+')    # in place: same size, same header
        a[:len(a) // 2] = value
        a.flush(); del a
    return damage


def _truncate(name):
    def damage(folder):
        p = folder / name
        os.truncate(p, p.stat().st_size // 2)
    return damage


FAULTS = {   # fault -> (damage, the file the message must name)
    'features half NaN': (_overwrite_half(np.nan), 'features.npy'),
    'features half zeros': (_overwrite_half(0.0), 'features.npy'),
    'features truncated': (_truncate('features.npy'), 'features.npy'),
    'features deleted': (lambda f: (f / 'features.npy').unlink(), 'features.npy'),
    'labels deleted': (lambda f: (f / 'labels.npy').unlink(), 'labels.npy'),
    'valid emptied': (lambda f: (f / 'valid.npy').write_bytes(b''), 'valid.npy'),
    'paths truncated': (_truncate('paths.json'), 'paths.json'),
}


@pytest.mark.parametrize('fault', FAULTS)
def test_a_damaged_cache_is_named_then_rebuilt(built, fault):
    ds, root, folder, before = built
    damage, name = FAULTS[fault]
    damage(folder)
    with pytest.raises(ValueError) as ei:                   # opened as it is: refused, naming the folder and the file
        FeatureDataset(folder)
    msg = str(ei.value)
    assert '\n' not in msg and str(folder) in msg and name in msg and 'damaged' in msg, msg
    enc = Encoder()
    with pytest.warns(UserWarning, match='damaged') as w:   # through extract_features: rebuilt, with a warning
        again = extract_features(enc, ds, KEY, root, batch_size=3)
    assert any(str(folder) in str(x.message) and name in str(x.message) and 'rebuilt' in str(x.message) for x in w)
    assert enc.calls == 3                                    # every clip computed again (8 clips, batches of 3)
    for k, v in before.items(): np.testing.assert_array_equal(np.array(getattr(again, k)), v, err_msg=k)
    FeatureDataset(folder)                                   # and the rebuilt cache passes its own check


def test_an_intact_cache_is_reused_without_computing(built):
    ds, root, folder, before = built
    enc = Encoder()
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        again = extract_features(enc, ds, KEY, root, batch_size=3)
    assert enc.calls == 0
    np.testing.assert_array_equal(np.array(again.features), before['features'])


def test_the_manifest_lists_sizes_and_checksums(built):
    _, _, folder, _ = built
    files = json.loads((folder / 'complete').read_text())['files']
    for name in ('features.npy', 'labels.npy', 'valid.npy', 'paths.json', 'key.json'):
        assert files[name]['bytes'] == (folder / name).stat().st_size and len(files[name]['sha256']) == 64, name


def test_nan_features_are_refused_naming_the_clip_and_earlier_batches_kept(tmp_path):
    ds, root = dataset(tmp_path), tmp_path / 'cache'
    enc = Encoder(nan_at=2)                                  # the 2nd batch (clips 3..5): clip 5 gets a NaN
    with pytest.raises(ValueError) as ei:
        extract_features(enc, ds, KEY, root, batch_size=3)
    msg = str(ei.value)
    assert '\n' not in msg and str(ds.records[5].path) in msg and 'NaN' in msg and ds.records[5].source in msg, msg
    folder = cache_dir(KEY, root)
    assert not (folder / 'complete').exists()
    assert json.loads((folder / 'progress.json').read_text())['done'] == 3     # the first batch is kept
    enc = Encoder()
    fd = extract_features(enc, ds, KEY, root, batch_size=3)                    # continued from clip 3
    assert enc.calls == 2 and np.isfinite(np.array(fd.features)).all()


def test_a_damaged_partial_cache_starts_again(tmp_path):
    ds, root = dataset(tmp_path), tmp_path / 'cache'
    with pytest.raises(ValueError):
        extract_features(Encoder(nan_at=3), ds, KEY, root, batch_size=3)       # stops after 6 clips
    folder = cache_dir(KEY, root)
    (folder / 'labels.npy').write_bytes(b'')
    enc = Encoder()
    with pytest.warns(UserWarning, match='labels.npy'):
        fd = extract_features(enc, ds, KEY, root, batch_size=3)
    assert enc.calls == 3                                                      # from the start
    want = extract_features(Encoder(), ds, KEY, tmp_path / 'clean', batch_size=3)
    np.testing.assert_array_equal(np.array(fd.features), np.array(want.features))
    np.testing.assert_array_equal(fd.labels, want.labels)


# ---------------------------------------------------------------------------------------------------- the CLI
def cli(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([EXE, *args], capture_output=True, text=True, env=env, timeout=600)


def one_line_error(p) -> str:
    "Status 2 and one 'efficient-video CMD: error: ...' line, no traceback."
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    assert 'Traceback' not in p.stderr, p.stderr[-2000:]
    lines = [l for l in p.stderr.splitlines() if l.startswith('efficient-video')]
    assert len(lines) == 1, p.stderr[-2000:]
    return lines[0]


def split_args(tmp_path, train_list, cache=None):
    return [f"feature_cache={cache or tmp_path / 'cache'}", f"train_list={train_list}", "val_list=None", "test_list=None", "shift_list=None"]


def test_cli_train_on_a_cache_overwritten_with_nan_rebuilds_it(tmp_path):
    "Half of features.npy overwritten with NaN (same size): train used to reach loss=nan with exit 0."
    args = split_args(tmp_path, motion_list(tmp_path, 16))
    p = cli('extract-features', *args, '--json')
    assert p.returncode == 0, p.stderr[-2000:]
    folder = Path(json.loads(p.stdout)['train']['folder'])
    _overwrite_half(np.nan)(folder)
    p = cli('train', *args, f"output_dir={tmp_path / 'run'}", 'batch_size=8', 'epochs=1', '--json')
    assert p.returncode == 0, p.stderr[-2000:]
    assert 'damaged' in p.stderr and 'features.npy' in p.stderr and str(folder) in p.stderr, p.stderr[-2000:]
    assert np.isfinite(json.loads(p.stdout)['train_loss'])
    assert np.isfinite(np.load(folder / 'features.npy')).all()


def test_cli_emptied_valid_npy_is_rebuilt_not_a_traceback(tmp_path):
    args = split_args(tmp_path, motion_list(tmp_path, 8))
    p = cli('extract-features', *args, '--json')
    assert p.returncode == 0, p.stderr[-2000:]
    folder = Path(json.loads(p.stdout)['train']['folder'])
    (folder / 'valid.npy').write_bytes(b'')
    p = cli('extract-features', *args, '--json')
    assert p.returncode == 0 and 'Traceback' not in p.stderr, p.stderr[-2000:]
    assert 'valid.npy' in p.stderr and 'rebuilt' in p.stderr, p.stderr[-2000:]
    assert json.loads(p.stdout)['train']['videos'] == 8


def test_cli_unwritable_cache_folder_is_one_line(tmp_path):
    "A cache folder that cannot be created: named, with the fix (feature_cache=FOLDER), no traceback."
    blocker = tmp_path / 'a-file'
    blocker.write_text('not a folder')
    line = one_line_error(cli('extract-features', *split_args(tmp_path, motion_list(tmp_path, 4), blocker / 'c')))
    assert str(blocker / 'c') in line and 'feature_cache=' in line and 'not writable' in line, line


def test_unwritable_cache_folder_permission_denied(tmp_path, monkeypatch, capsys):
    "PermissionError (a read-only or foreign folder; simulated, since tests may run as root) is one line too."
    from efficient_video import cli as cli_module
    real = Path.mkdir
    def refuse(self, *a, **k):
        if 'ro-cache' in str(self): raise PermissionError(13, 'Permission denied', str(self))
        return real(self, *a, **k)
    monkeypatch.setattr(Path, 'mkdir', refuse)
    rc = cli_module.main(['extract-features', *split_args(tmp_path, motion_list(tmp_path, 4), tmp_path / 'ro-cache')])
    err = capsys.readouterr().err
    assert rc == 2 and 'Traceback' not in err, err[-2000:]
    line = [l for l in err.splitlines() if l.startswith('efficient-video')]
    assert len(line) == 1 and str(tmp_path / 'ro-cache') in line[0] and 'Permission denied' in line[0], err
    assert 'feature_cache=' in line[0] and 'permissions' in line[0], line


def test_cli_out_of_range_label_is_refused_before_caching(tmp_path):
    bad = tmp_path / 'bad.txt'
    rows = motion_list(tmp_path, 4).read_text().splitlines()
    rows[2] = rows[2].rsplit(' ', 1)[0] + ' 97'
    bad.write_text('\n'.join(rows) + '\n')
    line = one_line_error(cli('extract-features', *split_args(tmp_path, bad)))
    assert f"{bad}:3" in line and 'label 97' in line and 'num_classes' in line, line
    assert not list((tmp_path / 'cache').rglob('features.npy'))              # nothing was cached


def test_cli_list_that_is_not_utf8_is_named(tmp_path):
    latin = tmp_path / 'latin.txt'
    rows = motion_list(tmp_path, 4).read_text().splitlines()
    rows[1] = rows[1].replace('train/', 'tr\u00e9in/')
    latin.write_bytes(('\n'.join(rows) + '\n').encode('latin-1'))
    line = one_line_error(cli('extract-features', *split_args(tmp_path, latin)))
    assert f"{latin}:2" in line and 'not UTF-8' in line, line
