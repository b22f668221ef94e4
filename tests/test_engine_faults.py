"""Faults a new user meets (damaged checkpoints, full or unwritable disks, bad values on the command line): each is a
one-line error naming the file or value and the fix, never a traceback, and none loses a finished run's checkpoint."""
import errno
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from efficient_video.core import override
from efficient_video.engine import (TrainConfig, ConfigError, CheckpointError, fit, find_checkpoint, read_metrics,
                                    trainable_state)
from efficient_video.samples import samples_dir

EXE = shutil.which("efficient-video") or str(Path(sys.executable).parent / "efficient-video")
MOTION = samples_dir() / "motion"


class Signs(Dataset):
    "4 classes of tiny random 'clips' (2 frames of 3×4×4) around 4 sign patterns: a linear model learns them."
    def __len__(self): return 32
    def __getitem__(self, i):
        y = i % 4
        centre = torch.tensor([[1., 1., 1.], [1., -1., 1.], [-1., 1., -1.], [-1., -1., -1.]])[y]
        return {'video': centre[None, :, None, None] + torch.randn(2, 3, 4, 4), 'label': y, 'index': i,
                'skipped': False, 'path': str(i)}


class MeanLinear(nn.Module):
    def __init__(self, k=4): super().__init__(); self.head = nn.Linear(3, k)
    def forward(self, x): return self.head(x.mean((1, 3, 4)))


def cfg_for(out: Path, **changes) -> TrainConfig:
    base = dict(frames=2, image_size=4, batch_size=8, max_steps=6, epochs=0, lr=0.1, warmup_epochs=0.0, num_workers=0,
                ckpt_every=2, keep_ckpts=3, log_every=1, device='cpu', output_dir=str(out))
    return override(TrainConfig(), {**base, **changes})


def fresh_model(seed=0):
    torch.manual_seed(seed)
    return MeanLinear()


class Stop(Exception): pass


def stop_at(n):
    def hook(step, info):
        if step == n: raise Stop()
    return hook


