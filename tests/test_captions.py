"""A captions file (`retrieval/captions.jsonl`) with a wrong line is one error naming the file, the line and the fix:
captions given as one string, a line that is not an object, a null or missing path, a clip listed twice."""
import json

import pytest

from efficient_video.retrieval import read_captions

GOOD = {"path": "motion/train/000_right.mp4", "captions": ["a t-shirt moves right", "a shirt glides rightwards"]}


def write(tmp_path, *rows):
    p = tmp_path / 'retrieval' / 'captions.jsonl'
    p.parent.mkdir(exist_ok=True)
    p.write_text(''.join((r if isinstance(r, str) else json.dumps(r)) + '\n' for r in rows))
    return p


@pytest.mark.parametrize('row, says', [
    ({"path": "motion/train/001_left.mp4", "captions": "a trouser moves left"}, 'one string, not a list'),
    ('[1, 2]', 'a JSON list, not an object'),
    ('"just a sentence"', 'a JSON str, not an object'),
    ({"path": None, "captions": ["x"]}, '"path" is None, not a file name'),
    ({"captions": ["x"]}, '"path" is missing'),
    ({"path": "motion/train/001_left.mp4", "captions": []}, 'must be a non-empty list'),
    ({"path": "motion/train/001_left.mp4", "captions": ["x", 3]}, 'must be a non-empty list'),
])
def test_a_bad_line_is_named(tmp_path, row, says):
    p = write(tmp_path, GOOD, row)
    with pytest.raises(ValueError) as ei:
        read_captions(p)
    msg = str(ei.value)
    assert '\n' not in msg and f"{p}:2" in msg and says in msg, msg


def test_a_clip_listed_twice_names_both_lines(tmp_path):
    p = write(tmp_path, GOOD, {"path": "motion/train/001_left.mp4", "captions": ["y"]},
              {"path": "motion/train/000_right.mp4", "captions": ["another"]})
    with pytest.raises(ValueError) as ei:
        read_captions(p)
    msg = str(ei.value)
    assert f"{p}:3" in msg and 'first at line 1' in msg and '000_right.mp4' in msg, msg


def test_good_lines_read(tmp_path):
    p = write(tmp_path, GOOD, '', {"path": "motion/train/001_left.mp4", "captions": ["y"], "split": "train"})
    got = read_captions(p)
    assert list(got.values()) == [GOOD['captions'], ['y']]
    assert all(k.endswith(('000_right.mp4', '001_left.mp4')) for k in got)
