"""Faults a new user meets (damaged checkpoints, full or unwritable disks, bad values on the command line): each is a
one-line error naming the file or value and the fix, never a traceback, and none loses a finished run's checkpoint."""
import contextlib
import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import Dataset

from efficient_video.core import override
from efficient_video.config import TrainConfig, ConfigError
from efficient_video.run_folder import read_metrics
from efficient_video.checkpoints import CheckpointError, find_checkpoint, trainable_state
from efficient_video.engine import ClassificationLoss, fit
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


def dead_pid() -> int:
    "The pid of a process that has exited (and been waited for)."
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def debris_of_a_dead_writer(folder: Path, name: str) -> Path:
    "The temporary file a process killed while writing `folder/name` leaves: written by a process that then exits."
    code = ("import sys; from pathlib import Path; from efficient_video.run_folder import temporary_path; "
            "p = temporary_path(Path(sys.argv[1])); p.write_text(''); print(p.name)")
    p = subprocess.run([sys.executable, "-c", code, str(folder / name)], capture_output=True, text=True, check=True)
    return folder / p.stdout.strip()


def test_debris_of_a_killed_write_is_removed_at_the_next_start(tmp_path):
    "What dead runs of this package left in a run folder (a temporary pointer, a temporary checkpoint) goes at the next start."
    out = tmp_path / "run"
    fit(fresh_model(), Signs(), cfg_for(out, max_steps=2))
    old = out / f".tmp-step-0000004-{dead_pid()}"          # a temporary checkpoint, as earlier versions named them
    old.mkdir()
    pointer = debris_of_a_dead_writer(out, "latest")        # a 0-byte temporary file of an interrupted pointer write
    assert pointer.exists()
    fit(fresh_model(), Signs(), cfg_for(out, max_steps=4, resume="auto"))
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_only_debris_of_dead_runs_of_this_package_is_removed(tmp_path):
    """Issue 19.7: pointing output_dir at an existing folder removes nothing of the user's (`.*.tmp` files, folders
    named like temporary checkpoints) and, in a folder this package never ran in, not even what looks like its debris."""
    plain = tmp_path / "plain"
    plain.mkdir()
    mine = [plain / ".notes.tmp", plain / ".draft.1.tmp"]
    for f in mine: f.write_text("the user's")
    (plain / ".tmp-step-0000002-backup").mkdir()
    looks_like_ours = plain / f".tmp-step-0000002-{dead_pid()}"
    looks_like_ours.mkdir()
    fit(fresh_model(), Signs(), cfg_for(plain, max_steps=2))
    for f in mine: assert f.read_text() == "the user's", f
    assert (plain / ".tmp-step-0000002-backup").is_dir() and looks_like_ours.is_dir()
    # in a run folder: the dead run's temporary checkpoint goes at the next start, the user's files stay
    fit(fresh_model(), Signs(), cfg_for(plain, max_steps=4, resume="auto"))
    assert not looks_like_ours.exists()
    for f in mine: assert f.read_text() == "the user's", f
    assert (plain / ".tmp-step-0000002-backup").is_dir()


def test_unwritable_output_folder_fails_before_training(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    model = fresh_model()
    before = trainable_state(model)
    with pytest.raises(ConfigError, match="is not a writable folder"):
        fit(model, Signs(), cfg_for(blocker / "run"))
    for k, v in trainable_state(model).items(): assert torch.equal(v, before[k])   # nothing trained


@pytest.mark.parametrize("field, value", [
    ("lr", "inf"), ("weight_decay", "nan"), ("weight_decay", "inf"), ("warmup_epochs", "inf"), ("warmup_epochs", "nan"),
    ("min_lr", "nan"), ("eps", "nan"), ("clip_grad", "nan"), ("clip_grad", "inf"), ("label_smoothing", "nan"),
    ("drop_path", "inf"),
])
def test_non_finite_numbers_are_refused_before_training(tmp_path, field, value):
    "Issue 19.2: every float field of TrainConfig must be finite; inf/NaN used to be accepted and train to NaN."
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=rf"{field}={value} must be a finite number"):
        fit(fresh_model(), Signs(), cfg_for(out, **{field: float(value)}))
    assert not (out / "latest").exists()


