"""Pretraining recipes against the sample CLIP's generalisation bars: garment size, held-out backgrounds, position.

    python benchmarks/pretrain_scenes.py --run NAME [key=value ...] [--run NAME2 ...]   # train (in parallel), score
    python benchmarks/pretrain_scenes.py --model NAME=FOLDER [--model ...]              # score trained model folders
                                         [--record benchmarks/results/pretrain_scenes.json] [-n 1000]

`--run` trains `efficient-video pretrain-clip key=value ...` into a fresh folder, one process per run, all at once
(each on one torch thread: two runs on our two cores take about as long as one alone), then scores it; `--model`
scores a folder already trained that way (`pretrain-clip --out FOLDER`). Each model's record: its whole recipe
(`pretrain_config.json`) and what that changes from `PretrainConfig()`, its training minutes and the package's final
zero-shot evaluation on all 10,000 test images (`metrics.json`), and `zero_shot_sweep` on the first `n` test garments
(top-1 against garment side over black, the training photos, the held-out photos and gradients). The committed
sample CLIP is scored beside them as the baseline. The record merges into `--record`, keyed by name; the bars it
checks are the sample CLIP's generalisation goals (28 px on black, the garment filling the frame, held-out
backgrounds, position)."""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from efficient_video.clip import load_clip
from efficient_video.pretrain import SAMPLE_CLIP_DIR, PretrainConfig, zero_shot_sweep
from efficient_video.samples import samples_dir

SIDES = (20, 28, 40, 52, 64)
BARS = {'28 px on black': 0.80, 'filling the frame (64 px) on black': 0.65,
        '28 px on held-out backgrounds (photos and gradients)': 0.75, 'position': 0.95}


def score(folder: Path, n: int) -> dict:
    "A trained model folder's recipe, training time, final evaluation and size/background sweep."
    bundle = load_clip(pretrained=str(folder))
    sweep = zero_shot_sweep(bundle.model, bundle.tokenizer, sides=SIDES, n=n)
    at = lambda family, side: sweep['top1'][family][SIDES.index(side)]
    metrics = json.loads((folder/'metrics.json').read_text())
    held_out = (at('held-out photos', 28) + at('gradients', 28)) / 2
    bars = {'28 px on black': at('black', 28), 'filling the frame (64 px) on black': at('black', 64),
            '28 px on held-out backgrounds (photos and gradients)': held_out, 'position': metrics['position']}
    recipe = json.loads((folder/'pretrain_config.json').read_text())
    defaults = json.loads(json.dumps(asdict(PretrainConfig())))
    return {'changed': {k: v for k, v in recipe.items() if defaults.get(k) != v}, 'recipe': recipe, 'metrics': metrics,
            'sweep': sweep, 'bars': bars, 'meets_bars': all(bars[k] >= v for k, v in BARS.items())}


def train(runs: dict[str, list[str]], root: Path) -> dict[str, Path]:
    "Train every run at once, one process and one torch thread each; their folders."
    env = {**os.environ, 'HF_HUB_OFFLINE': '1', 'OMP_NUM_THREADS': '1'}
    procs = {name: subprocess.Popen(['efficient-video', 'pretrain-clip', '--out', str(root/name), *overrides],
                                    env=env, stdout=subprocess.DEVNULL, stderr=open(root/f'{name}.log', 'w'))
             for name, overrides in runs.items()}
    for name, p in procs.items():
        if p.wait():
            sys.exit(f'pretrain-clip for {name} failed: see {root/name}.log')
    return {name: root/name for name in runs}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--run', nargs='+', action='append', default=[], metavar='NAME KEY=VALUE',
                    help='a recipe to train: its name, then PretrainConfig overrides')
    ap.add_argument('--model', action='append', default=[], metavar='NAME=FOLDER', help='a trained folder to score')
    ap.add_argument('--record', default='benchmarks/results/pretrain_scenes.json')
    ap.add_argument('-n', type=int, default=1000, help='test garments per sweep point')
    args = ap.parse_args(argv)
    runs = {r[0]: r[1:] for r in args.run}
    folders = {k: Path(v) for k, v in (m.split('=', 1) for m in args.model)}
    if runs:
        folders.update(train(runs, Path(tempfile.mkdtemp(prefix='pretrain-scenes-'))))
    folders = {'committed sample CLIP': samples_dir()/SAMPLE_CLIP_DIR, **folders}
    record = json.loads(Path(args.record).read_text()) if Path(args.record).exists() else {'models': {}}
    for name, folder in folders.items():
        record['models'][name] = score(folder, args.n)
        r = record['models'][name]
        print(f"{name}: {r['metrics'].get('minutes', 0):.1f} min; " +
              '; '.join(f'{k} {v:.1%}' for k, v in r['bars'].items()) + f"; meets the bars: {r['meets_bars']}")
    record.update(bars=BARS, sides=list(SIDES), n=args.n, date=datetime.datetime.now().isoformat(timespec='seconds'),
                  platform=platform.platform(), cpus=os.cpu_count())
    Path(args.record).parent.mkdir(parents=True, exist_ok=True)
    Path(args.record).write_text(json.dumps(record, indent=1) + '\n')


if __name__ == '__main__':
    main()
