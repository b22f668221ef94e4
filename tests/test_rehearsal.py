"""Rehearsal data (`samples.write_rehearsal`, the CLI's `efficient-video samples --rehearsal DIR`): Kinetics-400,
Something-Something v2, UCF101 and HMDB51 in their real on-disk layouts, read by the package's own readers, decoded
by both backends, and sampled by the real presets exactly as the real downloads would be."""
import json
import os
import re
import time
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from efficient_video.samples import (REHEARSAL_FOLDERS, REHEARSAL_FORMATS, K400_CLASSES, K400_GOP, HMDB51_CLASSES,
                                     SSV2_CLASSES, UCF101_CLASSES, SamplesError, probe_video, sha256, write_rehearsal)
from efficient_video.video import decord, open_video, read_kinetics_csv, read_ssv2_json, read_ucf_hmdb_split
from efficient_video.data import build_dataset, check_split_labels
from efficient_video.train import load_config

VIDEO_SUFFIXES = ('.mp4', '.webm', '.avi')


@pytest.fixture(scope='module')
def rehearsal(tmp_path_factory):
    "All four sets, written once for the module: (folder, write_rehearsal's summary, rehearsal.json)."
    out = tmp_path_factory.mktemp('rehearsal')
    t0 = time.perf_counter()
    summary = write_rehearsal(out, seed=0)
    took = time.perf_counter() - t0
    print(f"\nwrite_rehearsal: {took:.1f} s in all; " + ', '.join(
        f"{f} {s['videos']} videos {s['bytes'] / 1e6:.1f} MB {s['seconds']:.1f} s" for f, s in summary['sets'].items()))
    return out, summary, json.loads((out/'rehearsal.json').read_text())


def videos(out: Path, fmt: str) -> list[Path]:
    return sorted(p for p in (out/REHEARSAL_FOLDERS[fmt]).rglob('*') if p.suffix in VIDEO_SUFFIXES)


def test_every_set_in_its_layout(rehearsal):
    out, summary, record = rehearsal
    counts = {f: s['videos'] for f, s in summary['sets'].items()}
    assert counts == {'kinetics': 25, 'ssv2': 30, 'ucf101': 30, 'hmdb51': 35}
    assert sorted(p.name for p in out.iterdir()) == sorted(['LICENSES.md', 'README.md', 'rehearsal.json',
                                                            *REHEARSAL_FOLDERS.values()])
    for f in REHEARSAL_FORMATS:      # every recorded video is on disk, and nothing else is
        assert sorted(r['path'] for r in record['sets'][f]['videos']) == \
            sorted(p.relative_to(out/REHEARSAL_FOLDERS[f]).as_posix() for p in videos(out, f))
    k = out/'kinetics400'
    assert sorted(p.name for p in k.iterdir()) == ['annotations', 'test', 'train', 'val']
    assert sorted(p.name for p in (k/'annotations').iterdir()) == ['test.csv', 'train.csv', 'val.csv']
    lab = out/'ssv2'/'labels'
    assert sorted(p.name for p in lab.iterdir()) == [f'something-something-v2-{s}.json'
                                                     for s in ('labels', 'test', 'train', 'validation')]
    assert sorted(p.name for p in (out/'ucf101'/'ucfTrainTestlist').iterdir()) == \
        ['classInd.txt'] + [f'{kind}list0{s}.txt' for kind in ('test', 'train') for s in (1, 2, 3)]
    assert sorted(p.name for p in (out/'hmdb51'/'testTrainMulti_7030_splits').iterdir()) == \
        sorted(f'{c}_test_split{s}.txt' for c in HMDB51_CLASSES for s in (1, 2, 3))
    assert 'https://creativecommons.org/licenses/by/3.0/' in (out/'LICENSES.md').read_text()   # Big Buck Bunny's


