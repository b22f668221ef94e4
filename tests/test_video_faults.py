"""Faults in real video data that `efficient_video.video` must survive: rotated and 10-bit files, files that vanish,
audio-only files, errors crossing DataLoader workers, and annotation lists with a BOM, duplicates or wrong labels.
Every fixture is generated here with PyAV (nothing binary is committed)."""
import gc
import json
import shutil
import struct
import warnings
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from efficient_video.video import (VideoDataset, VideoDecodeError, VideoRecord, SegmentSampler, check_labels,
                                   collate_videos, decode_frames, decord, open_video, read_kinetics_csv,
                                   read_path_label_list, read_ssv2_json, read_ucf_hmdb_split, video_info)

BACKENDS = ['pyav', 'auto'] + (['decord'] if decord is not None else [])


# ---------------------------------------------------------------------------------------------------- fixtures
def _picture(h, w, i):
    "An RGB frame whose orientation can be read back: gradients, a white top-left block, a frame-dependent blue."
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 // w, y * 255 // h, np.full_like(x, 20 * i % 256)], -1).astype(np.uint8)
    img[:h // 4, :w // 4] = 255
    return img


def _write(path, w=640, h=360, n=8, pix_fmt='yuv420p', codec='libx264'):
    "An H.264 mp4 of `n` frames `w`×`h` (stored orientation, no display matrix)."
    with av.open(str(path), 'w') as oc:
        s = oc.add_stream(codec, rate=25)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        for i in range(n):
            f = av.VideoFrame.from_ndarray(_picture(h, w, i), format='rgb24').reformat(format=pix_fmt)
            f.pts, f.time_base = i, Fraction(1, 25)
            for p in s.encode(f): oc.mux(p)
        for p in s.encode(): oc.mux(p)
    return Path(path)


def _with_matrix(src, dst, a, b, c, d):
    """Copy an mp4 and write the display matrix [[a b 0] [c d 0] [0 0 1]] into its track header (tkhd), as phones do;
    the bitstream is untouched. Works with any PyAV (no display-matrix writer needed)."""
    data = bytearray(Path(src).read_bytes())
    i = data.find(b'tkhd')
    assert i > 0 and data.count(b'tkhd') == 1, 'fixture expects one track'
    version = data[i + 4]
    at = i + 8 + (32 if version == 1 else 20) + 16       # after version/flags, times/ids/duration, reserved/layer/volume
    data[at:at + 36] = struct.pack('>9i', a << 16, b << 16, 0, c << 16, d << 16, 0, 0, 0, 1 << 30)   # 16.16 and 2.30
    Path(dst).write_bytes(bytes(data))
    return Path(dst)


def _rotated_copy(src, dst, degrees):
    "A copy of `src` whose display matrix turns it `degrees` counter-clockwise (FFmpeg's convention)."
    c, s = round(np.cos(np.radians(degrees))), round(np.sin(np.radians(degrees)))
    return _with_matrix(src, dst, c, -s, s, c)


@pytest.fixture(scope='module')
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp('faults')
    plain = _write(d / 'plain.mp4')
    half = plain.read_bytes()
    (d / 'truncated.mp4').write_bytes(half[:len(half) // 2])   # the moov index is at the end: lost
    return d, plain


# ---------------------------------------------------------------------------------------------------- rotation
@pytest.mark.parametrize('degrees', [90, -90, 180])
def test_rotated_video_is_upright_on_every_backend(clips, degrees):
    d, plain = clips
    rot = _rotated_copy(plain, d / f'rot{degrees}.mp4', degrees)
    with av.open(str(rot)) as c:   # the fixture really carries the rotation FFmpeg reads back
        assert next(c.decode(video=0)).rotation % 360 == degrees % 360
    stored = decode_frames(plain, backend='pyav').numpy()
    upright = np.rot90(stored, degrees // 90, axes=(1, 2))   # np.rot90 turns counter-clockwise, like the matrix
    idx = [0, 3, 7]
    for b in BACKENDS:
        info = video_info(rot, backend=b)
        x = decode_frames(rot, idx, backend=b).numpy()
        assert (info.height, info.width) == upright.shape[1:3], (b, info)
        assert x.shape == (3, info.height, info.width, 3), b
        np.testing.assert_array_equal(x, upright[idx], err_msg=f'backend={b}')
    if abs(degrees) == 90: assert (info.height, info.width) == (640, 360)


def test_rotated_video_through_the_dataset(clips):
    d, plain = clips
    rot = _rotated_copy(plain, d / 'rot_ds.mp4', 90)
    for b in BACKENDS:
        item = VideoDataset([VideoRecord(rot, 0)], SegmentSampler(2, train=False), backend=b)[0]
        assert tuple(item['video'].shape) == (2, 640, 360, 3), b


def test_mirroring_matrix_is_reported_and_not_applied(clips):
    d, plain = clips
    mirror = _with_matrix(plain, d / 'mirror.mp4', -1, 0, 0, 1)     # a horizontal flip (some front cameras)
    stored = decode_frames(plain, [0, 5], backend='pyav').numpy()
    for b in ('pyav', 'auto'):
        with pytest.warns(UserWarning, match='mirror.mp4.*mirrors the picture'):
            x = decode_frames(mirror, [0, 5], backend=b).numpy()
        np.testing.assert_array_equal(x, stored, err_msg=b)


def test_10bit_auto_equals_pyav(tmp_path):
    try: ten = _write(tmp_path / 'ten.mp4', 320, 180, 6, pix_fmt='yuv420p10le')
    except Exception as e: pytest.skip(f"this PyAV's libx264 cannot encode 10-bit ({e})")
    with av.open(str(ten)) as c: assert c.streams.video[0].codec_context.pix_fmt == 'yuv420p10le'
    idx = [0, 2, 5]
    np.testing.assert_array_equal(decode_frames(ten, idx, backend='auto').numpy(),
                                  decode_frames(ten, idx, backend='pyav').numpy())
    assert video_info(ten, 'auto') == video_info(ten, 'pyav')


# ---------------------------------------------------------------------------------------------------- dataset faults
def test_file_deleted_after_build_is_skipped(clips, tmp_path):
    d, plain = clips
    gone = Path(shutil.copy(plain, tmp_path / 'gone.mp4'))
    ds = VideoDataset([VideoRecord(plain, 0), VideoRecord(gone, 1)], SegmentSampler(2, train=False))
    gone.unlink()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        item = ds[1]
    assert item['skipped'] and any('gone.mp4' in str(x.message) for x in w)
    assert collate_videos([ds[0], item])['skipped'] == 1
    with pytest.raises(FileNotFoundError, match='gone.mp4'):
        VideoDataset(ds.records, SegmentSampler(2), on_error='raise', check_files=False)[1]


def test_raise_keeps_the_exception_type_through_workers(clips):
    d, plain = clips
    bad = d / 'truncated.mp4'
    ds = VideoDataset([VideoRecord(plain, 0), VideoRecord(bad, 1)], SegmentSampler(2, train=False), on_error='raise')
    dl = torch.utils.data.DataLoader(ds, batch_size=1, num_workers=2, collate_fn=collate_videos)
    with pytest.raises(VideoDecodeError) as ei:
        list(dl)
    e = ei.value
    assert type(e) is VideoDecodeError and e.path == bad and e.reason
    assert '\n' not in str(e) and str(e).startswith(f'cannot decode video {bad}: ')   # one line for the CLI


def _collect(_): gc.collect()


def test_forked_workers_survive_decoding_in_the_parent(clips):
    "PyAV frames left in reference cycles by the parent are freed in the worker: that must not wait for the parent's threads."
    d, plain = clips
    gc.collect(); gc.disable()
    try:
        for _ in range(3): decode_frames(plain, backend='pyav')        # leaves decoded frames to the cycle collector
        ds = VideoDataset([VideoRecord(plain, 0)] * 4, SegmentSampler(2, train=False))
        dl = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate_videos,
                                         worker_init_fn=_collect, timeout=60, multiprocessing_context='fork')
        assert sum(b['video'].shape[0] for b in dl) == 4
    finally: gc.enable()


def test_decode_error_rebuilt_from_a_message():
    e = VideoDecodeError('/data/a b.mp4', 'moov atom not found')
    msg = f"Caught VideoDecodeError in DataLoader worker process 1.\nOriginal Traceback (most recent call last):\n" \
          f"  File \"x.py\", line 1, in <module>\nefficient_video.video.VideoDecodeError: {e}\n"
    r = VideoDecodeError(msg)   # what torch's ExceptionWrapper.reraise does in the main process
    assert (r.path, r.reason, str(r)) == (e.path, e.reason, str(e))


def test_audio_only_file_says_no_video_stream(tmp_path):
    path = tmp_path / 'speech.m4a'
    with av.open(str(path), 'w', format='mp4') as oc:
        s = oc.add_stream('aac', rate=16000, layout='mono')
        for i in range(10):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format='fltp', layout='mono')
            f.sample_rate, f.pts = 16000, i * 1024
            for p in s.encode(f): oc.mux(p)
        for p in s.encode(): oc.mux(p)
    for b in BACKENDS:
        with pytest.raises(VideoDecodeError, match='no video stream') as ei:
            decode_frames(path, [0], backend=b)
        assert 'speech.m4a' in str(ei.value)


# ---------------------------------------------------------------------------------------------------- annotations
BOM = '\ufeff'


def _kinetics(d):
    (d / 'k.csv').write_text(BOM + 'label,youtube_id,time_start,time_end,split\nzumba,abc,10,20,train\n'
                             'yoga,xyz,0,10,train\nzumba,abc,10,20,train\n', encoding='utf-8')
    return read_kinetics_csv(d / 'k.csv', d)[0], d / 'k.csv', ['k.csv:2', 'k.csv:3', 'k.csv:4']


def _ssv2(d):
    (d / 'labels.json').write_text(BOM + json.dumps({'Holding something': '0', 'Pushing something': '1'}), encoding='utf-8')
    (d / 'train.json').write_text(BOM + json.dumps([{'id': '7', 'template': 'Holding [something]'},
                                                    {'id': '8', 'template': 'Pushing [something]'},
                                                    {'id': '7', 'template': 'Holding [something]'}]), encoding='utf-8')
    return read_ssv2_json(d / 'labels.json', d / 'train.json', d)[0], d / 'train.json', \
        ['train.json[0]', 'train.json[1]', 'train.json[2]']


def _ucf(d):
    (d / 'classInd.txt').write_text(BOM + '1 ApplyEyeMakeup\n2 Archery\n', encoding='utf-8')
    (d / 'trainlist01.txt').write_text(BOM + 'ApplyEyeMakeup/v_a.avi 1\nArchery/v_b.avi 2\nApplyEyeMakeup/v_a.avi 1\n',
                                       encoding='utf-8')
    return read_ucf_hmdb_split(d / 'trainlist01.txt', d, d / 'classInd.txt')[0], d / 'trainlist01.txt', \
        ['trainlist01.txt:1', 'trainlist01.txt:2', 'trainlist01.txt:3']


def _hmdb(d):
    (d / 'splits').mkdir()
    (d / 'splits' / 'wave_test_split1.txt').write_text(BOM + 'a.avi 1 \nb.avi 1 \na.avi 1 \n', encoding='utf-8')
    return read_ucf_hmdb_split(d / 'splits', d)[0], d / 'splits' / 'wave_test_split1.txt', \
        ['wave_test_split1.txt:1', 'wave_test_split1.txt:2', 'wave_test_split1.txt:3']


def _plain(d):
    (d / 'list.txt').write_text(BOM + 'a.mp4 0\n# comment\nb.mp4 1\na.mp4 0\n', encoding='utf-8')
    return read_path_label_list(d / 'list.txt'), d / 'list.txt', ['list.txt:1', 'list.txt:3', 'list.txt:4']


READERS = {'kinetics': _kinetics, 'ssv2': _ssv2, 'ucf': _ucf, 'hmdb': _hmdb, 'list': _plain}


@pytest.mark.parametrize('reader', READERS)
def test_reader_strips_bom_sets_source_and_warns_on_duplicates(tmp_path, reader):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        recs, file, sources = READERS[reader](tmp_path)
    assert not any(BOM in str(r.path) or BOM in (r.label_name or '') for r in recs)
    assert all(r.label >= 0 for r in recs)                                   # the BOM did not hide the label column
    assert [r.source for r in recs] == [str(file.parent / s) for s in sources]
    assert recs[0].path == recs[2].path
    dup = [str(x.message) for x in w if 'twice' in str(x.message)]
    assert len(dup) == 1 and str(file) in dup[0] and sources[0] in dup[0] and sources[2] in dup[0], dup


def test_no_duplicate_warning_for_distinct_entries(tmp_path):
    (tmp_path / 'list.txt').write_text('a.mp4 0\nb.mp4 1\n')
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        read_path_label_list(tmp_path / 'list.txt')


def test_check_labels(tmp_path):
    lines = [f'v{i}.mp4 {lab}' for i, lab in enumerate([0, 1, 2, 3, 7, -1, 5, 6, 9, 2])]
    (tmp_path / 'list.txt').write_text('\n'.join(lines) + '\n')
    recs = read_path_label_list(tmp_path / 'list.txt')
    check_labels([r for r in recs if 0 <= r.label < 3], 3)                  # all in range: no error
    with pytest.raises(ValueError) as ei: check_labels(recs, 3, what='train_list')
    msg = str(ei.value)
    assert '\n' not in msg and msg.startswith('train_list: ')
    assert '6 of 10' in msg and 'num_classes=3 is wrong, or the list has a typo' in msg
    assert all(f'list.txt:{n}' in msg for n in (4, 5, 6, 7, 8)) and 'list.txt:9' not in msg   # the first 5 only
    unl = [r for r in recs if r.label in (0, -1)]
    with pytest.raises(ValueError, match='allow_unlabelled=True'): check_labels(unl, 3)
    check_labels(unl, 3, allow_unlabelled=True)
    with pytest.raises(ValueError, match=r'v9.mp4'):                          # records built by hand: named by path
        check_labels([VideoRecord(Path('v9.mp4'), 9)], 3)


# ---------------------------------------------------------------------------------------------------- mirrors on decord
def _with_float_matrix(src, dst, a, b, c, d):
    "Like `_with_matrix`, for any real entries (16.16 fixed point), e.g. a turn that is not a multiple of 90°."
    data = bytearray(Path(src).read_bytes())
    i = data.find(b'tkhd')
    at = i + 8 + (32 if data[i + 4] == 1 else 20) + 16
    data[at:at + 36] = struct.pack('>9i', *(round(v * 65536) for v in (a, b, 0, c, d, 0)), 0, 0, 1 << 30)
    Path(dst).write_bytes(bytes(data))
    return Path(dst)


_S, _C = np.sin(np.radians(89.5)), np.cos(np.radians(89.5))
ODD_MATRICES = {'hflip': (-1, 0, 0, 1), 'vflip': (1, 0, 0, -1), 'transpose': (0, 1, 1, 0),
                'antitranspose': (0, -1, -1, 0), 'turn89.5': (_C, _S, -_S, _C)}


@pytest.mark.skipif(decord is None, reason='decord has no wheel for this machine')
@pytest.mark.parametrize('name', ODD_MATRICES)
def test_decord_applies_a_display_matrix_as_pyav_does(clips, name):
    """decord reads only the angle of a display matrix, and only exact multiples of 90°: a horizontal mirror
    ([-1 0; 0 1], angle 180°) came out upside down, a transpose as a quarter turn, 89.5° not at all. Every backend
    must give PyAV's frames, with PyAV's warning for a mirror."""
    d, plain = clips
    odd = _with_float_matrix(plain, d / f'odd_{name}.mp4', *ODD_MATRICES[name])
    idx = [0, 5]
    with warnings.catch_warnings(record=True) as w_pyav:
        warnings.simplefilter('always')
        want = decode_frames(odd, idx, backend='pyav').numpy()
    mirrors = name != 'turn89.5'
    assert any('mirrors the picture' in str(x.message) for x in w_pyav) == mirrors
    for b in BACKENDS:
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter('always')
            x = decode_frames(odd, idx, backend=b).numpy()
            info = video_info(odd, backend=b)
        np.testing.assert_array_equal(x, want, err_msg=f'backend={b}')
        assert (info.height, info.width) == want.shape[1:3], (b, info)
        assert any('odd_' in str(m.message) and 'mirrors the picture' in str(m.message) for m in w) == mirrors, b


# ---------------------------------------------------------------------------------------------------- not UTF-8
def _latin1(d):
    "Every reader's file with 'café' written in Latin-1 (byte 0xE9) on its second line: not UTF-8."
    (d / 'list.txt').write_bytes('a.mp4 0\ncafé.mp4 1\n'.encode('latin-1'))
    (d / 'k.csv').write_bytes('label,youtube_id,time_start,time_end,split\nzumba,abc,10,20,train\n'
                              'café,xyz,0,10,train\n'.encode('latin-1'))
    (d / 'labels.json').write_bytes('{"Holding something": "0",\n "Caf\u00e9 something": "1"}'.encode('latin-1'))
    (d / 'train.json').write_text(json.dumps([{'id': '7', 'template': 'Holding [something]'}]))
    (d / 'trainlist01.txt').write_bytes('Archery/v_a.avi 1\nCaf\u00e9/v_b.avi 1\n'.encode('latin-1'))
    return {'list': lambda: read_path_label_list(d / 'list.txt'),
            'kinetics': lambda: read_kinetics_csv(d / 'k.csv', d),
            'ssv2': lambda: read_ssv2_json(d / 'labels.json', d / 'train.json', d),
            'ucf': lambda: read_ucf_hmdb_split(d / 'trainlist01.txt', d)}, \
        {'list': 'list.txt:2', 'kinetics': 'k.csv:3', 'ssv2': 'labels.json:2', 'ucf': 'trainlist01.txt:2'}


@pytest.mark.parametrize('reader', ['list', 'kinetics', 'ssv2', 'ucf'])
def test_a_file_that_is_not_utf8_is_named_with_its_line(tmp_path, reader):
    calls, where = _latin1(tmp_path)
    with pytest.raises(ValueError) as ei:
        calls[reader]()
    msg = str(ei.value)
    assert '\n' not in msg and str(tmp_path / where[reader]) in msg, msg
    assert 'not UTF-8' in msg and '0xe9' in msg and 'save it as UTF-8' in msg, msg


def test_utf8_with_bom_still_reads(tmp_path):
    (tmp_path / 'list.txt').write_bytes(b'\xef\xbb\xbfcaf\xc3\xa9.mp4 1\n')
    assert [r.path.name for r in read_path_label_list(tmp_path / 'list.txt')] == ['café.mp4']
