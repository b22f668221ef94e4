"""One training epoch from the frame-feature cache against one epoch that decodes and encodes every clip.

    python benchmarks/feature_cache.py [--preset efficient-prompt-tiny] [KEY=VALUE ...]

Both epochs train the same model with the same engine (`efficient_video.engine.fit`), batch size and number of steps;
the cached epoch reads the frozen image tower's outputs from the cache, the other runs the tower on decoded, augmented
clips. Feature extraction itself is a one-time cost and is timed separately. Prints the machine, the date, the three
times and the ratio (the chapter on the frame-feature cache says why caching is the main speed lever)."""
import argparse, datetime, json, os, platform, tempfile, time
from pathlib import Path

import torch

from efficient_video.core import override, seed_everything
from efficient_video.engine import fit, init_distributed, infer_num_classes, read_class_names, read_records
from efficient_video.train import load_config, model_from_config, split_dataset, clip_shape
from efficient_video.methods import get_method
from efficient_video.engine import ClassificationLoss


def one_epoch(cfg, model, dataset, out):
    "Seconds of one epoch of `fit` over `dataset`: its optimizer steps (fit's own clock: set-up and checkpoint excluded)."
    method, shape = get_method(cfg.method), clip_shape(cfg, dataset)
    loss = method.loss(cfg, shape) if method.loss else ClassificationLoss(shape, cfg.label_smoothing)
    run_cfg = override(cfg, epochs=1, max_steps=0, eval_every=0, ckpt_every=0, output_dir=str(out), log_every=1000)
    res = fit(model, dataset, run_cfg, loss, env=init_distributed('cpu'))
    return res['train_minutes'] * 60, res['steps']


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--preset', default='efficient-prompt-tiny')
    p.add_argument('--threads', type=int, default=1, help='torch threads (1: what the tiny presets are tuned for)')
    p.add_argument('overrides', nargs='*', metavar='KEY=VALUE')
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix='ev-bench-cache-'))
    cfg = load_config(args.preset, args.overrides, feature_cache=str(tmp/'cache'), val_list=None, test_list=None)
    seed_everything(cfg.seed)
    model = model_from_config(cfg, infer_num_classes(cfg, read_records(cfg, 'train')), read_class_names(cfg))
    t0 = time.perf_counter()
    cached = split_dataset(cfg, 'train', model, init_distributed('cpu'))      # extraction: once
    extract_s = time.perf_counter() - t0
    state = {k: v.clone() for k, v in model.state_dict().items()}
    cached_s, steps = one_epoch(cfg, model, cached, tmp/'cached')
    model.load_state_dict(state)
    decoded = split_dataset(override(cfg, feature_cache=None), 'train', model, init_distributed('cpu'))
    decoded_s, steps2 = one_epoch(override(cfg, feature_cache=None), model, decoded, tmp/'decoded')
    report = {'date': datetime.datetime.now().isoformat(timespec='seconds'), 'machine': platform.platform(),
              'processor': platform.processor() or platform.machine(), 'cpus': os.cpu_count(), 'torch_threads': args.threads,
              'preset': args.preset, 'videos': len(cached), 'steps_per_epoch': steps,
              'extract_seconds': round(extract_s, 2), 'epoch_from_cache_seconds': round(cached_s, 3),
              'epoch_decoding_seconds': round(decoded_s, 2), 'ratio': round(decoded_s / cached_s, 1)}
    assert steps == steps2
    print(json.dumps(report, indent=1))
    print(f"one epoch from the cache: {cached_s:.2f} s; decoding and encoding every clip: {decoded_s:.1f} s; "
          f"ratio {decoded_s / cached_s:.0f}x (extraction, once: {extract_s:.1f} s)")
    return report


if __name__ == '__main__':
    main()