def test_kinetics_csv(rehearsal):
    out, _, record = rehearsal
    k = out/'kinetics400'
    train_csv = (k/'annotations'/'train.csv').read_text()
    assert train_csv.startswith('label,youtube_id,time_start,time_end,split,is_cc\n')
    assert '\n"air drumming",' in train_csv                              # a label with a space is quoted
    for split in ('train', 'val', 'test'):                                # each split's videos in their own folder
        recs, classes = read_kinetics_csv(k/'annotations'/f'{split}.csv', k/split)
        assert classes == list(K400_CLASSES)
        assert len(recs) == {'train': 15, 'val': 5, 'test': 5}[split] and all(r.path.is_file() for r in recs)
        # the dataset's root works as video_root too: each split's folder is found from the row's split column
        assert [r.path for r in read_kinetics_csv(k/'annotations'/f'{split}.csv', k)[0]] == [r.path for r in recs]
        assert all(re.fullmatch(r'[A-Za-z0-9_-]{11}_\d{6}_\d{6}\.mp4', r.path.name) for r in recs)
        assert all(r.meta['split'] == split and r.end - r.start == 10 for r in recs)
        truth = {r['path']: r['label'] for r in record['sets']['kinetics']['videos'] if r['split'] == split}
        assert {f'{split}/{r.path.name}': r.label for r in recs} == truth
    assert any(p.name.startswith('-') for p in (k/'train').iterdir())   # YouTube ids that start with '-'


def test_ssv2_json(rehearsal):
    out, _, record = rehearsal
    d = out/'ssv2'
    labels = json.loads((d/'labels'/'something-something-v2-labels.json').read_text())
    assert labels == {t.replace('[', '').replace(']', ''): str(i) for i, t in enumerate(SSV2_CLASSES)}
    truth = {r['path'].split('/')[-1]: r['label'] for r in record['sets']['ssv2']['videos']}
    for split, n in (('train', 18), ('validation', 6), ('test', 6)):
        recs, classes = read_ssv2_json(d/'labels'/'something-something-v2-labels.json',
                                       d/'labels'/f'something-something-v2-{split}.json', d/'20bn-something-something-v2')
        assert len(recs) == n and all(r.path.is_file() and re.fullmatch(r'\d+\.webm', r.path.name) for r in recs)
        if split == 'test': assert {r.label for r in recs} == {-1}              # ids only, as shipped
        else: assert all(r.label == truth[r.path.name] for r in recs)
    entry = json.loads((d/'labels'/'something-something-v2-train.json').read_text())[0]
    assert sorted(entry) == ['id', 'label', 'placeholders', 'template']
    assert entry['label'] == entry['template'].replace('[something]', entry['placeholders'][0]).lower()


def test_ucf101_lists(rehearsal):
    out, _, _ = rehearsal
    d = out/'ucf101'
    lists = d/'ucfTrainTestlist'
    assert (lists/'classInd.txt').read_bytes() == ''.join(f'{i + 1} {c}\r\n' for i, c in enumerate(UCF101_CLASSES)).encode()
    every = {p.relative_to(d/'UCF-101').as_posix() for p in (d/'UCF-101').rglob('*.avi')}
    for s in (1, 2, 3):
        train, classes = read_ucf_hmdb_split(lists/f'trainlist0{s}.txt', d/'UCF-101', lists/'classInd.txt')
        test, _ = read_ucf_hmdb_split(lists/f'testlist0{s}.txt', d/'UCF-101', lists/'classInd.txt')
        assert classes == list(UCF101_CLASSES)
        names = lambda recs: {r.path.relative_to(d/'UCF-101').as_posix() for r in recs}
        assert names(train) | names(test) == every and not names(train) & names(test)   # a partition of the videos
        groups = {int(re.search(r'_g(\d\d)_', r.path.name).group(1)) for r in test}
        assert groups == {7 * s - 6}                                      # split s tests groups 7s-6 .. 7s
        assert all(r.label == classes.index(r.path.parent.name) for r in train + test)
        assert (lists/f'testlist0{s}.txt').read_bytes().count(b'\r\n') == len(test)   # CRLF line ends


def hmdb_truth(record, split: int, subset: str) -> dict:
    tag = {'train': 1, 'test': 2}[subset]
    return {r['path'].split('/', 1)[1]: r['label'] for r in record['sets']['hmdb51']['videos'] if r[f'split{split}'] == tag}


