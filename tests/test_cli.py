"""The installed console script behaves as the README says (run as a subprocess, as a user would)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXE = shutil.which("efficient-video") or str(Path(sys.executable).parent / "efficient-video")


def run(*args, cwd=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([EXE, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_console_script_is_installed():
    assert Path(EXE).exists(), "efficient-video is not on PATH: install with pip install -e '.[dev]'"


def test_help_lists_every_subcommand():
    from efficient_video.cli import SUBCOMMANDS
    top = run("--help")
    assert top.returncode == 0, top.stderr
    for name, sc in SUBCOMMANDS.items():
        assert name in top.stdout
        sub = run(name, "--help")
        assert sub.returncode == 0, sub.stderr
        assert ("--json" in sub.stdout) == sc.reports


def test_samples_check_json_is_one_object(tmp_path):
    # run from an unrelated directory: the samples must be found through the package, not the cwd
    res = run("samples", "--check", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)  # raises if stdout holds anything but one JSON object
    assert report["ok"] and report["files"] > 0


def test_bad_root_is_a_clear_error(tmp_path):
    missing = tmp_path / "nowhere"
    res = run("samples", "--check", "--root", str(missing))
    assert res.returncode == 2
    assert str(missing) in res.stderr and "Traceback" not in res.stderr


def test_python_dash_m_runs_the_cli():
    "`python -m efficient_video.cli` is the console script's `main` (for machines where the script is not on PATH)."
    res = subprocess.run([sys.executable, "-m", "efficient_video.cli", "--help"], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert res.returncode == 0, res.stderr
    assert "efficient-video" in res.stdout and "train" in res.stdout


def test_profile_takes_method_options_and_finds_every_method():
    "profile finds a method of a later chapter (entry points) and takes its options as KEY=VALUE: ≈3.2M / 6.35M trainable."
    one = run("profile", "--method", "efficient-prompt", "--backbone", "ViT-B-16", "--frames", "16", "--num-classes", "400", "--json")
    two = run("profile", "--method", "efficient-prompt", "--backbone", "ViT-B-16", "--frames", "16", "--num-classes", "400",
              "temporal_layers=2", "--json")
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    p1, p2 = json.loads(one.stdout), json.loads(two.stdout)
    assert abs(p1["params_trainable"] / 1e6 - 3.2) <= 0.03 * 3.2, p1
    assert abs(p2["params_trainable"] / 1e6 - 6.35) <= 0.03 * 6.35, p2
    assert "gflops_text_once" in p1
    bad = run("profile", "--method", "efficient-prompt", "--backbone", "ViT-B-16", "--frames", "16", "--num-classes", "400",
              "temporal_layerz=2")
    assert bad.returncode == 2 and "temporal_layerz" in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
    # the committed sample CLIP's name resolves in a fresh process too
    tiny = run("profile", "--method", "efficient-prompt", "--backbone", "ev-samples-clip", "--frames", "8", "--num-classes",
               "40", "prefix=4", "postfix=4", "--json")
    assert tiny.returncode == 0 and json.loads(tiny.stdout)["params_trainable"] > 0, tiny.stderr


def test_profile_aim_reports_the_papers_figures():
    "AIM at ViT-B/16, 8 frames, 400 classes: within 2% of 202.1 GFLOPs per view, 11.0M trainable, 97M in all."
    p = run("profile", "--method", "aim", "--backbone", "ViT-B-16", "--frames", "8", "--num-classes", "400", "--json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert abs(r["gflops_per_view"] / 202.1 - 1) <= 0.02 and abs(r["params_trainable"] / 11.0e6 - 1) <= 0.02, r
    assert abs(r["params_total"] / 97e6 - 1) <= 0.02, r


def test_profile_dualpath_reports_the_papers_figures():
    """DualPath at ViT-B/16, 32 frames in two 4x4 grid sets of the paper's 56-px tiles, bottleneck 128, 400 classes:
    the paper's 10M trainable of 96M (Tab. 1); patch-aligned tiles cost fewer FLOPs; a grid the frames cannot fill is
    refused with the fix."""
    args = ("profile", "--method", "dualpath", "--backbone", "ViT-B-16", "--frames", "32", "--num-classes", "400")
    paper = run(*args, "grid=4x4", "align=none", "bottleneck=128", "--json")
    aligned = run(*args, "grid=4x4", "--json")
    assert paper.returncode == 0 and aligned.returncode == 0, paper.stderr + aligned.stderr
    p, a = json.loads(paper.stdout), json.loads(aligned.stdout)
    assert abs(p["params_trainable"] / 10e6 - 1) <= 0.05 and abs(p["params_total"] / 96e6 - 1) <= 0.02, p
    assert a["gflops_per_view"] < p["gflops_per_view"], (a, p)
    bad = run("profile", "--method", "dualpath", "--backbone", "ViT-B-16", "--frames", "8", "--num-classes", "400", "grid=4x4")
    assert bad.returncode == 2 and "multiple of 16" in bad.stderr and "Traceback" not in bad.stderr, bad.stderr


def test_retrieval_prints_both_directions(tmp_path):
    "`retrieval --json`: zero-shot and trained R@K / MedR / MeanR both ways; a missing captions file is one line, status 2."
    p = run("retrieval", "epochs=1", f"output_dir={tmp_path/'run'}", "--json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    for model in ("zero_shot", "trained"):
        for d in ("t2v", "v2t"):
            assert set(r[model][d]) == {"R@1", "R@5", "R@10", "MedR", "MeanR"}, r
            assert 0 <= r[model][d]["R@1"] <= r[model][d]["R@5"] <= r[model][d]["R@10"] <= 100, r
    assert r["test_videos"] == 200 and r["steps"] > 0, r
    bad = run("retrieval", "--captions", str(tmp_path/'none.jsonl'), f"output_dir={tmp_path/'bad'}")
    assert bad.returncode == 2 and "none.jsonl" in bad.stderr and "Traceback" not in bad.stderr, bad.stderr


def test_demo_subset_writes_table_and_files(tmp_path):
    "`demo --methods ... --json`: one JSON object with a row per method, results.json and results.png in --out."
    p = run("demo", "--methods", "zero-shot,frame-average", "--epochs", "1", "--out", str(tmp_path/'demo'), "--json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert list(r["methods"]) == ["zero-shot", "frame-average"], r
    for row in r["methods"].values():
        assert {"top1", "opposite_direction_acc", "params_trainable", "gflops_per_view", "seconds"} <= set(row), row
    assert (tmp_path/'demo'/'results.json').is_file() and (tmp_path/'demo'/'results.png').stat().st_size > 0
    bad = run("demo", "--methods", "nope", "--out", str(tmp_path/'bad'))
    assert bad.returncode == 2 and "not demo rows" in bad.stderr and "Traceback" not in bad.stderr, bad.stderr


def test_bench_motion_subset_and_bad_input(tmp_path):
    "`bench --part motion --methods ... --json`: mean ± std per row, bench.json in --out, merged into --record."
    rec = tmp_path/'record.json'
    p = run("bench", "--part", "motion,paper", "--methods", "zero-shot,frame-average,aim", "--seeds", "0,1",
            "--shots", "2", "--epochs", "1", "--out", str(tmp_path/'bench'), "--record", str(rec), "--json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert list(r["motion"]["methods"]) == ["zero-shot", "frame-average", "aim"], r
    fa = r["motion"]["methods"]["frame-average"]
    assert fa["top1"]["n"] == 2 and set(fa["few_shot_top1"]) == {"2"} and fa["zero_shot_top1"] is None, fa
    assert r["motion"]["methods"]["zero-shot"]["zero_shot_top1"]["n"] == 2
    assert [x["method"] for x in r["paper"]["rows"]] == ["aim", "aim"]
    assert json.loads((tmp_path/'bench'/'bench.json').read_text()) == r == json.loads(rec.read_text())
    assert (tmp_path/'bench'/'motion.png').stat().st_size > 0
    for args, msg in ((("--part", "speed"), "choose from"), (("--seeds", "a,b"), "comma-separated integers"),
                      (("--methods", "nope", "--part", "motion"), "not benchmark rows"), (("--steps", "0"), "at least 1")):
        bad = run("bench", *args, "--out", str(tmp_path/'bad'))
        assert bad.returncode == 2 and msg in bad.stderr and "Traceback" not in bad.stderr, (args, bad.stderr)


def test_readme_shows_every_command_in_help_order():
    "The README's command block names every subcommand once, in the order `efficient-video --help` lists them."
    import re
    helped = run("--help").stdout
    listed = re.findall(r"^    (\S+)", helped.split("COMMAND", 2)[2], flags=re.M)
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("in the order `--help` lists them", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    shown = [line.split()[1] for line in block.strip().splitlines()]
    assert shown == listed, (shown, listed)


def modules_after(*args, cwd=None):
    "Run `main(args)` in a fresh interpreter: (exit status, stderr, which of torch/open_clip it imported)."
    code = ("import json, sys\nfrom efficient_video.cli import main\ntry: rc = main(sys.argv[1:])\n"
            "except SystemExit as e: rc = e.code\n"
            "print(json.dumps(sorted(m for m in ('torch', 'open_clip') if m in sys.modules)), file=sys.stderr)\n"
            "sys.exit(rc)")
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd,
                       env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    lines = p.stderr.strip().splitlines()
    return p.returncode, "\n".join(lines[:-1]), json.loads(lines[-1])


@pytest.mark.parametrize("args, says", [
    (("--help",), None),
    (("train", "--help"), None),
    (("train", "--lr", "abc"), "lr='abc' is not a valid float"),
    (("train", "lr=abc"), "lr='abc' is not a valid float"),
    (("train", "--lr=abc"), "lr='abc' is not a valid float"),
    (("train", "epoch=3"), "did you mean 'epochs'"),
    (("train", "frames=8.5"), "frames='8.5' is not a valid int"),
    (("train", "train_list=/nonexistent/train.txt"), "train_list='/nonexistent/train.txt': no such file"),
    (("train", "--resume", "/nonexistent/run"), "--resume /nonexistent/run: no such checkpoint folder"),
    (("eval", "--checkpoint", "/nonexistent/run"), "--checkpoint /nonexistent/run: no such folder"),
    (("eval", "--checkpoint", ".", "--views", "0"), "--views: 0: at least 1"),
    (("extract-features", "--splits", "train,dev"), "['dev'] are not among train, val, test"),
    (("retrieval", "--captions", "/nonexistent/c.jsonl"), "/nonexistent/c.jsonl: no such file"),
    (("pretrain-clip", "lr=fast"), "lr='fast' is not a valid float"),
    (("bench", "--seeds", "a,b"), "comma-separated integers"),
])
def test_argument_errors_answer_before_torch_is_imported(args, says, tmp_path):
    """Issue 19.12: --help and argument errors are answered without importing torch or open_clip (which took 17-27 s
    for a typo): checked by which modules the process loaded, not by timing."""
    rc, err, heavy = modules_after(*args, cwd=tmp_path)
    assert heavy == [], (args, heavy, err[-1000:])
    if says is None: assert rc == 0, err
    else: assert rc == 2 and says in err and "Traceback" not in err, (args, err[-1000:])


def test_the_early_check_reads_the_configs_own_fields():
    "The field table the CLI reads from the source without importing it is exactly each dataclass's fields."
    import dataclasses
    from efficient_video.cli import _config_fields
    from efficient_video.config import TrainConfig
    from efficient_video.pretrain import PretrainConfig
    for spec, cls in (("config:TrainConfig", TrainConfig), ("pretrain:PretrainConfig", PretrainConfig)):
        assert _config_fields(spec) == {f.name: f.type for f in dataclasses.fields(cls)}, spec


def test_code_cells_fit_a_screen():
    "Every code cell of the chapter is at most 40 lines (issue #21)."
    nb = json.loads((Path(__file__).resolve().parents[1]/"nbs"/"99_cli.ipynb").read_text())
    sizes = [len("".join(c["source"]).splitlines()) for c in nb["cells"] if c["cell_type"] == "code"]
    assert max(sizes) <= 40, [(i, n) for i, n in enumerate(sizes) if n > 40]


def test_option_lists_and_interruptions_are_handled_in_one_place():
    "Comma-separated options are split, Ctrl-C is turned into an error and non-zero ranks leave, each in one place."
    import efficient_video.cli as cli
    src = Path(cli.__file__).read_text()
    counts = {s: src.count(s) for s in (".split(',')", "except KeyboardInterrupt", "sys.exit(0)")}
    assert counts == dict.fromkeys(counts, 1), counts


def test_every_subcommands_config_is_found():
    "The dataclass each subcommand's overrides change is read from its spec, also where the module only imports it."
    import dataclasses
    import importlib
    from efficient_video.cli import SUBCOMMANDS, _config_fields
    for sc in SUBCOMMANDS.values():
        if sc.config:
            module, name = sc.config.split(":")
            cls = getattr(importlib.import_module(f"efficient_video.{module}"), name)
            assert _config_fields(sc.config) == {f.name: f.type for f in dataclasses.fields(cls)}, sc.name


def test_predict_own_videos(tmp_path):
    "`train` a few steps, then `predict` a folder and a file (top-k per video, a broken file named, exit status 1); zero-shot."
    t = run("train", "--preset", "aim-tiny", "max_steps=2", "val_list=none", "test_list=none", "shift_list=none",
            f"output_dir={tmp_path/'run'}", "--json")
    assert t.returncode == 0, t.stderr
    from efficient_video.samples import samples_dir
    clip = samples_dir()/'motion'/'test'/'000_right.mp4'
    mine = tmp_path/'mine'
    mine.mkdir()
    (mine/'clip.mp4').write_bytes(clip.read_bytes())
    ok = run("predict", str(mine), str(clip), "--checkpoint", str(tmp_path/'run'), "--top-k", "3", "--json")
    assert ok.returncode == 0, ok.stderr
    r = json.loads(ok.stdout)
    assert r["failed"] == 0 and [len(v["top"]) for v in r["videos"]] == [3, 3], r
    assert r["videos"][0]["top"] == r["videos"][1]["top"], r          # the same clip, twice: the same answer
    human = run("predict", str(clip), "--checkpoint", str(tmp_path/'run'))
    assert human.returncode == 0 and "000_right.mp4: " in human.stdout and "%" in human.stdout, human.stdout
    (mine/'broken.mp4').write_bytes(b'garbage')
    part = run("predict", str(mine), "--checkpoint", str(tmp_path/'run'), "--json")
    assert part.returncode == 1, part.stderr
    r = json.loads(part.stdout)
    assert r["failed"] == 1 and "error" in r["videos"][0] and "top" in r["videos"][1], r
    zs = run("predict", str(clip), "--classes", "a coat, a bag, a sandal", "--top-k", "2", "--json")
    assert zs.returncode == 0, zs.stderr
    r = json.loads(zs.stdout)
    assert r["checkpoint"] is None and r["num_classes"] == 3 and len(r["videos"][0]["top"]) == 2, r
    ens = run("predict", str(clip), "--classes", "a coat, a bag, a sandal", "--template", "a video of {}.",
              "--template", "a photo of {}.", "--json")
    assert ens.returncode == 0 and json.loads(ens.stdout)["template"] == ["a video of {}.", "a photo of {}."], ens.stderr
    (tmp_path/'names.txt').write_text('a coat\na bag\n\n')
    tl = run("predict", str(clip), str(clip), "--classes-file", str(tmp_path/'names.txt'), "--window", "0.5",
             "--plot", str(tmp_path/'plots'/'tl.png'), "--json")
    assert tl.returncode == 0, tl.stderr
    r = json.loads(tl.stdout)
    assert r["num_classes"] == 2 and [len(v["timeline"]) for v in r["videos"]] == [2, 2], r
    assert [Path(v["plot"]).name for v in r["videos"]] == ["tl-1-000_right.png", "tl-2-000_right.png"], r
    assert all(Path(v["plot"]).stat().st_size > 0 for v in r["videos"]), r
    for bad, says in ((["predict", str(tmp_path/'none.mp4'), "--checkpoint", str(tmp_path/'run')], "none.mp4"),
                      (["predict", str(clip), "--checkpoint", str(tmp_path/'nowhere')], "nowhere"),
                      (["predict", str(clip)], "--classes"),
                      (["predict", str(clip), "--classes", "a coat", "--plot", "x.png"], "--window"),
                      (["predict", str(clip), "--checkpoint", str(tmp_path/'run'), "--classes", "a coat"],
                       "cannot take new class names")):
        p = run(*bad)
        assert p.returncode == 2 and says in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_import_checkpoint(tmp_path):
    "An official-layout AIM file (mmaction2's wrapping) imported, then `predict` on a shipped clip; bad input in one line."
    import torch
    from efficient_video.import_checkpoint import official_aim_shapes
    from efficient_video.samples import samples_dir
    g = torch.Generator().manual_seed(0)
    shapes = official_aim_shapes(32, 2, 8, 32, frames=4, num_classes=3)
    torch.save({'meta': {'epoch': 30}, 'state_dict': {k: 0.1 * torch.randn(s, generator=g) for k, s in shapes.items()}},
               tmp_path/'aim.pth')
    (tmp_path/'names.txt').write_text('running\njumping\nwaving\n')
    imp = run("import-checkpoint", "--from", "aim", str(tmp_path/'aim.pth'), "--preset", "aim-k400-vitb16",
              "--backbone", "ev-tiny-openai", "--classes-file", str(tmp_path/'names.txt'), "--out",
              str(tmp_path/'run'), "--json")
    assert imp.returncode == 0, imp.stderr
    r = json.loads(imp.stdout)
    assert (r["frames"], r["num_classes"], r["image_size"], r["backbone"]) == (4, 3, 32, "ev-tiny-openai"), r
    clip = samples_dir()/'clips'/'bbb_0_emerging.mp4'
    p = run("predict", str(clip), "--checkpoint", str(tmp_path/'run'), "--top-k", "3", "--json")
    assert p.returncode == 0, p.stderr
    top = json.loads(p.stdout)["videos"][0]["top"]
    assert sorted(t["label"] for t in top) == ["jumping", "running", "waving"], top
    for bad, says in ((["--from", "aim", str(tmp_path/'none.pth'), "--out", str(tmp_path/'r1')], "none.pth: no such file"),
                      (["--from", "aim", str(tmp_path/'aim.pth'), "--backbone", "ev-tiny-openai"], "--out"),
                      (["--from", "dualpath", str(tmp_path/'aim.pth'), "--out", str(tmp_path/'r2')], "choose from aim"),
                      (["--from", "aim", str(tmp_path/'aim.pth'), "--out", str(tmp_path/'r3')], "is width 768"),
                      (["--from", "aim", str(tmp_path/'names.txt'), "--out", str(tmp_path/'r4')], "names.txt")):
        p = run("import-checkpoint", *bad, "--preset", "aim-k400-vitb16")
        assert p.returncode == 2 and says in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_localise_untrimmed(tmp_path):
    "`localise --recogniser` makes a localiser run from an Efficient-Prompt run; `localise VIDEO` finds actions in it."
    t = run("train", "--preset", "efficient-prompt-tiny", "max_steps=2", "batch_size=8", "feature_cache=none",
            "val_list=none", "test_list=none", "shift_list=none", f"output_dir={tmp_path/'ep'}", "--json")
    assert t.returncode == 0, t.stderr
    made = run("localise", "--recogniser", str(tmp_path/'ep'), "--out", str(tmp_path/'loc'), "--epochs", "5", "--json")
    assert made.returncode == 0, made.stderr
    m = json.loads(made.stdout)
    assert m["train_clips"] == 60 and 0 <= m["mAP@avg"] <= 1 and 0 <= m["proposal_recall@0.5"] <= 1, m
    from efficient_video.samples import samples_dir
    clip = samples_dir()/'untrimmed'/'untrimmed_60.mp4'
    (tmp_path/'broken.mp4').write_bytes(b'garbage')
    p = run("localise", str(clip), str(tmp_path/'broken.mp4'), "--checkpoint", str(tmp_path/'loc'), "--plot",
            str(tmp_path/'plot.png'), "--json")
    assert p.returncode == 1, p.stderr                          # one video could not be read: named, the other done
    r = json.loads(p.stdout)
    v = r["videos"][0]
    assert r["failed"] == 1 and "error" in r["videos"][1] and abs(v["seconds"] - 6.0) < 1e-6, r
    assert len(v["actionness"]) == 48 and all(d["end"] > d["start"] for d in v["detections"]), v
    assert Path(v["plot"]).stat().st_size > 0
    human = run("localise", str(clip), "--checkpoint", str(tmp_path/'loc'))
    assert human.returncode == 0 and "untrimmed_60.mp4 (6.0 s" in human.stdout, human.stdout
    for bad, says in (([str(clip)], "--checkpoint"), ([str(clip), "--checkpoint", str(tmp_path/'ep')], "not a localiser"),
                      (["--recogniser", str(tmp_path/'ep')], "--out"),
                      ([str(tmp_path/'none.mp4'), "--checkpoint", str(tmp_path/'loc')], "none.mp4")):
        b = run("localise", *bad)
        assert b.returncode == 2 and says in b.stderr and "Traceback" not in b.stderr, b.stderr
