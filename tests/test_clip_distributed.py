"""ContrastiveLoss in a real 2-process torch.distributed (gloo, CPU) group equals one process holding the whole batch.

Compared: the loss on every rank; the gradients w.r.t. each rank's image and text features (rank r's gradient must
equal rows r*B/W:(r+1)*B/W of the full-batch gradient, no scaling); the gradient w.r.t. the log-scale t (every rank
holds the whole full-batch dℓ/dt). Then the same under DistributedDataParallel, which *averages* gradients over the
W ranks: tower parameters end up with (1/W) × the full-batch gradient, t with exactly the full-batch gradient.
"""
import math, os, socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from efficient_video.clip import INIT_LOGIT_SCALE, ContrastiveLoss, LogitScale, clip_loss

W, B, D_IN, D = 2, 8, 12, 16          # world size, global batch, raw feature width, embedding width


def _data():
    "The global batch, identical in every process (fixed seed): raw inputs and normalised features."
    g = torch.Generator().manual_seed(0)
    x_img, x_txt = torch.randn(B, D_IN, generator=g, dtype=torch.float64), torch.randn(B, D_IN, generator=g, dtype=torch.float64)
    I = F.normalize(torch.randn(B, D, generator=g, dtype=torch.float64), dim=-1)
    T = F.normalize(torch.randn(B, D, generator=g, dtype=torch.float64), dim=-1)
    return x_img, x_txt, I, T


class Towers(nn.Module):
    "Two linear 'towers' and a learned temperature: the smallest model with CLIP's gradient structure."
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)            # same initial weights on every rank (DDP also broadcasts rank 0's)
        self.img, self.txt = nn.Linear(D_IN, D).double(), nn.Linear(D_IN, D).double()
        self.scale = LogitScale().double()

    def forward(self, x_img, x_txt):
        return F.normalize(self.img(x_img), dim=-1), F.normalize(self.txt(x_txt), dim=-1), self.scale()


def _launch(rank: int, port: int, folder: str):
    "Process entry point for rank `rank`: runs `_worker` and saves its results to `folder/rank<r>.pt`."
    _worker(rank, port, os.path.join(folder, f'rank{rank}.pt'))


def _worker(rank: int, port: int, out: str):
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=W)
    try:
        x_img, x_txt, I, T = _data()
        rows = slice(rank * B // W, (rank + 1) * B // W)          # this rank's shard of the global batch
        crit = ContrastiveLoss()                                   # rank/world size from the process group
        # 1. features as leaves: loss and gradients per rank, before any averaging
        I_loc, T_loc = I[rows].clone().requires_grad_(), T[rows].clone().requires_grad_()
        t = torch.tensor(INIT_LOGIT_SCALE, dtype=torch.float64, requires_grad=True)
        loss = crit(I_loc, T_loc, t.exp())
        loss.backward()
        # 2. a DDP-wrapped model: parameter gradients after DDP's all-reduce (mean over ranks)
        ddp = nn.parallel.DistributedDataParallel(Towers())
        fi, ft, s = ddp(x_img[rows], x_txt[rows])
        crit(fi, ft, s).backward()
        grads = {n: p.grad.clone() for n, p in ddp.module.named_parameters()}
        torch.save({'loss': loss.detach(), 'I': I_loc.grad, 'T': T_loc.grad, 't': t.grad, 'ddp': grads}, out)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def ranks(tmp_path_factory):
    if not dist.is_available(): pytest.skip('torch.distributed is not available in this build')
    d = tmp_path_factory.mktemp('dist')
    outs = [str(d / f'rank{r}.pt') for r in range(W)]
    # 'fork' where the OS has it: children inherit the imported modules, so the test does not pay for importing
    # torch + open_clip twice more (~10 s on a busy 2-core runner); the tensors are tiny, so no OpenMP pool is in
    # play. Each process writes its results to a file.
    method = 'fork' if 'fork' in mp.get_all_start_methods() else 'spawn'
    mp.start_processes(_launch, args=(_free_port(), str(d)), nprocs=W, join=True, start_method=method)
    return [torch.load(o, weights_only=True) for o in outs]


def test_loss_and_feature_gradients_match_one_process(ranks):
    x_img, x_txt, I, T = _data()
    I, T = I.clone().requires_grad_(), T.clone().requires_grad_()
    t = torch.tensor(INIT_LOGIT_SCALE, dtype=torch.float64, requires_grad=True)
    full = clip_loss(I, T, t.exp())
    full.backward()
    for r, got in enumerate(ranks):
        rows = slice(r * B // W, (r + 1) * B // W)
        torch.testing.assert_close(got['loss'], full.detach(), rtol=0, atol=1e-12)   # same global loss on each rank
        torch.testing.assert_close(got['I'], I.grad[rows], rtol=0, atol=1e-12)     # unscaled full-batch rows
        torch.testing.assert_close(got['T'], T.grad[rows], rtol=0, atol=1e-12)
        torch.testing.assert_close(got['t'], t.grad, rtol=0, atol=1e-12)           # whole dℓ/dt on each rank
    assert full.item() > 0.5 * math.log(B)   # random features: a loss of the expected size, not a degenerate zero


def test_ddp_gradient_convention(ranks):
    x_img, x_txt, _, _ = _data()
    model = Towers()
    fi, ft, s = model(x_img, x_txt)
    clip_loss(fi, ft, s).backward()
    for got in ranks:
        for name, p in model.named_parameters():
            # DDP averages over W ranks; each rank's towers only see the gradient through their own shard
            expected = p.grad if name == 'scale.t' else p.grad / W
            torch.testing.assert_close(got['ddp'][name], expected, rtol=1e-10, atol=1e-12, msg=name)
