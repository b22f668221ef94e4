"""Issue 21, the method chapters: each repeated idea lives once, a class's core methods are in its body, and one option
has one meaning. Cheap checks on the package's sources and objects (the behaviour is tested by the notebooks and
tests/test_dualpath.py's comparison with the code before)."""
import ast
import inspect
import json
import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PKG, NBS = ROOT / "efficient_video", ROOT / "nbs"


def package_source() -> str:
    return "\n".join(p.read_text() for p in sorted(PKG.glob("*.py")) if p.name != "_modidx.py")


def notebook_code(nb: Path) -> str:
    return "\n".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code")


def test_the_motion_benchmark_settings_are_written_once():
    "The settings every `*-tiny` preset shares are one dictionary (`methods.MOTION_TINY`), which each of them includes."
    from efficient_video.methods import MOTION_SPLITS, MOTION_TINY, SAMPLE_CLIP, get_preset, list_presets
    src = package_source()
    assert src.count("pretrained=SAMPLE_CLIP") == 1, "the sample CLIP is named by more than one preset dictionary"
    assert src.count("eval_metrics=('opposite_direction_acc',)") == 1
    tiny = [n for n in list_presets() if get_preset(n).get("pretrained") == SAMPLE_CLIP]
    assert {"frame-average-tiny", "efficient-prompt-tiny", "vpt-tiny", "aim-tiny", "dualpath-tiny"} <= set(tiny)
    for name in tiny:
        assert MOTION_TINY.items() <= get_preset(name).items(), name
    assert MOTION_SPLITS.items() <= get_preset("aim-tiny").items()


def test_the_pre_layernorm_branches_are_written_once():
    "`ls_1(MSA(.))` and `ls_2(MLP(.))` of a frozen block: methods of `FrozenBlock`, which every block class uses."
    src = package_source()
    assert len(re.findall(r"self\.ls_1\(self\.attention\(", src)) == 1, "the attention branch is written out again"
    assert len(re.findall(r"self\.ls_2\(self\.mlp\(", src)) == 1, "the MLP branch is written out again"
    from efficient_video.methods import FrozenBlock, VideoBlock
    assert {"attn_branch", "mlp_branch"} <= set(vars(FrozenBlock))
    assert {"attn_residual", "mlp_residual"} <= set(vars(VideoBlock))


@pytest.mark.parametrize("chapter", ["11_temporal", "13_petl", "14_aim", "15_dualpath"])
def test_gradient_checks_and_attention_weights_come_from_checks(chapter):
    "The optimiser-step harness and the hand-computed attention weights are `checks`' own, not rewritten per chapter."
    code = notebook_code(NBS / f"{chapter}.ipynb")
    assert "torch.optim.AdamW" not in code, f"{chapter}: an optimiser loop of its own (use checks.check_trains_only)"
    assert "q @ k.transpose" not in code, f"{chapter}: attention weights by hand (use checks.attention_weights)"
    assert "efficient_video.checks import" in code


def test_efficient_prompt_has_its_core_methods_in_its_body():
    "`forward` and `train` are in the class body (an IDE and a reader of the class see them)."
    from efficient_video.temporal import EfficientPrompt
    body = inspect.getsource(EfficientPrompt)
    for name in ("forward", "train"):
        assert f"    def {name}(" in body, name


def test_temporal_imports_only_at_the_top():
    "No import statement after the module's first definition."
    tree = ast.parse((PKG / "temporal.py").read_text())
    first_def = next(i for i, n in enumerate(tree.body) if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Assign)))
    late = [n.lineno for n in tree.body[first_def:] if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert not late, f"efficient_video/temporal.py imports at lines {late}"


def test_fixed_prompt_vectors_are_a_buffer_from_the_start():
    "`learn_prompts=False` builds the prompt learner with a buffer; no parameter is made and deleted afterwards."
    from efficient_video.methods import build_model, clip_model
    from efficient_video.temporal import EfficientPrompt
    names = ["a cat", "a dog"]
    clip, tok = clip_model("ev-tiny-vit")
    made = []
    hook = torch.nn.modules.module.register_module_parameter_registration_hook(lambda m, n, p: made.append(n))
    try:
        fixed = EfficientPrompt(clip, tok, names, frames=2, prefix=2, postfix=2, learn=False)
    finally:
        hook.remove()
    assert "prompt_vectors" not in made
    assert "prompts.prompt_vectors" in dict(fixed.named_buffers())
    model = build_model("efficient-prompt", "ev-tiny-vit", 2, 2, class_names=names, prefix=2, postfix=2,
                        learn_prompts=False)
    assert "prompts.prompt_vectors" in model.state_dict() and "prompts.prompt_vectors" not in dict(model.named_parameters())
    assert "del " not in inspect.getsource(__import__("efficient_video.temporal").temporal.build_efficient_prompt)


def test_dualpath_bottleneck_has_one_meaning():
    "`bottleneck` is a width in channels; a fraction of the width is `bottleneck_ratio` (the same widths as before)."
    from efficient_video.methods import MethodError, build_model, get_method
    assert get_method("dualpath").options["bottleneck"] == 128
    args = ("dualpath", "ev-tiny-vit", 5, 8)
    kw = dict(grid="2x2", spatial_frames=4)
    width = lambda m: m.backbone.blocks[0].s_adapter_attn.down.out_features
    assert width(build_model(*args, bottleneck=8, **kw)) == 8
    assert width(build_model(*args, bottleneck_ratio=0.25, **kw)) == 8                 # 0.25 of the width 32
    with pytest.raises(MethodError, match="bottleneck_ratio=0.25"):
        build_model(*args, bottleneck=0.25, **kw)
    with pytest.raises(MethodError, match="not both"):
        build_model(*args, bottleneck=16, bottleneck_ratio=0.25, **kw)
    assert get_method("dualpath").parse_options(["bottleneck=128", "bottleneck_ratio=0.5"]) == \
        {"bottleneck": 128, "bottleneck_ratio": 0.5}
