"""The package at the lowest versions `pyproject.toml` allows. CI installs the lower bound of each pure-Python
dependency in `LOWEST` (`pip install --no-deps --target .ci/.work/lowest`, ahead of the environment's own on
PYTHONPATH) and runs this file, tests/test_temporal.py and tests/test_prompt_learning.py there with
EV_LOWEST_VERSIONS=1 (.ci/test); in the ordinary suite it runs on the installed versions. Every module imports; every
registered method builds from its tiny preset (sample CLIP weights through `open_clip`) and runs forward and
backward; `identity_at_init`'s reference through open_clip's tower matches our per-frame ViT; a short training run
writes a checkpoint that loads back. The binary dependencies (torch, torchvision,
numpy, matplotlib, pillow, av, decord) are not downgraded: CI uses the builds it has.

`python tests/test_lowest_versions.py` prints the pins (`name==version ...`) for pip."""
import importlib
import importlib.metadata
import os
import pkgutil
import re
import sys
from pathlib import Path

import pytest

try: import tomllib
except ModuleNotFoundError: tomllib = pytest.importorskip('tomli')   # Python 3.10

ROOT = Path(__file__).resolve().parents[1]
LOWEST = ('open_clip_torch', 'einops', 'fastcore', 'safetensors', 'tqdm')   # installed at their lower bound in CI


def _dependencies() -> list[str]:
    return tomllib.loads((ROOT/'pyproject.toml').read_text())['project']['dependencies']


def lower_bounds() -> dict[str, str]:
    "`{distribution: version}` of every dependency in pyproject.toml's [project] that declares `>=version`."
    out = {}
    for d in _dependencies():
        m = re.match(r'\s*([A-Za-z0-9_.-]+)\s*(?:\[[^]]*\])?\s*([^;]*)', d)
        low = re.search(r'>=\s*([0-9][^,\s]*)', m.group(2))
        if low: out[m.group(1)] = low.group(1)
    return out


def pins() -> list[str]:
    bounds = lower_bounds()
    return [f'{name}=={bounds[name]}' for name in LOWEST]


def test_the_tested_dependencies_are_those_marked_in_pyproject():
    "LOWEST = the dependencies whose line in pyproject.toml says `# tested`, each with a lower bound."
    marked = [re.match(r'\s*"([A-Za-z0-9_.-]+)', line).group(1)
              for line in (ROOT/'pyproject.toml').read_text().splitlines() if re.match(r'\s*"[^"]+",\s*# tested', line)]
    assert sorted(marked) == sorted(LOWEST)
    assert [n for n in LOWEST if n not in lower_bounds()] == []


@pytest.mark.skipif(os.environ.get('EV_LOWEST_VERSIONS') != '1', reason='only in the lowest-versions CI step')
def test_the_lowest_versions_are_the_ones_imported():
    import open_clip
    from packaging.version import Version
    bounds = lower_bounds()
    wrong = {n: (importlib.metadata.version(n), bounds[n]) for n in LOWEST
             if Version(importlib.metadata.version(n)) != Version(bounds[n])}
    assert wrong == {}, 'installed, declared lowest: ' + repr(wrong)
    assert Version(open_clip.__version__) == Version(bounds['open_clip_torch'])   # imported from the lowest set


def test_every_module_imports():
    import efficient_video
    names = [m.name for m in pkgutil.iter_modules(efficient_video.__path__) if not m.name.startswith('_')]
    assert {'temporal', 'methods', 'engine', 'prompt_learning'} <= set(names)
    for name in names: importlib.import_module(f'efficient_video.{name}')


def _methods():
    from efficient_video.methods import list_methods
    return list_methods()


@pytest.mark.parametrize('method', _methods())
def test_every_method_builds_and_runs(method):
    "Each registered method, from its tiny preset (sample CLIP weights): logits `B×K` and gradients in what trains."
    import torch
    from efficient_video.methods import PRESETS
    from efficient_video.train import load_config, model_from_config
    preset = f'{method}-tiny' if f'{method}-tiny' in PRESETS else 'frame-average-tiny'
    cfg = load_config(preset, method=method, frames=4)
    names = ['a t-shirt moving left', 'a t-shirt moving right', 'a bag moving up', 'a bag moving down']
    torch.manual_seed(0)
    model = model_from_config(cfg, 4, names)
    x = torch.randn(2, cfg.frames, 3, cfg.image_size, cfg.image_size)
    out = model(x)
    assert out.shape == (2, 4) and torch.isfinite(out).all()
    out.float().logsumexp(-1).sum().backward()
    trained = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trained and all(model.get_parameter(n).grad is not None for n in trained)
    frozen = [p for p in model.parameters() if not p.requires_grad]
    assert frozen and all(p.grad is None for p in frozen)


def test_a_video_vit_is_the_frozen_tower_frame_by_frame():
    "`VideoViT` (our attention over the frozen weights) against open_clip's own tower, through `identity_at_init`."
    import copy
    import torch
    from efficient_video.methods import VideoViT, clip_image_encoder, identity_at_init
    torch.manual_seed(0)
    visual, _ = clip_image_encoder('ev-tiny-vit')
    frozen = copy.deepcopy(visual).eval()
    vit = VideoViT(visual, frames=3).eval()
    clips = torch.randn(2, 3, 3, 32, 32)
    assert identity_at_init(vit, frozen, clips) < 1e-5
    with torch.no_grad(): vit.visual.transformer.resblocks[0].mlp.c_fc.bias.add_(1.0)
    assert identity_at_init(vit, frozen, clips) > 1e-3                 # the comparison can fail


def test_a_short_training_run_checkpoints_and_loads_back(tmp_path):
    "Efficient-Prompt on 16 clips of the motion benchmark, one epoch: feature cache, engine, safetensors, tqdm."
    import torch
    from safetensors.torch import load_file
    from efficient_video.data import read_class_names
    from efficient_video.checkpoints import load_checkpoint, trainable_state
    from efficient_video.samples import samples_dir
    from efficient_video.train import load_config, model_from_config, train
    motion = samples_dir()/'motion'
    lst = tmp_path/'train.txt'
    lst.write_text('\n'.join((motion/'train.txt').read_text().splitlines()[:16]) + '\n')
    cfg = load_config('efficient-prompt-tiny', train_list=str(lst), video_root=str(motion), val_list=None,
                      test_list=None, shift_list=None, frames=4, epochs=1, batch_size=8, log_every=1, output_dir=str(tmp_path/'run'),
                      feature_cache=str(tmp_path/'cache'))
    res = train(cfg)
    assert res['steps'] == 2 and res['feature_cache'] is True
    names = read_class_names(cfg)
    torch.manual_seed(1)
    model = model_from_config(cfg, len(names), names)                  # a fresh model, other initial vectors
    before = {k: v.clone() for k, v in trainable_state(model).items()}
    load_checkpoint(res['checkpoint'], model, restore_rng=False)
    saved = load_file(str(Path(res['checkpoint'])/'model.safetensors'))   # what the run wrote
    after = trainable_state(model)
    assert sorted(after) == sorted(before) and all(torch.equal(after[k], saved[k]) for k in after)
    assert any(not torch.equal(after[k], before[k]) for k in after)
    with torch.no_grad():                                               # the loaded model runs on cached features
        assert model(torch.randn(2, 4, model.clip.visual.output_dim)).shape == (2, len(names))


if __name__ == '__main__':
    sys.stdout.write(' '.join(pins()) + '\n')