def test_hmdb51_splits(rehearsal):
    "Every video tagged 1 (train) or 2 (test) is read with its class, for each split; names starting with '#' aside."
    out, _, record = rehearsal
    d = out/'hmdb51'
    lines = (d/'testTrainMulti_7030_splits'/'clap_test_split1.txt').read_text().splitlines()
    assert all(re.fullmatch(r'\S+\.avi [012] ', l) for l in lines) and len(lines) == 7
    for s in (1, 2, 3):
        for subset in ('train', 'test'):
            recs, classes = read_ucf_hmdb_split(d/'testTrainMulti_7030_splits', d/'hmdb51_org', subset=subset, split=s)
            assert classes == list(HMDB51_CLASSES) and all(r.path.is_file() for r in recs)
            got = {r.path.relative_to(d/'hmdb51_org').as_posix(): r.label for r in recs}
            assert got == hmdb_truth(record, s, subset)


def test_hmdb51_names_starting_with_hash(rehearsal):
    out, _, record = rehearsal
    d = out/'hmdb51'
    hashed = {p: k for p, k in hmdb_truth(record, 1, 'train').items() if p.split('/')[1].startswith('#')}
    assert hashed, 'the rehearsal should hold #-names in training split 1'
    recs, _ = read_ucf_hmdb_split(d/'testTrainMulti_7030_splits', d/'hmdb51_org', subset='train', split=1)
    got = {r.path.relative_to(d/'hmdb51_org').as_posix(): r.label for r in recs}
    assert {p: got.get(p) for p in hashed} == hashed


EXPECTED = {   # what each set's files are, as probe_video reads them
    'kinetics': dict(container='mov,mp4,m4a,3gp,3g2,mj2', codec='h264', fourcc='avc1', profile='High', reordered=True,
                     audio=['aac']),
    'ssv2': dict(container='matroska,webm', codec='vp9', fourcc='', height=240, audio=[]),
    'ucf101': dict(container='avi', codec='mpeg4', fourcc='XVID', width=320, height=240, audio=[]),
    'hmdb51': dict(container='avi', codec='mpeg4', fourcc='DX50', height=240, audio=[]),
}


@pytest.mark.parametrize('fmt', REHEARSAL_FORMATS)
def test_every_video_is_encoded_as_its_dataset(rehearsal, fmt):
    out, _, record = rehearsal
    for r in record['sets'][fmt]['videos']:
        p = probe_video(out/REHEARSAL_FOLDERS[fmt]/r['path'])
        assert {k: p[k] for k in EXPECTED[fmt]} == EXPECTED[fmt], r['path']
        assert (p['width'], p['height'], p['frames']) == (*r['shot']['size'], r['shot']['frames'])
        assert abs(p['fps'] - float(Fraction(r['fps']))) < 1e-6
        if fmt == 'kinetics':     # short side 256-340, 25-30 fps, ~10 s, and x264's long GOP: a keyframe every 250 frames
            assert 256 <= min(p['width'], p['height']) <= 340 and 25 <= p['fps'] <= 30
            assert p['keyframes'] == list(range(0, p['frames'], K400_GOP)) and p['frames'] >= 6 * p['fps']
        if fmt == 'ssv2': assert p['fps'] == 12 and 24 <= p['frames'] <= 72
        if fmt == 'ucf101': assert p['fps'] == 25
        if fmt == 'hmdb51': assert p['fps'] == 30
    if fmt == 'kinetics': assert max(r['shot']['frames'] for r in record['sets'][fmt]['videos']) > K400_GOP
    if fmt == 'ssv2': assert any(w % 2 for w in (r['shot']['size'][0] for r in record['sets'][fmt]['videos']))


