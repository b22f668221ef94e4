"""Time the full docs build (`efficient-video docs`, every notebook executed) on this machine, quiet and beside one busy
process, and check that it never loses work. Run it on an otherwise idle machine (it starts the busy process itself):

    python benchmarks/docs_build.py                  # quiet, then beside a busy process: ~2 full builds
    python benchmarks/docs_build.py --acceptance     # + a second build beside the busy process, and kill-and-resume

Each build starts from an empty cache (`--cache` in a temporary folder), so every notebook runs. What it writes to
`benchmarks/results/docs_build.json` (merged with what is there): for each measured build its wall-clock seconds, each
notebook's seconds (from the build's own timings), the pages built and failed, and the machine. The docs chapter
(nbs/90_docs.ipynb) and docs/README.md print the build times from that record.

--acceptance also checks issue #20's acceptance: two consecutive full builds beside a CPU-bound process both succeed,
and a build killed after `--kill-after` pages, run again with the same cache, runs only the notebooks it had not finished.
"""
import argparse, datetime, json, os, platform, re, shutil, signal, subprocess, sys, tempfile, time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILD = ("import sys; from efficient_video.docs import build_site; build_site(nbs_path=sys.argv[4] or None, out=sys.argv[1], "
         "cache=sys.argv[2], keep_going=True, n_workers=int(sys.argv[3]) or None, theme=sys.argv[5])")

def busy_process():
    "A CPU-bound process (one core), as another job on the machine would be"
    return subprocess.Popen([sys.executable, '-c', 'while True: pass'])

def run_build(out:Path, cache:Path, workers:int, log:Path, kill_after:int|None=None, nbs:str='') -> dict:
    "One build in a fresh interpreter; with `kill_after`, SIGKILL it (and its notebooks) once that many pages are written"
    t0 = time.monotonic()
    with open(log, 'w') as lf:
        p = subprocess.Popen([sys.executable, '-c', BUILD, str(out), str(cache), str(workers), nbs, str(REPO/'docs')], cwd=REPO, stdout=lf,
                             stderr=subprocess.STDOUT, env={**os.environ, 'HF_HUB_OFFLINE': '1'}, start_new_session=True)
        killed = False
        while p.poll() is None:
            time.sleep(1)
            if kill_after and len(re.findall(r'^docs: \[\s*\d+/\d+\] \S+ executed', log.read_text(), re.M)) >= kill_after:
                time.sleep(5)   # the page of the last one is being rendered
                os.killpg(p.pid, signal.SIGKILL); p.wait(); killed = True
    text = log.read_text()
    timings = json.loads((cache/'timings.json').read_text()) if (cache/'timings.json').exists() else {}
    return {'seconds': round(time.monotonic() - t0), 'returncode': p.returncode, 'killed': killed,
            'executed': re.findall(r'^docs: \[\s*\d+/\d+\] (\S+) executed', text, re.M),
            'failed': re.findall(r'^docs: \[\s*\d+/\d+\] FAILED (\S+)', text, re.M),
            'from_cache': sum(int(n) for n in re.findall(r'^docs: (\d+) pages? unchanged', text, re.M)),
            'notebook_seconds': timings}

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--workers', type=int, default=0, help='notebooks at a time (0: the build\'s default)')
    ap.add_argument('--acceptance', action='store_true', help='also: a second build beside the busy process, and kill-and-resume')
    ap.add_argument('--kill-after', type=int, default=5, help='with --acceptance: kill the build after this many pages')
    ap.add_argument('--skip-quiet', action='store_true', help='do not measure the quiet build')
    ap.add_argument('--record', default=str(REPO/'benchmarks'/'results'/'docs_build.json'))
    ap.add_argument('--keep', action='store_true', help='keep the sites and logs (printed) instead of deleting them')
    ap.add_argument('--nbs', default='', help='another notebooks folder (a quick try of this script on a small project)')
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix='ev-docs-bench-'))
    rec = json.loads(Path(a.record).read_text()) if Path(a.record).exists() else {}
    import torch, efficient_video
    rec['machine'] = {'date': datetime.datetime.now().isoformat(timespec='seconds'), 'platform': platform.platform(),
                      'cpus': os.cpu_count(), 'torch': torch.__version__, 'efficient_video': efficient_video.__version__,
                      'workers': a.workers or None}
    def build(name, busy=False, **kw):
        print(f'== {name}{" (beside a busy process)" if busy else ""}', flush=True)
        b = busy_process() if busy else None
        try: r = run_build(work/name/'site', kw.pop('cache', work/name/'cache'), a.workers, work/f'{name}.log', nbs=a.nbs, **kw)
        finally:
            if b: b.kill(); b.wait()
        print(f"   {r['seconds'] / 60:.1f} min, {len(r['executed'])} executed, {r['from_cache']} from the cache, "
              f"failed: {r['failed'] or 'none'}, exit status {r['returncode']}", flush=True)
        return r
    if not a.skip_quiet: rec['quiet'] = build('quiet')
    rec['busy'] = build('busy', busy=True)
    if a.acceptance:
        second = build('busy2', busy=True)
        (work/'resume').mkdir()
        killed = build('killed', kill_after=a.kill_after, cache=work/'resume'/'cache')
        resumed = build('resumed', cache=work/'resume'/'cache')
        unfinished = sorted(set(resumed['executed']))
        rec['acceptance'] = {
            'two_busy_builds_succeed': rec['busy']['returncode'] == 0 and second['returncode'] == 0,
            'busy2_seconds': second['seconds'],
            'killed_after_pages': len(killed['executed']),
            'resumed_from_cache': resumed['from_cache'], 'resumed_executed': unfinished,
            'resume_reran_only_unfinished': not set(killed['executed']) & set(unfinished) and resumed['returncode'] == 0}
        print(json.dumps(rec['acceptance'], indent=1))
    Path(a.record).write_text(json.dumps(rec, indent=1) + '\n')
    print(f'wrote {a.record}')
    if a.keep: print(f'sites and logs kept in {work}')
    else: shutil.rmtree(work, ignore_errors=True)

if __name__ == '__main__': main()
