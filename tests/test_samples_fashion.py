"""`load_fashion_mnist` without Debian's package (macOS, Windows): the default falls back to the shipped copy."""
import warnings

import numpy as np
import pytest

from efficient_video import samples
from efficient_video.samples import FASHION_MNIST_ENV, SamplesError, has_full_fashion_mnist, load_fashion_mnist


@pytest.fixture
def no_official(monkeypatch, tmp_path):
    "Point the official files' folder at a missing one, and forget earlier fallback warnings."
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path / 'missing'))
    monkeypatch.setattr(samples, '_FALLBACK_WARNED', set())


def test_auto_falls_back_to_the_shipped_subset_and_warns_once(no_official):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        images, labels = load_fashion_mnist('train')
        load_fashion_mnist('train')
    assert images.shape == (5_000, 28, 28) and np.bincount(labels).tolist() == [500] * 10
    assert len(caught) == 1
    assert "using the 5,000-image training subset shipped in data_samples/fashion_mnist" in str(caught[0].message)


def test_test_split_is_complete_and_silent_without_debian(no_official):
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        images, labels = load_fashion_mnist('test')
    assert images.shape == (10_000, 28, 28) and np.bincount(labels).tolist() == [1000] * 10


def test_debian_source_stays_strict(no_official):
    with pytest.raises(FileNotFoundError, match='apt-get install dataset-fashion-mnist'):
        load_fashion_mnist('train', source='debian')


def test_no_copy_at_all_names_both(no_official, tmp_path):
    (tmp_path / 'empty').mkdir()
    with pytest.raises(SamplesError, match='neither the official files'):
        load_fashion_mnist('train', root=tmp_path / 'empty')


@pytest.mark.skipif(not has_full_fashion_mnist('train'), reason="needs the official files (Debian's dataset-fashion-mnist)")
def test_auto_prefers_the_full_training_set():
    images, _ = load_fashion_mnist('train')
    assert len(images) == 60_000
