"""Kernel-level checks of `efficient_video.core.count_flops`: every attention kernel path gives the textbook count.

The Foundations chapter keeps the teaching checks (SDPA, `nn.MultiheadAttention` in train/eval/no_grad, a ViT against
its formula); these are the checks that depend on which kernels the installed torch dispatches to, and they are the
ones that fail first when a torch upgrade adds a kernel the counter does not know."""
import pytest
import torch
import torch.nn.functional as F
import torch.utils.flop_counter as flop_counter
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from efficient_video.core import autocast_dtype, count_flops, extra_flop_formulas, vit_flops

MODES = ['train', 'eval', 'eval+no_grad']
aten = torch.ops.aten


class OpLog(TorchDispatchMode):
    "Record the name of every aten operator that runs."
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


def run_in_mode(model, x, mode, fn=None):
    "Call `fn(model, x)` (default `model(x)`) with `model` in `mode`."
    model.train(mode == 'train')
    with torch.set_grad_enabled(mode != 'eval+no_grad'):
        return fn(model, x) if fn else model(x)


class SDPA(nn.Module):
    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v)


B, H, LQ, LK, HEAD = 2, 4, 7, 9, 8
SDPA_MACS = 2 * B * H * LQ * LK * HEAD          # QKᵀ + AV


@pytest.fixture
def qkv():
    torch.manual_seed(0)
    return torch.randn(B, H, LQ, HEAD), torch.randn(B, H, LK, HEAD), torch.randn(B, H, LK, HEAD)   # (B, H, L, d)


def test_sdpa_math_backend(qkv):
    "The math backend decomposes into bmm's the stock counter knows: same count as the fused CPU kernel."
    with sdpa_kernel(SDPBackend.MATH):
        assert count_flops(SDPA(), *qkv).total == SDPA_MACS


def test_sdpa_backward(qkv):
    "Flash-style backward: recomputed QKᵀ, then dP, dV, dQ, dK: 5 matmuls of the forward's size (2.5x the forward)."
    q, k, v = (t.clone().requires_grad_() for t in qkv)
    with FlopCounterMode(display=False, custom_mapping=extra_flop_formulas()) as fcm:
        SDPA()(q, k, v).sum().backward()
    assert fcm.get_total_flops() // 2 == SDPA_MACS + 5 * SDPA_MACS // 2


def test_kernels_of_other_backends(qkv):
    "Kernels that only run on GPUs or other backends: their formulas, evaluated on shape-only (meta) tensors."
    reg = FlopCounterMode(display=False, custom_mapping=extra_flop_formulas()).flop_registry
    qm, km, vm = (t.to('meta') for t in qkv)
    for name in ('_scaled_dot_product_attention_math_for_mps', '_scaled_dot_product_fused_attention_overrideable'):
        if hasattr(aten, name):
            assert reg[getattr(aten, name)](qm, km, vm, out_val=None) == 2 * SDPA_MACS, name
    if hasattr(aten, '_flash_attention_forward_no_dropout_inplace'):   # flash kernels take (B, L, H, d)
        qf, kf, vf = (t.transpose(1, 2) for t in (qm, km, vm))
        flops = reg[aten._flash_attention_forward_no_dropout_inplace](torch.empty_like(qf), qf, kf, vf, None, None,
                                                                      LQ, LK, 0.0, False, False, out_val=None)
        assert flops == 2 * SDPA_MACS


@pytest.mark.parametrize('mode', MODES)
def test_transformer_encoder_layer(mode):
    "nn.TransformerEncoderLayer: attention + MLP; under no_grad in eval mode it runs as one fused operator."
    torch.manual_seed(0)
    D, L = 32, 10
    enc = nn.TransformerEncoderLayer(D, nhead=4, dim_feedforward=64, batch_first=True, dropout=0.0)
    xs = torch.randn(3, L, D)                                  # (B, N, D)
    macs = 3 * (4 * L * D * D + 2 * L * L * D) + 3 * 2 * L * D * 64
    with OpLog() as log:
        assert run_in_mode(enc, xs, mode, lambda m, x: count_flops(m, x)).total == macs
    if mode == 'eval+no_grad':
        assert 'aten._transformer_encoder_layer_fwd' in log.ops  # the fused fast path really ran


def test_every_attention_operator_has_a_formula():
    "Fails when a torch upgrade adds an attention kernel: exactly when the counter would start under-counting."
    formulas = {**flop_counter.flop_registry, **extra_flop_formulas()}
    no_flops = {'_fused_sdp_choice', '_scaled_dot_product_attention_math',   # a backend choice; a composite of bmm's
                'scaled_dot_product_attention'}                              # composite: dispatches to the kernels
    attention_ops = [o for o in dir(aten)
                     if any(k in o for k in ('attention', 'multi_head', 'transformer_encoder')) and o not in no_flops]
    assert attention_ops
    assert [o for o in attention_ops if getattr(aten, o) not in formulas] == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
def test_vit_b16_on_gpu():
    "On a GPU the kernels differ (flash or memory-efficient attention; bf16 under autocast); the count must not."
    import open_clip
    vc = open_clip.get_model_config('ViT-B-16')['vision_cfg']
    b16 = open_clip.transformer.VisionTransformer(image_size=vc['image_size'], patch_size=vc['patch_size'],
                                                  width=vc['width'], layers=vc['layers'], heads=vc['width'] // 64,
                                                  mlp_ratio=4.0, output_dim=512).cuda()
    frame = torch.randn(1, 3, 224, 224, device='cuda')
    analytic = vit_flops(224, 16, width=768, layers=12, output_dim=512)
    for dt in (None, autocast_dtype('cuda')):               # fp32, then bf16 (Ampere+) or fp16
        for mode in MODES:
            with torch.autocast('cuda', dtype=dt, enabled=dt is not None):
                assert run_in_mode(b16, frame, mode, lambda m, x: count_flops(m, x)).total == analytic, (dt, mode)
