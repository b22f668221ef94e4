"""DualPath's backbone types say what they do: `DualPathViT` and `DualPathBlock` expose no method inherited from the
frame-by-frame `VideoViT`/`VideoBlock` that would run the wrong computation, every public method works or refuses with
a line saying what to call, and the refactor that made them so changed no number (outputs, gradients and state-dict
keys equal those of the code before it, and the recorded trained run still loads).

Run as a script (`python tests/test_dualpath.py OUT.pt`) it writes `reference_outputs()` to OUT.pt: the test runs it
under the package of the commit before the refactor (`git archive`) and compares with the package here."""
import copy
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "2bd87cb"          # the last commit before DualPath's types were refactored: its numbers are the reference
TRAINED = ROOT / "benchmarks" / "results" / "dualpath-tiny" / "model.safetensors"


# ---------------------------------------------------------------------------------------------------- the reference
def _perturbed(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    "Every trainable parameter moved by N(0, 0.1²) noise (so the zero-initialised adapters compute something)."
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad: p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model


def reference_outputs() -> dict:
    """Outputs of DualPath models on fixed weights and inputs, written only with APIs the old and the new code share:
    the recorded trained `dualpath-tiny` on two test clips (eval logits, features and both paths' class tokens; a
    training step's logits and gradients, with and without gradient checkpointing), two random models with the other
    options (SSv2's fifth adapter, the code's serial adapters without a skip, random positions, no projection; the
    paper's unaligned tiles), and every state-dict key with its shape."""
    from safetensors.torch import load_file
    import efficient_video
    if (Path(efficient_video.__file__).parent / "data.py").exists():    # the engine split into rooms (03a-03f)
        from efficient_video.data import build_dataset, read_class_names
    else:                                                                  # the code before: all in the engine
        from efficient_video.engine import build_dataset, read_class_names
    from efficient_video.methods import build_model
    from efficient_video.train import load_config, model_from_config
    torch.use_deterministic_algorithms(True)
    out = {}
    cfg = load_config("dualpath-tiny")
    torch.manual_seed(0)
    model = model_from_config(cfg, 40, read_class_names(cfg))
    model.load_state_dict(load_file(TRAINED), strict=False)
    test_set = build_dataset(cfg, "test", augment=False)
    video = torch.stack([test_set[i]["video"] for i in (0, 1)])
    labels = torch.tensor([test_set.records[i].label for i in (0, 1)])
    model.eval()
    with torch.no_grad():
        out["trained/logits"], out["trained/features"] = model(video), model.features(video)
        out["trained/spatial"], out["trained/temporal"] = model.backbone(video)
    model.train()
    for ckpt in (False, True):
        model.backbone.set_grad_checkpointing(ckpt)
        torch.manual_seed(1)                                       # the same adapter-dropout masks
        logits = model(video)
        torch.nn.functional.cross_entropy(logits, labels).backward()
        out[f"trained/train-logits/ckpt={ckpt}"] = logits.detach()
        for n, p in model.named_parameters():
            if p.grad is not None: out[f"trained/grad/ckpt={ckpt}/{n}"] = p.grad.clone()
        model.zero_grad()
    out["keys"] = [(n, tuple(t.shape)) for n, t in model.state_dict().items()]
    g = torch.Generator().manual_seed(2)
    for name, frames, size, options in (
            ("ssv2-code", 8, 32, dict(grid="2x2", spatial_frames=4, bottleneck=8, pre_attention_adapter=True,
                                      serial_skip=False, pos_init="random", proj=False, hidden=16, init="lora")),
            ("paper-tiles", 16, 48, dict(grid="4x4", align="none", spatial_frames=8, bottleneck=8, image_size=48))):
        torch.manual_seed(3)
        m = _perturbed(build_model("dualpath", "ev-tiny-vit", 5, frames=frames, **options), 4).eval()
        with torch.no_grad(): out[f"{name}/logits"] = m(torch.randn(2, frames, 3, size, size, generator=g))
        out[f"{name}/keys"] = [(n, tuple(t.shape)) for n, t in m.state_dict().items()]
    return out


@pytest.fixture(scope="module")
def before(tmp_path_factory) -> dict:
    "`reference_outputs()` computed by the package as it was at commit BEFORE (extracted with `git archive`)."
    old = tmp_path_factory.mktemp("before")
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", BEFORE, "efficient_video"], capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"commit {BEFORE} is not in this clone ({e}): nothing to compare with")
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
    env = {**os.environ, "PYTHONPATH": str(old), "EFFICIENT_VIDEO_SAMPLES": str(ROOT / "data_samples"),
           "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, __file__, str(old / "ref.pt")], env=env, capture_output=True, text=True,
                       cwd=old, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip() == str(old / "efficient_video" / "dualpath.py"), r.stdout   # it ran the old code
    return torch.load(old / "ref.pt", weights_only=False)


def test_outputs_equal_those_before_the_refactor(before):
    "The same logits, features, class tokens, gradients and state-dict keys, bit for bit, as the code before."
    now = reference_outputs()
    assert now.keys() == before.keys()
    diffs = {}
    for k, v in before.items():
        if isinstance(v, torch.Tensor): diffs[k] = (now[k] - v).abs().max().item()
        else: assert now[k] == v, f"{k} differ"
    print(f"max |difference| over {len(diffs)} tensors: {max(diffs.values())}")
    assert max(diffs.values()) == 0.0, {k: d for k, d in diffs.items() if d}


# --------------------------------------------------------------------------------------------- the recorded run loads
def test_the_recorded_trained_run_loads(tmp_path):
    "benchmarks/results/dualpath-tiny's weights load through the engine's `load_checkpoint` (every key, every shape)."
    from safetensors.torch import load_file
    from efficient_video.data import read_class_names
    from efficient_video.checkpoints import load_checkpoint
    from efficient_video.train import load_config, model_from_config
    ck = tmp_path / "step-000360"
    ck.mkdir()
    (ck / "model.safetensors").write_bytes(TRAINED.read_bytes())
    torch.save({"step": 360}, ck / "state.pt")        # the run's weights with a minimal training state
    cfg = load_config("dualpath-tiny")
    model = model_from_config(cfg, 40, read_class_names(cfg))
    weights = load_file(TRAINED)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert set(weights) == set(trainable)                                  # every trained tensor, nothing else
    assert all(weights[n].shape == p.shape for n, p in trainable.items())
    load_checkpoint(ck, model, restore_rng=False)      # CheckpointError on a missing, unexpected or reshaped key
    assert all(torch.equal(p, weights[n]) for n, p in trainable.items())


# ------------------------------------------------------------------------------------- every public method, checked
def public_names(cls: type) -> set[str]:
    "Public attributes of `cls` defined by it or a base other than nn.Module (whose API every module shares), and forward."
    shared = set(dir(torch.nn.Module)) - {"forward"}
    return {n for n in dir(cls) if not n.startswith("_") and n not in shared}


@pytest.fixture(scope="module")
def tiny():
    from efficient_video.dualpath import DualPathViT
    from efficient_video.methods import clip_image_encoder
    torch.manual_seed(0)
    plain, _ = clip_image_encoder("ev-tiny-vit")
    vit = DualPathViT(copy.deepcopy(plain), 8, grid="2x2", spatial_frames=4, bottleneck=8, pre_attention=True)
    for n, p in vit.named_parameters(): p.requires_grad_("adapter" in n or n.startswith("temporal_"))   # CLIP frozen
    vit = _perturbed(vit, 5).eval()
    return plain, vit, torch.randn(2, 8, 3, 32, 32)


def test_every_public_method_of_DualPathViT_works_or_refuses(tiny):
    from efficient_video.dualpath import DualPathViT, grid_frame_sets
    from efficient_video.methods import MethodError
    plain, vit, video = tiny
    frames = video[:, ::2].flatten(0, 1)                                   # the spatial path's 4 of the 8 frames
    with torch.no_grad():
        s, t = vit(video)
        grids = grid_frame_sets(video, vit.grid)

        def check_forward():
            assert s.shape == (2, 4, 32) and t.shape == (2, 2, 32)
            with pytest.raises(MethodError, match="B×T×C×H×W"): vit(frames)          # frames without the clip axis

        def check_embed():                                                 # CLIP's embeddings (the spatial path's)
            torch.testing.assert_close(vit.visual.ln_pre(vit.embed(frames)), plain.eval()._embeds(frames))

        def check_run():
            torch.testing.assert_close(vit.run(vit.embed(frames), "spatial").view(2, 4, 32), s, rtol=0, atol=0)
            torch.testing.assert_close(vit.run(vit.temporal_embed(grids), "temporal").view(2, 2, 32), t, rtol=0, atol=0)
            with pytest.raises(MethodError, match="'spatial' or 'temporal'"): vit.run(vit.embed(frames), 4)

        def check_run_block():
            x, blk = vit.visual.ln_pre(vit.embed(frames)), vit.blocks[0]
            torch.testing.assert_close(vit.run_block(blk, x, "temporal"), blk.temporal(x), rtol=0, atol=0)

        def check_temporal_embed():
            x = vit.temporal_embed(grids)                                  # (B·T_G, 1 + 16, D)
            assert x.shape == (4, 17, 32)
            cls = vit.temporal_class_embedding + vit.temporal_positional_embedding[0]   # p^TP is zero on the class token
            torch.testing.assert_close(x[:, 0], cls.expand(4, -1))

        def check_set_grad_checkpointing():
            vit.set_grad_checkpointing(True)
            with torch.enable_grad(): s2, t2 = vit(video)
            vit.set_grad_checkpointing(False)
            torch.testing.assert_close((s2, t2), (s, t))

    checks = {"forward": check_forward, "embed": check_embed, "run": check_run, "run_block": check_run_block,
              "temporal_embed": check_temporal_embed, "set_grad_checkpointing": check_set_grad_checkpointing,
              "image_size": lambda: vit.image_size == (32, 32) or pytest.fail("image_size")}
    assert public_names(DualPathViT) == set(checks), "a public name without a check (or an inherited one that does not apply)"
    for name, check in checks.items(): check()


def test_every_public_method_of_DualPathBlock_works_or_refuses():
    from efficient_video.dualpath import DualPathBlock
    from efficient_video.methods import MethodError, clip_image_encoder
    torch.manual_seed(0)
    plain, _ = clip_image_encoder("ev-tiny-vit")
    frozen = plain.transformer.resblocks[0].eval()                    # the open_clip block itself
    blk = DualPathBlock(copy.deepcopy(frozen)).eval()
    code = DualPathBlock(copy.deepcopy(frozen), serial_skip=False).eval()
    x = torch.randn(3, 17, 32)                                         # (rows, tokens, D)
    with torch.no_grad():
        u = frozen.ln_1(x)
        z = x + frozen.ls_1(frozen.attn(u, u, u, need_weights=False)[0])   # the open_clip block's first residual step
        checks = {
            "attention": lambda: torch.testing.assert_close(blk.attention(x), frozen.attn(x, x, x, need_weights=False)[0]),
            # the frozen branches (inherited from FrozenBlock): x + each of them, in turn, is CLIP's block
            "attn_branch": lambda: torch.testing.assert_close(x + blk.attn_branch(blk.ln_1(x)), z),
            "mlp_branch": lambda: torch.testing.assert_close(z + blk.mlp_branch(blk.ln_2(z)), frozen(x)),
            "spatial": lambda: torch.testing.assert_close(blk.spatial(x), frozen(x)),       # adapters at zero: CLIP's block
            "temporal": lambda: (torch.testing.assert_close(blk.temporal(x), frozen(x)),    # identity serial adapters
                                 torch.testing.assert_close(code.temporal(x), x)),          # no skip: the block adds 0
            "forward": lambda: (torch.testing.assert_close(blk(x, "spatial"), blk.spatial(x), rtol=0, atol=0),
                                torch.testing.assert_close(blk(x, "temporal"), blk.temporal(x), rtol=0, atol=0)),
        }
        assert public_names(DualPathBlock) == set(checks), "a public name without a check (or an inherited one that does not apply)"
        for check in checks.values(): check()
        for wrong in (8, "Spatial", None):                                  # a clip length where the path goes
            with pytest.raises(MethodError, match="'spatial' or 'temporal'"): blk(x, wrong)


def test_the_inherited_frame_by_frame_api_is_gone(tiny):
    """The issue's examples: `vit.tokens(video)` ran the temporal path on raw frames (T landed where the path goes),
    `block_input`, `temporal_embedding`, `temporal_attention` and per-block `DropPath`s were there but never used."""
    from efficient_video.dualpath import DualPathBlock, DualPathViT
    from efficient_video.methods import DropPath, VideoBlock, VideoViT
    plain, vit, video = tiny
    assert not isinstance(vit, VideoViT) and not isinstance(vit.blocks[0], VideoBlock)
    for name in ("tokens", "block_input", "temporal_embedding"): assert not hasattr(vit, name), name
    for name in ("temporal_attention", "drop_path"): assert not hasattr(vit.blocks[0], name), name
    assert not any(isinstance(m, DropPath) for m in vit.modules())     # the official block has no stochastic depth
    for option in ("drop_path", "temporal_embedding"):                 # options it would ignore are refused
        with pytest.raises(TypeError, match=option):
            DualPathViT(copy.deepcopy(plain), 8, grid="2x2", spatial_frames=4, **{option: 0.1})
    assert "drop_path" not in inspect.signature(DualPathBlock).parameters


if __name__ == "__main__":
    import efficient_video.dualpath
    torch.save(reference_outputs(), sys.argv[1])
    print(efficient_video.dualpath.__file__)