@pytest.mark.skipif(decord is None, reason='decord has no wheel for this machine')
@pytest.mark.parametrize('fmt', REHEARSAL_FORMATS)
def test_both_backends_decode_every_video(rehearsal, fmt):
    "decord and PyAV (through the package's readers) see the same frames, frame count, rate and size in every video."
    out, _, _ = rehearsal
    rng = np.random.default_rng(0)
    for p in videos(out, fmt):
        info = probe_video(p)
        n = info['frames']
        idx = sorted({0, n - 1, *rng.integers(0, n, 3).tolist()} | ({K400_GOP - 1, K400_GOP} if n > K400_GOP else set()))
        got = {}
        with warnings.catch_warnings():
            warnings.simplefilter('error')                       # no fallback, no "nearest frame" substitute
            for backend in ('pyav', 'decord'):
                r = open_video(p, backend)
                try:
                    assert (len(r), r.width, r.height) == (n, info['width'], info['height']), (p, backend)
                    assert abs(r.fps - info['fps']) < 1e-3, (p, backend, r.fps)
                    got[backend] = r.get(idx)
                finally: r.close()
        assert np.array_equal(got['pyav'], got['decord']), p


N_CLASSES = {'kinetics': len(K400_CLASSES), 'ssv2': len(SSV2_CLASSES), 'ucf101': len(UCF101_CLASSES),
             'hmdb51': len(HMDB51_CLASSES)}
PRESETS = [   # (preset, set, its sampler, the clip of a training item)
    ('aim-k400-vitb16', 'kinetics', 'dense', (8, 3, 224, 224)),
    ('aim-k400-vitb16-32f', 'kinetics', 'dense', (32, 3, 224, 224)),
    ('dualpath-k400-vitb16', 'kinetics', 'dense', (32, 3, 224, 224)),
    ('efficient-prompt-k400', 'kinetics', 'segment', (16, 3, 224, 224)),
    ('aim-ssv2-vitb16', 'ssv2', 'segment', (8, 3, 224, 224)),
    ('dualpath-ssv2-vitb16', 'ssv2', 'segment', (32, 3, 224, 224)),
    ('efficient-prompt-hmdb51', 'hmdb51', 'segment', (16, 3, 224, 224)),
]


@pytest.mark.parametrize('preset, fmt, sampler, shape', PRESETS, ids=[p[0] for p in PRESETS])
def test_presets_sample_the_rehearsal(rehearsal, preset, fmt, sampler, shape):
    "A real preset with the fields write_rehearsal returned builds its datasets and draws a clip, for training and test."
    out, summary, _ = rehearsal
    fields = dict(summary['sets'][fmt]['config'])
    cfg = load_config(preset, fields)
    assert cfg.sampler == sampler
    K = check_split_labels(cfg)                                  # every list's labels against the class count
    assert set(K.values()) == {N_CLASSES[fmt]}
    item = build_dataset(cfg, 'train')[0]
    assert tuple(item['video'].shape) == shape and 0 <= item['label'] < N_CLASSES[fmt]
    if fmt == 'kinetics':       # each split's videos in a folder of their own: a test config of its own reads val/
        k = out/'kinetics400'
        fields.update(test_list=str(k/'annotations'/'val.csv'), video_root=str(k/'val'))
    test_cfg = load_config(preset, fields)
    ev = build_dataset(test_cfg, 'test', views=test_cfg.test_views, crops=test_cfg.test_crops)[0]['video']
    V = test_cfg.test_views * test_cfg.test_crops             # the preset's test protocol: views x crops clips
    assert tuple(ev.shape) == ((V, *shape) if V > 1 else shape)


def test_ucf101_trains_with_a_plain_config(rehearsal):
    "UCF101 has no preset yet: the returned fields on the default config (dense 8×8) draw a clip."
    out, summary, _ = rehearsal
    cfg = load_config(None, summary['sets']['ucf101']['config'])
    assert check_split_labels(cfg) == {'train': 5, 'val': 5, 'test': 5}
    assert tuple(build_dataset(cfg, 'train')[0]['video'].shape) == (cfg.frames, 3, 224, 224)


