"""Faults in real video data that `efficient_video.video` must survive: annotation lists with a BOM, duplicates or
wrong labels. Every fixture is generated here (nothing binary is committed)."""
import json
import warnings
from pathlib import Path

import pytest

from efficient_video.video import (VideoRecord, check_labels, read_kinetics_csv, read_path_label_list, read_ssv2_json,
                                   read_ucf_hmdb_split)


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
