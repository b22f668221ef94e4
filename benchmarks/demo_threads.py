"""The demo's rows on 1 and 2 torch threads, on a quiet machine and beside a busy process: which thread count to use.

    python benchmarks/demo_threads.py [--methods vpt,aim,temporal-transformer] [--epochs 4] [--repeats 1]
                                      [--record benchmarks/results/demo_threads.json]

Each condition runs `efficient-video demo --methods ... --epochs E --threads T` in a fresh process and a fresh output
folder (so nothing is kept from an earlier condition and the feature cache starts cold), either alone or while
another process spins on one core (`while True: pass`: what a browser or an editor does to a reader's laptop). The
conditions are interleaved, so a drift of the machine's speed does not favour one of them. Prints a table of each
row's seconds and writes the record. Run it alone: any other job on the machine is a second busy process."""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def busy_loop() -> subprocess.Popen:
    "A process that keeps one core busy until it is killed."
    return subprocess.Popen([sys.executable, '-c', 'while True: pass'])


def run_condition(methods: str, epochs: int, threads: int, busy: bool, out: Path) -> dict:
    "One `efficient-video demo` in a fresh process: each row's seconds and the command's wall time."
    cmd = ['efficient-video', 'demo', '--methods', methods, '--epochs', str(epochs), '--threads', str(threads),
           '--out', str(out), '--device', 'cpu']
    env = {**os.environ, 'HF_HUB_OFFLINE': '1', 'EFFICIENT_VIDEO_CACHE': str(out/'feature-cache')}   # cold cache
    env.pop('OMP_NUM_THREADS', None)      # the --threads option decides, not the environment
    spinner = busy_loop() if busy else None
    try:
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    report = json.loads((out/'results.json').read_text())
    return dict(threads=threads, busy=busy, wall=round(wall, 1), report_threads=report['threads'],
                rows={row: r['seconds'] for row, r in report['methods'].items()})


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--methods', default='vpt,aim,temporal-transformer', help="demo rows, or 'all'")
    p.add_argument('--epochs', type=int, default=4, help='epochs of the tower rows (the demo trains 14)')
    p.add_argument('--repeats', type=int, default=1)
    p.add_argument('--conditions', default='quiet:1,quiet:2,busy:1,busy:2',
                   help='comma-separated LOAD:THREADS pairs, LOAD quiet or busy (default: all four)')
    p.add_argument('--record', default=None, help='write the record here (JSON)')
    args = p.parse_args(argv)
    if args.methods == 'all':
        from efficient_video.demo import DEMO_ROWS
        args.methods = ','.join(DEMO_ROWS)
    conditions = [(load == 'busy', int(t)) for load, t in (c.split(':') for c in args.conditions.split(','))]
    runs = []
    with tempfile.TemporaryDirectory(prefix='ev-demo-threads-') as d:
        for rep in range(args.repeats):
            for busy, threads in conditions:
                out = Path(d)/f'{rep}-{int(busy)}-{threads}'
                r = run_condition(args.methods, args.epochs, threads, busy, out)
                runs.append(r)
                print(f"threads={threads} {'busy' if busy else 'quiet'}: wall {r['wall']:.0f} s, rows "
                      + ', '.join(f'{k} {v:.1f} s' for k, v in r['rows'].items()), flush=True)
    summary = {}
    for busy, threads in conditions:
        sel = [r for r in runs if r['busy'] == busy and r['threads'] == threads]
        rows = {k: round(min(r['rows'][k] for r in sel), 1) for k in sel[0]['rows']}
        summary[f"{'busy' if busy else 'quiet'}, {threads} thread{'s' if threads > 1 else ''}"] = dict(
            rows=rows, row_seconds=round(sum(rows.values()), 1), wall=min(r['wall'] for r in sel))
    print('\n| condition | ' + ' | '.join(runs[0]['rows']) + ' | rows (s) | command wall (s) |')
    print('|---|' + '---|' * (len(runs[0]['rows']) + 2))
    for name, s in summary.items():
        print(f"| {name} | " + ' | '.join(f'{v:.1f}' for v in s['rows'].values())
              + f" | {s['row_seconds']:.1f} | {s['wall']:.0f} |")
    record = dict(date=datetime.date.today().isoformat(), machine=f"{os.cpu_count()} CPUs, {platform.machine()}",
                  torch=torch.__version__, methods=args.methods.split(','), epochs=args.epochs,
                  repeats=args.repeats, busy_process='python -c "while True: pass" (one core)',
                  summary=summary, runs=runs)
    if args.record:
        Path(args.record).write_text(json.dumps(record, indent=1) + '\n')
        print(f'wrote {args.record}')


if __name__ == '__main__':
    main()