class NaNFrom:
    "The classification loss, turned NaN from its `n`-th call on (a batch or a step gone bad)."
    def __init__(self, n): self.n, self.calls, self.inner = n, 0, ClassificationLoss((2, 3, 4, 4))
    def __call__(self, model, batch, device):
        self.calls += 1
        loss, stats = self.inner(model, batch, device)
        return (loss * float("nan") if self.calls >= self.n else loss), stats


def test_a_loss_turning_nan_stops_the_run_before_latest_moves(tmp_path):
    "Issue 19.2: the loss of step 4 is NaN: the run stops naming step 4; latest stays on step 2, the weights are not updated."
    out, model = tmp_path / "run", fresh_model()
    with pytest.raises(FloatingPointError, match=r"loss of step 4 is nan.*latest still names step-0000002") as e:
        fit(model, Signs(), cfg_for(out), loss_fn=NaNFrom(4))
    assert e.type.__name__ == "DivergedError" and e.type.__module__ == "efficient_video.engine"
    assert (out / "latest").read_text() == "step-0000002" and [p.name for p in out.glob("step-*")] == ["step-0000002"]
    for v in trainable_state(model).values(): assert torch.isfinite(v).all()      # step 4's update was not applied
    assert [r["step"] for r in read_metrics(out, "diverged")] == [4]


def test_weights_blown_up_by_a_huge_lr_never_become_latest(tmp_path):
    "Issue 19.2: lr=1e30 is finite but makes the weights inf/NaN: the run stops, and every checkpoint kept is finite."
    out = tmp_path / "run"
    with pytest.raises(FloatingPointError, match=r"step \d.*(non-finite|is nan|is inf)"):
        fit(fresh_model(), Signs(), cfg_for(out, lr=1e30))
    for ck in out.glob("step-*"):
        for k, v in load_file(ck / "model.safetensors").items(): assert torch.isfinite(v).all(), (ck.name, k)