def test_same_seed_same_bytes_and_nothing_foreign_removed(rehearsal, tmp_path):
    out, _, _ = rehearsal
    def hashes(folder): return {p.relative_to(folder).as_posix(): sha256(p) for p in folder.rglob('*') if p.is_file()}
    write_rehearsal(tmp_path, formats=('hmdb51',), seed=0)
    assert hashes(tmp_path/'hmdb51') == hashes(out/'hmdb51')
    write_rehearsal(tmp_path, formats=('hmdb51',), seed=1)                # its own folder: replaced, differently
    assert hashes(tmp_path/'hmdb51') != hashes(out/'hmdb51')
    assert json.loads((tmp_path/'rehearsal.json').read_text())['sets']['hmdb51']['seed'] == 1
    (tmp_path/'ucf101').mkdir(); (tmp_path/'ucf101'/'notes.txt').write_text('mine')
    with pytest.raises(SamplesError, match='does not list it'):
        write_rehearsal(tmp_path, formats=('hmdb51', 'ucf101'))
    assert (tmp_path/'ucf101'/'notes.txt').read_text() == 'mine'
    assert json.loads((tmp_path/'rehearsal.json').read_text())['sets']['hmdb51']['seed'] == 1   # checked before writing
    with pytest.raises(SamplesError, match="choose from"):
        write_rehearsal(tmp_path, formats=('kinetics700',))


def test_cli_writes_the_sets_it_is_asked_for(tmp_path):
    "`efficient-video samples --rehearsal DIR --formats ucf101 --json`: one set, its summary on stdout; bad input: one line."
    import subprocess
    import sys
    exe = [sys.executable, '-m', 'efficient_video.cli']
    env_run = lambda *a: subprocess.run([*exe, 'samples', *a], capture_output=True, text=True, timeout=600)
    p = env_run('--rehearsal', str(tmp_path/'r'), '--formats', 'ucf101', '--json')
    assert p.returncode == 0, p.stderr[-2000:]
    report = json.loads(p.stdout)
    assert list(report['sets']) == ['ucf101'] and report['sets']['ucf101']['videos'] == 30, report
    assert sorted(q.name for q in (tmp_path/'r').iterdir()) == ['LICENSES.md', 'README.md', 'rehearsal.json', 'ucf101']
    for args, says in ((('--formats', 'ucf101'), '--formats goes with --rehearsal'),
                       (('--rehearsal', str(tmp_path/'s'), '--formats', 'kinetic'), 'choose from'),
                       (('--rehearsal', str(tmp_path/'r'), '--build'), 'not allowed with')):
        bad = env_run(*args)
        assert bad.returncode == 2 and says in bad.stderr and 'Traceback' not in bad.stderr, (args, bad.stderr)


SLOW_PRESETS = ('aim-k400-vitb16', 'aim-ssv2-vitb16', 'aim-ucf101-vitb16', 'dualpath-hmdb51-vitb16')  # one per format


@pytest.mark.skipif(os.environ.get('EV_SLOW') != '1',
                    reason='a ViT-B/16 preset end to end takes minutes on a CPU, past CI\'s budget: set EV_SLOW=1 '
                           '(`efficient-video bench --part rehearsal` runs every reference preset)')
@pytest.mark.parametrize('preset', SLOW_PRESETS)
def test_reference_preset_end_to_end(rehearsal, preset, tmp_path):
    "The preset as written, on the real architecture (random weights): 2 steps, checkpoint, exact resume, multi-view eval."
    from efficient_video.bench import REHEARSAL_BACKBONE, rehearse
    cfg = load_config(preset)
    r = rehearse(preset, rehearsal[0], tmp_path)
    assert r['backbone'] == REHEARSAL_BACKBONE and r['grad_checkpointing'] == cfg.grad_checkpointing
    assert (r['frames'], r['sampler'], r['image_size']) == (cfg.frames, cfg.sampler, 224)
    assert (r['test_views'], r['test_crops']) == (cfg.test_views, cfg.test_crops)
    assert r['exact_resume'], (r['loss_step2'], r['loss_step2_resumed'])
    assert r['weights_bytes'] < 100e6          # adapters and head only: the 86M-parameter tower is never written
