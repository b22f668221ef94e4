"""Training speed and peak memory at the reference scale: ViT-B/16, 8 frames of 224 px, 400 classes.

    python benchmarks/aim_speed.py [--device cpu|cuda] [--batch 2] [--steps 3] [--frames 8]

For AIM with and without gradient checkpointing and for the frozen frame-average baseline, each in a fresh process
(so peak memory is its own): random weights (speed does not depend on them), AdamW on the method's trainable
parameters, `--steps` timed steps after one warm-up step. Prints training clips per second and peak memory with the
machine and the date; on CUDA with bf16 autocast (Ampere and newer)."""
import argparse, datetime, json, os, platform, resource, subprocess, sys, time

import torch


def measure(method: str, device: str, batch: int, steps: int, frames: int, ckpt: bool) -> dict:
    "One configuration, in this process: clips/s over `steps` steps and the peak memory."
    import efficient_video.aim  # noqa: F401  (registers the methods)
    from efficient_video.methods import build_model
    from efficient_video.engine import set_grad_checkpointing
    torch.manual_seed(0)
    model = build_model(method, 'ViT-B-16', num_classes=400, frames=frames).to(device).train()
    if ckpt: set_grad_checkpointing(model, True)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    x = torch.randn(batch, frames, 3, 224, 224, device=device)
    y = torch.randint(0, 400, (batch,), device=device)
    amp = device == 'cuda' and torch.cuda.get_device_capability()[0] >= 8
    def step():
        with torch.autocast(device, dtype=torch.bfloat16, enabled=amp):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
    step()                                                       # warm-up (allocations, kernels)
    if device == 'cuda': torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps): step()
    if device == 'cuda': torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() if device == 'cuda' else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {'method': method, 'grad_checkpointing': ckpt, 'clips_per_second': round(batch * steps / seconds, 3),
            'peak_memory_gb': round(peak / 2**30, 2), 'memory': 'GPU, allocated' if device == 'cuda' else 'process, max RSS',
            'trainable': sum(p.numel() for p in model.parameters() if p.requires_grad)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--batch', type=int, default=None, help='clips per step (default: 8 on GPU, 2 on CPU)')
    p.add_argument('--steps', type=int, default=None, help='timed steps (default: 10 on GPU, 3 on CPU)')
    p.add_argument('--frames', type=int, default=8)
    p.add_argument('--one', default=None, help=argparse.SUPPRESS)   # internal: method,ckpt for a child process
    args = p.parse_args(argv)
    batch = args.batch or (8 if args.device == 'cuda' else 2)
    steps = args.steps or (10 if args.device == 'cuda' else 3)
    if args.one:
        method, ckpt = args.one.split(',')
        print(json.dumps(measure(method, args.device, batch, steps, args.frames, ckpt == '1')))
        return
    rows = []
    for method, ckpt in (('frame-average', '0'), ('aim', '0'), ('aim', '1')):
        out = subprocess.run([sys.executable, __file__, '--device', args.device, '--batch', str(batch), '--steps', str(steps),
                              '--frames', str(args.frames), '--one', f'{method},{ckpt}'], capture_output=True, text=True,
                             env={**os.environ, 'HF_HUB_OFFLINE': '1'})
        if out.returncode: raise SystemExit(out.stderr[-3000:])
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    gpu = torch.cuda.get_device_name() if args.device == 'cuda' else None
    report = {'date': datetime.datetime.now().isoformat(timespec='seconds'), 'machine': platform.platform(),
              'device': gpu or f'CPU ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)',
              'scale': f'ViT-B/16, {args.frames} frames of 224 px, 400 classes, batch {batch}', 'rows': rows}
    print(json.dumps(report, indent=1))
    for r in rows:
        print(f"{r['method']:>14} {'grad ckpt' if r['grad_checkpointing'] else '         '}  {r['clips_per_second']:8.2f} clips/s  "
              f"peak {r['peak_memory_gb']:.2f} GB ({r['memory']})")
    return report


if __name__ == '__main__':
    main()