def test_runtime_error_of_torch_save_on_a_full_disk_is_a_checkpoint_error(tmp_path, monkeypatch):
    """Issue 19.4: on a full disk torch.save raises RuntimeError (seen on a 200 KB tmpfs: 'unexpected pos ...'), which
    `except OSError` missed: a traceback and a temporary checkpoint folder left behind."""
    out = tmp_path / "run"
    real_save, calls = torch.save, {"n": 0}
    def full_disk(obj, f, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:                          # the 2nd checkpoint: half written, then the stream fails
            Path(f).write_bytes(b"\0" * 100)
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 11072 vs 11024")
        return real_save(obj, f, *a, **k)
    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(CheckpointError, match=r"could not write the checkpoint of step 4.*unexpected pos"):
        fit(fresh_model(), Signs(), cfg_for(out))
    assert (out / "latest").read_text() == "step-0000002" and find_checkpoint(out).name == "step-0000002"
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")], list(out.iterdir())


def test_resume_auto_skips_a_checkpoint_that_verifies_but_cannot_be_loaded(tmp_path):
    """Issue 19.9: the newest checkpoint passes its manifest (the manifest was written for the bad file) but its
    state.pt cannot be loaded: resume=auto says which checkpoint it skipped and why, continues from the one before,
    and ends exactly where an uninterrupted run ends."""
    full = fresh_model(); fit(full, Signs(), cfg_for(tmp_path / "full"))
    out = tmp_path / "cut"
    with pytest.raises(Stop): fit(fresh_model(), Signs(), cfg_for(out), on_step=stop_at(5))
    ck = out / "step-0000004"
    (ck / "state.pt").write_bytes(b"not a torch file")
    manifest = json.loads((ck / "manifest.json").read_text())
    manifest["state.pt"] = {"bytes": 16, "sha256": hashlib.sha256(b"not a torch file").hexdigest()}
    (ck / "manifest.json").write_text(json.dumps(manifest))
    assert find_checkpoint(out) == ck                                    # it verifies
    with pytest.warns(UserWarning, match=r"step-0000004.*state\.pt.*cannot be read.*using .*step-0000002"):
        res = fit(resumed := fresh_model(seed=1), Signs(), cfg_for(out, resume="auto"))
    assert res["resumed_from"].endswith("step-0000002")
    for k, v in trainable_state(full).items(): assert torch.equal(v, trainable_state(resumed)[k]), k


HOLDER = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from test_engine_faults import Signs, fresh_model, cfg_for
from efficient_video.engine import fit
out, go = Path(sys.argv[2]), Path(sys.argv[3])
def hold(step, info):
    if step == 1:
        (out.parent / "holder-at-step-1").touch()
        t0 = time.time()
        while not go.exists() and time.time() - t0 < 300: time.sleep(0.05)
fit(fresh_model(), Signs(), cfg_for(out, max_steps=4), on_step=hold)
"""


def start_holder(tmp_path: Path, out: Path):
    "A training run in another process, paused after its first step (until `go` appears)."
    go = tmp_path / "go"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(Path(__file__).parent), str(out), str(go)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not (tmp_path / "holder-at-step-1").exists():
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.time() - t0 < 300
        time.sleep(0.05)
    return proc, go


def test_a_second_run_on_a_busy_output_dir_fails_at_once_naming_the_holder(tmp_path):
    """Issue 19.3: two runs on one output_dir: the second fails at once, naming the first (pid, host), and deletes
    nothing of it (not its temporary checkpoint); the first finishes with its log alone in metrics.jsonl."""
    out = tmp_path / "run"
    proc, go = start_holder(tmp_path, out)
    in_progress = out / f".tmp-step-0000002-{proc.pid}"      # a live run's temporary checkpoint (earlier naming)
    in_progress.mkdir()
    try:
        with pytest.raises(ConfigError, match=rf"in use by another run: pid {proc.pid} on "):
            fit(fresh_model(), Signs(), cfg_for(out, max_steps=2))
        assert in_progress.is_dir()
    finally:
        go.touch()
        assert proc.wait(timeout=300) == 0, proc.stderr.read()[-3000:]
    in_progress.rmdir()
    assert [r["kind"] for r in read_metrics(out, superseded=True)].count("start") == 1
    assert (out / "latest").read_text() == "step-0000004"
    res = fit(fresh_model(), Signs(), cfg_for(out, max_steps=6, resume="auto"))   # the folder is free again
    assert res["resumed_from"].endswith("step-0000004")
    assert not (out / "run.lock").exists()


def test_the_lock_of_a_killed_run_is_released_and_its_debris_removed(tmp_path):
    "SIGKILL cannot run cleanup code: the OS releases the lock, and the next run removes the dead run's temporary files."
    out = tmp_path / "run"
    proc, go = start_holder(tmp_path, out)
    left = out / f".tmp-step-0000002-{proc.pid}"
    left.mkdir()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    fit(fresh_model(), Signs(), cfg_for(out, max_steps=2))
    assert not left.exists()


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
            "test_list=None", "shift_list=None", "batch_size=8", "epochs=1", "--json")
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
                              "class_names=None",          # (the preset's 40 names would be refused before that)
                              f"train_list={subset(tmp, 16)}", f"video_root={MOTION}", "val_list=None",
                              "test_list=None", "shift_list=None", "batch_size=8", "epochs=1"))
    assert "head.weight is (40," in line and "41" in line and "num_classes" in line, line


@pytest.mark.parametrize("args, says", [
    (("train", "betas=abc"), "betas='abc' must be two numbers"),
    (("train", "image_size=30"), "multiple of"),
    (("train", "lr=inf"), "lr=inf must be a finite number"),
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
                              f"val_list={bad}", "test_list=None", "shift_list=None", "batch_size=8", "epochs=1"))
    assert f"{bad}:5" in line and "label 57" in line and "num_classes" in line, line
    assert not (out / "metrics.jsonl").exists()


@contextlib.contextmanager
def read_only(folder: Path):
    "`folder` read-only for this process: chmod where that binds us, else (root) a read-only bind mount; skip if neither."
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")] if p.is_dir()}
        for p in modes: p.chmod(0o555)
        try: yield folder
        finally:
            for p, m in modes.items(): p.chmod(m)
        return
    if subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True).returncode:
        pytest.skip("cannot make a read-only folder here (root without mount)")
    try:
        if subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], capture_output=True).returncode:
            pytest.skip("cannot remount read-only here")
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True)


def eight_tests(tmp_path: Path) -> str:
    "`test_list=` the first 8 test clips of the motion benchmark (the tiny run was trained without a test list)."
    tests = tmp_path / "test-8.txt"
    tests.write_text("\n".join((MOTION / "test.txt").read_text().splitlines()[:8]) + "\n")
    return f"test_list={tests}"


def test_cli_eval_of_a_read_only_checkpoint_writes_where_asked(tiny_run, tmp_path):
    """Issue 19.6: eval on a read-only checkpoint used to write test.json into it and fail with a traceback. Now it
    tests it, says nothing was written there, and writes to --out when given."""
    tmp, out = tiny_run
    ro = tmp_path / "ro"
    shutil.copytree(out / "step-0000002", ro / "step-0000002")
    test = eight_tests(tmp_path)
    with read_only(ro):
        p = cli("eval", "--checkpoint", str(ro / "step-0000002"), test, f"video_root={MOTION}", "--json")
        assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr[-2000:]
        assert json.loads(p.stdout)["n"] == 8 and json.loads(p.stdout)["results_dir"] is None
        assert "is not writable" in p.stderr and "--out" in p.stderr, p.stderr[-2000:]
        p = cli("eval", "--checkpoint", str(ro / "step-0000002"), test, f"video_root={MOTION}", "--out",
                str(tmp_path / "results"), "--json")
        assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads((tmp_path / "results" / "test.json").read_text())["n"] == 8
    assert not (ro / "step-0000002" / "test.json").exists()


@pytest.mark.parametrize("args, says", [
    (("--views", "-2"), "--views: -2: at least 1"),
    (("--views", "0"), "--views: 0: at least 1"),
    (("--crops", "2"), "--crops: invalid choice: 2 (choose from 1, 3)"),
])
def test_cli_eval_views_and_crops_it_cannot_do_are_refused(tiny_run, args, says, tmp_path):
    "Issue 19.6: --views -2 was a traceback, --views 0 silently 1, --crops 2 evaluated one crop but reported 2."
    tmp, out = tiny_run
    assert says in one_line_error(cli("eval", "--checkpoint", str(out), eight_tests(tmp_path), *args))


def test_cli_eval_class_names_of_another_count_is_one_line(tiny_run, tmp_path):
    "Issue 19.6: a class list of 39 names for a 40-class checkpoint was accepted."
    tmp, out = tiny_run
    names = tmp_path / "classes-39.txt"
    names.write_text("\n".join((MOTION / "classes.txt").read_text().splitlines()[:39]) + "\n")
    line = one_line_error(cli("eval", "--checkpoint", str(out), f"class_names={names}", eight_tests(tmp_path)))
    assert "lists 39 classes, but num_classes=40" in line, line


def test_cli_unwritable_output_folders_are_one_line(tmp_path):
    "Issue 19.8: `demo --out`, a random-init run's output_dir and the feature cache on a file: one line each, no traceback."
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    line = one_line_error(cli("demo", "--out", str(a_file), "--methods", "frame-average", "--epochs", "1"))
    assert "--out" in line and "is a file, not a folder" in line, line
    common = (f"train_list={subset(tmp_path, 16)}", f"video_root={MOTION}", "val_list=None", "test_list=None", "shift_list=None",
              "batch_size=8", "epochs=1")
    line = one_line_error(cli("train", f"output_dir={a_file}", "pretrained=None", "backbone=ev-tiny-vit", *common))
    assert "output_dir" in line and "not a folder" in line, line
    line = one_line_error(cli("train", f"output_dir={tmp_path / 'run'}", f"feature_cache={a_file}", *common))
    assert str(a_file) in line, line


# ---------------------------------------------------------------------------------------------------- class files
@pytest.mark.parametrize("name, data, where", [
    ("classes.txt", "zumba\ncafé\n", "classes.txt:2"),
    ("classes.json", '["zumba",\n "café"]', "classes.json:2")])
def test_a_class_file_that_is_not_utf8_is_named_with_its_line(tmp_path, name, data, where):
    from efficient_video.data import read_class_names
    path = tmp_path / name
    path.write_bytes(data.encode("latin-1"))
    with pytest.raises(ValueError) as ei:
        read_class_names(override(TrainConfig(), {"class_names": str(path)}))
    msg = str(ei.value)
    assert str(tmp_path / where) in msg and "not UTF-8" in msg and "\n" not in msg, msg
