"""A tiny training run through `efficient_video.engine.fit`, for the engine's tests (DDP equivalence, SIGKILL resume).

    python tests/train_worker.py OUT_DIR [key=value ...]                                    # one process
    torchrun --standalone --nproc_per_node=2 tests/train_worker.py OUT_DIR [key=value ...]  # DDP on CPU (gloo)

The config is the `frame-average-tiny` preset with `key=value` overrides; the model is a small 3-D conv net whose every
parameter trains (a stronger DDP check than a lone linear head), or with `WORKER_METHODS=aim,vpt,...` each of those
registered methods in turn on the test-sized `ev-tiny-vit` (random weights, output in OUT_DIR/<method>).
Environment: `KILL_AT_STEP=n` sends SIGKILL to this process right after optimizer step n; `WORKER_DROPOUT=p` adds
dropout (so resuming must restore the RNG). Rank 0 writes the final trainable weights to OUT_DIR/final.safetensors.
"""
import os
import signal
import sys
from pathlib import Path

import torch
from torch import nn
import torch.distributed as dist
from safetensors.torch import save_file

from efficient_video.distributed import init_distributed
from efficient_video.data import build_dataset, read_class_names
from efficient_video.checkpoints import trainable_state
from efficient_video.engine import fit
from efficient_video.train import load_config
from efficient_video.methods import build_model, get_method

torch.set_num_threads(1)   # tests share a small CPU; one thread per process


class TinyVideoNet(nn.Module):
    "B×T×C×H×W -> B×K: a (1,3,3) conv per frame, a (3,1,1) conv over time, pooling, a linear head."
    def __init__(self, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.spatial = nn.Conv3d(3, 6, (1, 3, 3), padding=(0, 1, 1))
        self.temporal = nn.Conv3d(6, 6, (3, 1, 1), padding=(1, 0, 0))
        self.norm = nn.LayerNorm(6)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(6, num_classes)

    def forward(self, video):
        x = video.transpose(1, 2)                                   # B×C×T×H×W for Conv3d
        x = torch.relu(self.temporal(torch.relu(self.spatial(x))))
        return self.head(self.drop(self.norm(x.mean((2, 3, 4)))))   # pool T, H, W -> B×6 -> B×K


def method_model(name, cfg, dropout: float):
    "Registered method `name` on the test-sized open_clip tower (random weights), for clips of the config's size."
    method = get_method(name)
    options = {'dropout': dropout} if 'dropout' in method.options else {}
    if 'text' in method.towers: options['class_names'] = read_class_names(cfg)
    if 'prefix' in method.options: options.update(prefix=2, postfix=2)        # prompts that fit the tiny text tower
    if 'adapter_dropout' in method.options: options['adapter_dropout'] = dropout
    if 'grid' in method.options: options.update(grid='2x2', spatial_frames=2)  # DualPath: 4 frames = one 2x2 grid set
    return build_model(method, 'ev-tiny-vit', 40, cfg.frames, image_size=cfg.image_size, **options)


def run(out, overrides, env, method=None):
    cfg = load_config('frame-average-tiny', [f'output_dir={out}', 'feature_cache=None', *overrides])
    dropout = float(os.environ.get('WORKER_DROPOUT', '0'))
    torch.manual_seed(cfg.seed)                                     # same initial weights on every rank
    model = method_model(method, cfg, dropout) if method else TinyVideoNet(40, dropout)
    torch.manual_seed(cfg.seed + env.rank)                          # per-rank dropout stream
    kill_at = int(os.environ.get('KILL_AT_STEP', '0'))
    def on_step(step, info):
        if step == kill_at: os.kill(os.getpid(), signal.SIGKILL)   # no cleanup, no atexit: a real crash
    val_set = build_dataset(cfg, 'val') if cfg.val_list else None
    fit(model, build_dataset(cfg, 'train'), cfg, val_set=val_set, num_classes=40, env=env,
        on_step=on_step if kill_at else None)
    if env.is_main: save_file(trainable_state(model), str(out/'final.safetensors'))


def main(argv):
    out, overrides = Path(argv[0]), argv[1:]
    env = init_distributed('cpu')
    methods = [m for m in os.environ.get('WORKER_METHODS', '').split(',') if m]
    for m in methods or [None]: run(out/m if m else out, overrides, env, m)
    if env.distributed: dist.destroy_process_group()


if __name__ == '__main__':
    main(sys.argv[1:])