def cli(*args, cwd=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([EXE, *args], capture_output=True, text=True, env=env, timeout=600, cwd=cwd)


def one_line_error(p) -> str:
    "The CLI failed with status 2 and one 'efficient-video CMD: error: ...' message (a config error lists each problem on a line of its own), no traceback."
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    assert "Traceback" not in p.stderr, p.stderr[-2000:]
    starts = [i for i, l in enumerate(p.stderr.splitlines()) if l.startswith("efficient-video")]
    assert len(starts) == 1, p.stderr[-2000:]
    return "\n".join(p.stderr.splitlines()[starts[0]:])


def test_resume_auto_falls_back_to_the_newest_intact_checkpoint(tmp_path):
    "Half a model.safetensors in the latest checkpoint: resume=auto warns, continues from the one before, ends exact."
    full = fresh_model(); fit(full, Signs(), cfg_for(tmp_path / "full"))
    out = tmp_path / "cut"
    with pytest.raises(Stop): fit(fresh_model(), Signs(), cfg_for(out), on_step=stop_at(5))
    assert (out / "latest").read_text() == "step-0000004"
    weights = out / "step-0000004" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.warns(UserWarning, match="model.safetensors.*truncated or damaged.*newest intact checkpoint"):
        res = fit(resumed := fresh_model(seed=1), Signs(), cfg_for(out, resume="auto"))
    assert res["resumed_from"].endswith("step-0000002")
    for k, v in trainable_state(full).items(): assert torch.equal(v, trainable_state(resumed)[k]), k


def test_only_damaged_checkpoints_is_an_error_naming_the_file(tmp_path):
    out = tmp_path / "run"
    fit(fresh_model(), Signs(), cfg_for(out, max_steps=2))
    state = out / "step-0000002" / "state.pt"
    state.write_bytes(b"\0" * 10)
    with pytest.raises(CheckpointError, match=r"state\.pt.*truncated or damaged"):
        fit(fresh_model(), Signs(), cfg_for(out, resume="auto"))


def test_full_disk_at_the_final_save_keeps_the_run_consistent(tmp_path, monkeypatch):
    "ENOSPC while writing the final checkpoint: one error saying what a checkpoint needs, no debris, latest intact."
    out = tmp_path / "run"
    real_save, calls = torch.save, {"n": 0}
    def flaky_save(obj, f, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3: raise OSError(errno.ENOSPC, "No space left on device")   # the 3rd checkpoint: the final one
        return real_save(obj, f, *a, **k)
    monkeypatch.setattr(torch, "save", flaky_save)
    with pytest.raises(CheckpointError, match=r"no space left on the device\. A checkpoint needs about [\d.]+ MB"):
        fit(fresh_model(), Signs(), cfg_for(out))
    monkeypatch.setattr(torch, "save", real_save)
    assert (out / "latest").read_text() == "step-0000004" and find_checkpoint(out).name == "step-0000004"
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")], list(out.iterdir())
    res = fit(fresh_model(), Signs(), cfg_for(out, resume="auto"))      # free space again: the run finishes
    assert res["resumed_from"].endswith("step-0000004") and res["steps"] == 6
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_debris_of_a_killed_write_is_removed_at_the_next_start(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".tmp-step-0000002-999").mkdir()
    (out / ".latest.999.tmp").write_text("")            # a 0-byte temporary file of an interrupted pointer write
    fit(fresh_model(), Signs(), cfg_for(out, max_steps=2))
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_unwritable_output_folder_fails_before_training(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    model = fresh_model()
    before = trainable_state(model)
    with pytest.raises(ConfigError, match="is not a writable folder"):
        fit(model, Signs(), cfg_for(blocker / "run"))
    for k, v in trainable_state(model).items(): assert torch.equal(v, before[k])   # nothing trained


def subset(tmp_path: Path, n: int) -> str:
    p = tmp_path / f"train-{n}.txt"
    p.write_text("\n".join((MOTION / "train.txt").read_text().splitlines()[:n]) + "\n")
    return str(p)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    "One short CLI training run of the tiny preset (2 steps), shared by the CLI tests below."
    tmp = tmp_path_factory.mktemp("cli")
    out = tmp / "run"
    p = cli("train", f"output_dir={out}", f"train_list={subset(tmp, 16)}", f"video_root={MOTION}", "val_list=None",
            "test_list=None", "batch_size=8", "epochs=1", "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    return tmp, out


def test_cli_damaged_checkpoint_is_one_line(tiny_run):
    tmp, out = tiny_run
    damaged = tmp / "damaged"
    shutil.copytree(out / "step-0000002", damaged / "step-0000002")
    weights = damaged / "step-0000002" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    line = one_line_error(cli("eval", "--checkpoint", str(damaged / "step-0000002")))
    assert "model.safetensors" in line and "truncated or damaged" in line, line


def test_cli_resuming_into_another_number_of_classes_is_one_line(tiny_run):
    tmp, out = tiny_run
    line = one_line_error(cli("train", f"output_dir={tmp / 'k41'}", f"resume={out / 'step-0000002'}", "num_classes=41",
                              f"train_list={subset(tmp, 16)}", f"video_root={MOTION}", "val_list=None",
                              "test_list=None", "batch_size=8", "epochs=1"))
    assert "head.weight is (40," in line and "41" in line and "num_classes" in line, line


@pytest.mark.parametrize("args, says", [
    (("train", "betas=abc"), "betas='abc' must be two numbers"),
    (("train", "image_size=30"), "multiple of"),
    (("profile", "--method", "frame-average", "--backbone", "ViT-B-16", "--frames", "8", "--num-classes", "400",
      "--image-size", "7"), "multiple of 16"),
])
def test_cli_bad_values_are_one_line(args, says, tmp_path):
    line = one_line_error(cli(*args, f"output_dir={tmp_path / 'x'}") if args[0] == "train" else cli(*args))
    assert says in line, line


def test_cli_bad_label_in_a_val_list_fails_before_training(tmp_path):
    "A label outside 0..K-1 in the validation list is named (file:line) before any training: no run folder is written."
    bad = tmp_path / "val.txt"
    lines = (MOTION / "val.txt").read_text().splitlines()[:4] + ["val/000_left.mp4 57"]
    bad.write_text("\ufeff" + "\n".join(lines) + "\n")                   # with a UTF-8 BOM, as some editors save it
    out = tmp_path / "run"
    line = one_line_error(cli("train", f"output_dir={out}", f"train_list={subset(tmp_path, 16)}", f"video_root={MOTION}",
                              f"val_list={bad}", "test_list=None", "batch_size=8", "epochs=1"))
    assert f"{bad}:5" in line and "label 57" in line and "num_classes" in line, line
    assert not (out / "metrics.jsonl").exists()
