"""The training engine's end-to-end guarantees (issue 4): DDP equivalence (classification and contrastive
pretraining), exact resume after SIGKILL, and a corrupt video that does not stop the epoch. Each test runs a few
optimizer steps of a tiny model on the shipped motion clips or composed image-caption pairs."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from efficient_video.samples import samples_dir
from efficient_video.core import override
from efficient_video.pretrain import PretrainConfig, build_clip
from efficient_video.data import build_dataset
from efficient_video.run_folder import read_metrics
from efficient_video.checkpoints import trainable_state
from efficient_video.engine import ClassificationLoss, fit
from efficient_video.train import load_config
from train_worker import TinyVideoNet   # tests/ is on sys.path (pytest's rootdir-relative import of test modules)

WORKER = Path(__file__).with_name('train_worker.py')
MOTION = samples_dir()/'motion'


def subset(tmp_path: Path, n: int, extra: tuple[str, ...] = ()) -> str:
    "A list file with the first `n` training clips of the motion benchmark (plus `extra` lines)."
    lines = (MOTION/'train.txt').read_text().splitlines()[:n] + list(extra)
    p = tmp_path/f'train-{n}.txt'
    p.write_text('\n'.join(lines) + '\n')
    return str(p)


def run_worker(out: Path, args: list, nproc: int = 1, env: dict | None = None, check: bool = True):
    "Run tests/train_worker.py in 1 process, or under torchrun with `nproc` CPU processes (gloo)."
    launcher = [sys.executable] if nproc == 1 else \
        [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={nproc}']
    full_env = {**os.environ, 'OMP_NUM_THREADS': '1', 'HF_HUB_OFFLINE': '1', **(env or {})}
    p = subprocess.run(launcher + [str(WORKER), str(out), *args], env=full_env, capture_output=True, text=True, timeout=300)
    if check: assert p.returncode == 0, p.stderr[-3000:]
    return p


def common(tmp_path, n=16):
    return [f'train_list={subset(tmp_path, n)}', f'video_root={MOTION}', 'val_list=None', 'test_list=None', 'shift_list=None',
            'frames=4', 'image_size=16', 'num_workers=0', 'log_every=1', 'warmup_epochs=0.5', 'lr=0.01']


def test_ddp_equals_one_process_with_the_global_batch(tmp_path):
    "2 gloo ranks × micro-batch 4 give the parameters of 1 process × batch 8 after 4 optimizer steps (to 1e-5)."
    args = common(tmp_path) + ['batch_size=8', 'epochs=2', 'ckpt_every=0']
    run_worker(tmp_path/'one', args)
    run_worker(tmp_path/'ddp', args, nproc=2)
    one, ddp = load_file(tmp_path/'one'/'final.safetensors'), load_file(tmp_path/'ddp'/'final.safetensors')
    init = read_metrics(tmp_path/'ddp', 'start')[0]
    assert (init['world_size'], init['micro_batch'], init['total_steps']) == (2, 4, 4)
    assert sorted(one) == sorted(ddp) and len(one) == 8
    for k in one: torch.testing.assert_close(ddp[k], one[k], atol=1e-5, rtol=0, msg=k)
    # the same steps really moved the weights (a no-op training would pass the comparison too)
    torch.manual_seed(0)
    start = trainable_state(TinyVideoNet(40))
    assert max((one[k] - start[k]).abs().max().item() for k in one) > 1e-3
    # metrics are reduced over ranks: rank 0's log counts the samples of both
    assert [r['samples'] for r in read_metrics(tmp_path/'ddp', 'train')] == [8, 8, 8, 8]


def test_resume_after_sigkill_is_exact(tmp_path):
    """A run SIGKILLed twice — after step 5 (last checkpoint: step 4, an epoch end followed by validation) and after
    step 7 (checkpoint 6, mid-epoch) — and resumed each time ends with the weights of an uninterrupted run, bit for
    bit. With dropout, so the RNG states must come back too, and validation must not disturb them."""
    val = subset(tmp_path, 8)
    args = common(tmp_path) + ['batch_size=4', 'epochs=2', 'ckpt_every=2', f'val_list={val}']   # 4 steps per epoch
    env = {'WORKER_DROPOUT': '0.5'}
    run_worker(tmp_path/'full', args, env=env)
    for kill_at, last in ((5, 'step-0000004'), (7, 'step-0000006')):
        resume = ['resume=auto'] if kill_at == 7 else []
        killed = run_worker(tmp_path/'cut', args + resume, env={**env, 'KILL_AT_STEP': str(kill_at)}, check=False)
        assert killed.returncode == -9, (killed.returncode, killed.stderr[-2000:])
        assert (tmp_path/'cut'/'latest').read_text() == last
    assert not (tmp_path/'cut'/'final.safetensors').exists()
    run_worker(tmp_path/'cut', args + ['resume=auto'], env=env)
    start = read_metrics(tmp_path/'cut', 'start')
    assert [s['step'] for s in start] == [0, 4, 6] and start[2]['resumed_from'].endswith('step-0000006')
    full, res = load_file(tmp_path/'full'/'final.safetensors'), load_file(tmp_path/'cut'/'final.safetensors')
    for k in full: assert torch.equal(full[k], res[k]), k
    # step 5 ran twice (before the first kill and after the first resume) and logged the same loss both times
    losses = {}
    for r in read_metrics(tmp_path/'cut', 'train', superseded=True): losses.setdefault(r['step'], []).append(r['loss'])
    assert len(losses[5]) == 2 and losses[5][0] == losses[5][1]
    # by default the reader keeps one record per step: the one of the run that got past it
    steps = [r['step'] for r in read_metrics(tmp_path/'cut', 'train')]
    assert steps == sorted(set(steps)) and steps == [r['step'] for r in read_metrics(tmp_path/'full', 'train')]


def test_corrupt_video_does_not_stop_the_epoch(tmp_path):
    "A corrupt file in the training list is skipped; the epoch completes and the skipped count and path are logged."
    bad = tmp_path/'corrupt.mp4'
    bad.write_bytes(b'\x00\x00\x00\x18ftypmp42' + os.urandom(2000))   # an MP4 header, then garbage
    cfg = load_config('frame-average-tiny', common(tmp_path, 7) + [f'output_dir={tmp_path/"run"}', 'batch_size=4',
                      'epochs=2', 'ckpt_every=0'])
    cfg = override(cfg, train_list=subset(tmp_path, 7, (f'{bad} 3',)))   # 7 good clips + 1 corrupt one
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # a tiny model: threads only add overhead on a shared CPU
    try:
        with pytest.warns(UserWarning, match='skipping (undecodable|unreadable) video'):
            res = fit(TinyVideoNet(40), build_dataset(cfg, 'train'), cfg)
    finally: torch.set_num_threads(threads)
    assert res['steps'] == 4 and res['skipped_total'] == 2                     # 2 epochs × 1 corrupt file
    skipped = read_metrics(tmp_path/'run', 'skipped')
    assert len(skipped) == 2 and all(r['count'] == 1 and r['paths'] == [str(bad)] for r in skipped)
    assert sum(r['samples'] for r in read_metrics(tmp_path/'run', 'train')) == 2 * 7


def test_all_skipped_batch_gives_zero_gradients():
    "A micro-batch whose every video failed still runs a forward (DDP stays in step) with a zero loss and zero grads."
    model = TinyVideoNet(40)
    batch = {'video': torch.empty(0), 'label': torch.empty(0, dtype=torch.long), 'skipped': 2}
    loss, stats = ClassificationLoss((4, 3, 16, 16))(model, batch, torch.device('cpu'))
    loss.backward()
    assert loss.item() == 0 and stats == {'n': 0, 'correct': 0, 'skipped': 2}
    assert all(p.grad is not None and p.grad.abs().sum() == 0 for p in model.parameters())


@pytest.mark.parametrize('positives', ['caption', 'truth'])
def test_pretraining_on_two_ranks_equals_one_process(tmp_path, positives):
    """Contrastive pretraining through the CLI under torchrun: 2 gloo ranks × 8 pairs end with the parameters of 1
    process × 16 pairs after 3 steps (to 1e-5). The loss is over the global batch (features all-gathered, and with
    positives='truth' the labels that make its mask too) and the features' gradients are scaled by the world size,
    so DDP's average is the full-batch gradient."""
    exe = shutil.which('efficient-video')
    assert exe, 'the efficient-video console script is not installed'
    args = ['pretrain-clip', '--steps', '3', '--eval-every', '0', 'batch_size=16', 'pool=64', 'final_eval_n=100',
            f'positives={positives}']
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'HF_HUB_OFFLINE': '1'}
    for name, nproc in (('one', 1), ('ddp', 2)):
        launcher = [sys.executable, exe] if nproc == 1 else \
            [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={nproc}', exe]
        p = subprocess.run(launcher + args + ['--out', str(tmp_path/name)], env=env, capture_output=True, text=True,
                           timeout=600)
        assert p.returncode == 0, p.stderr[-3000:]
    start = read_metrics(tmp_path/'ddp'/'run', 'start')[0]
    assert (start['world_size'], start['micro_batch'], start['total_steps']) == (2, 8, 3)
    one = load_file(tmp_path/'one'/'run'/'step-0000003'/'model.safetensors')
    ddp = load_file(tmp_path/'ddp'/'run'/'step-0000003'/'model.safetensors')
    assert sorted(one) == sorted(ddp)
    for k in one: torch.testing.assert_close(ddp[k], one[k], atol=1e-5, rtol=0, msg=k)
    # Adam's first steps hardly depend on the gradient's scale, so compare the gradient norm itself (before clipping):
    # with open_clip's convention (full_batch_grad=False) the DDP run's would be about half of the single process's
    norms = [read_metrics(tmp_path/name/'run', 'train')[-1]['grad_norm'] for name in ('one', 'ddp')]
    assert abs(norms[1] - norms[0]) <= 1e-4 * norms[0], norms
    init = build_clip(PretrainConfig()).model.state_dict()     # the weights both runs started from
    assert max((one[k] - init[k]).abs().max().item() for k in one) > 1e-4
    assert (tmp_path/'ddp'/'open_clip_model.safetensors').is_file()   # rank 0 wrote the model folder


METHODS = ('frame-average', 'first-last-mlp', 'efficient-prompt', 'vpt', 'adaptformer', 'pro-tuning', 'st-adapter', 'aim', 'dualpath')


def test_every_method_is_under_test():
    "Every registered method (a later chapter's too) is in METHODS, so the resume test below covers it."
    from efficient_video.methods import list_methods
    assert set(list_methods()) <= set(METHODS), set(list_methods()) - set(METHODS)


def test_resume_after_sigkill_is_exact_for_every_method(tmp_path):
    """Each registered method on the test-sized tower (random weights, dropout where it has one), SIGKILLed after step 3
    (checkpoint: step 2) and resumed, ends with the weights of its uninterrupted run, bit for bit."""
    args = common(tmp_path) + ['batch_size=4', 'epochs=1', 'ckpt_every=2']   # 16 clips: 4 steps
    env = {'WORKER_DROPOUT': '0.5', 'WORKER_METHODS': ','.join(METHODS)}
    run_worker(tmp_path/'full', args, env=env)                               # every method, uninterrupted
    for m in METHODS:
        killed = run_worker(tmp_path/'cut', args, env={**env, 'WORKER_METHODS': m, 'KILL_AT_STEP': '3'}, check=False)
        assert killed.returncode == -9, (m, killed.returncode, killed.stderr[-2000:])
        assert (tmp_path/'cut'/m/'latest').read_text() == 'step-0000002', m
    run_worker(tmp_path/'cut', args + ['resume=auto'], env=env)              # every method resumes from its step 2
    for m in METHODS:
        full, res = load_file(tmp_path/'full'/m/'final.safetensors'), load_file(tmp_path/'cut'/m/'final.safetensors')
        assert sorted(full) == sorted(res) and full, m
        for k in full: assert torch.equal(full[k], res[k]), (m, k)


@pytest.mark.parametrize('method', ['aim', 'dualpath'])
def test_ddp_equals_one_process_for_adapter_methods(tmp_path, method):
    """AIM / DualPath on 2 gloo ranks × micro-batch 4 ends with the parameters of 1 process × batch 8 (no find_unused_parameters).
    Adam divides by the gradient's running RMS, so where a gradient is ~0 (the adapters' down-projections see none while
    their zero up-projections stay near zero) it turns float rounding into full-size updates; a larger ε keeps the
    comparison about the gradients that DDP averages, which is what is tested."""
    args = common(tmp_path) + ['batch_size=8', 'epochs=2', 'ckpt_every=0', 'eps=1e-3']
    env = {'WORKER_METHODS': method}
    run_worker(tmp_path/'one', args, env=env)
    run_worker(tmp_path/'ddp', args, nproc=2, env=env)
    one, ddp = load_file(tmp_path/'one'/method/'final.safetensors'), load_file(tmp_path/'ddp'/method/'final.safetensors')
    assert sorted(one) == sorted(ddp) and any('t_adapter' in k for k in one)
    for k in one: torch.testing.assert_close(ddp[k], one[k], atol=1e-5, rtol=0, msg=k)
    assert read_metrics(tmp_path/'ddp'/method, 'start')[0]['world_size'] == 2
    assert all(one[k].abs().max() > 0 for k in one if k.endswith('up.weight'))   # the zero-initialised adapters trained


DIVERGE = """
import sys
from pathlib import Path
import torch
import torch.distributed as dist
sys.path.insert(0, sys.argv[1])
from train_worker import TinyVideoNet
from efficient_video.distributed import init_distributed
from efficient_video.data import build_dataset
from efficient_video.engine import ClassificationLoss, fit
from efficient_video.train import load_config

out, overrides = Path(sys.argv[2]), sys.argv[3:]
cfg = load_config('frame-average-tiny', [f'output_dir={out}', 'feature_cache=None', *overrides])
env = init_distributed('cpu')
inner, calls = ClassificationLoss((4, 3, 16, 16)), [0]
def loss_fn(model, batch, device):       # rank 1's loss turns NaN at its 3rd step; rank 0's stays finite
    calls[0] += 1
    loss, stats = inner(model, batch, device)
    return (loss * float('nan') if env.rank == 1 and calls[0] >= 3 else loss), stats
torch.manual_seed(0)
try: fit(TinyVideoNet(40), build_dataset(cfg, 'train'), cfg, loss_fn=loss_fn, env=env)
except FloatingPointError as e:          # one file per rank: two ranks printing to one pipe can interleave their lines
    (out.parent/f'stopped-{env.rank}.txt').write_text(f'rank {env.rank}: {type(e).__name__}: {e}')
dist.destroy_process_group()
"""


def test_a_nan_loss_on_one_rank_stops_every_rank_before_the_update(tmp_path):
    """Issue 19.2 under DDP: rank 1's loss is NaN at step 3. The count of non-finite losses is all-reduced, so both
    ranks stop at step 3 (none waits for the other in a collective), and `latest` stays on step 2's finite weights."""
    script = tmp_path/'diverge.py'
    script.write_text(DIVERGE)
    out = tmp_path/'run'
    args = common(tmp_path) + ['batch_size=8', 'epochs=2', 'ckpt_every=2']
    p = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', str(script),
                        str(Path(__file__).parent), str(out), *args], capture_output=True, text=True, timeout=300,
                       env={**os.environ, 'OMP_NUM_THREADS': '1', 'HF_HUB_OFFLINE': '1'})
    assert p.returncode == 0, p.stderr[-3000:]
    stopped = [f.read_text() for f in sorted(tmp_path.glob('stopped-*.txt'))]
    assert len(stopped) == 2 and all('DivergedError' in l and 'step 3' in l for l in stopped), (stopped, p.stdout[-2000:])
    assert 'not finite on another rank' in stopped[0] and 'is nan' in stopped[1], stopped
    assert (out/'latest').read_text() == 'step-0000002' and not (out/'step-0000004').exists()
    for v in load_file(out/'step-0000002'/'model.safetensors').values(): assert torch.isfinite(v).all()
    assert not (out/'run.lock').exists()        # rank 0 took the folder's lock, and gave it back when it stopped
