"""Run `nbdev-test` (slow/cuda cells skipped) and record how many notebooks passed and failed.

nbdev-test prints only "Success." or the names of failing notebooks, so we list the notebooks it tests the same way
it does and count. Writes .ci/.work/nbtest.json; exits with nbdev-test's status."""
import json, re, subprocess, sys, time
from pathlib import Path
from nbdev.config import get_config
from nbdev.doclinks import nbglob
from nbdev.test import _keep_file

cfg = get_config()
files = [f for f in sorted(nbglob(cfg.nbs_path, as_path=True)) if _keep_file(f, '.notest')]
t0 = time.time()
proc = subprocess.run(['nbdev-test', '--timing', '--n-workers', '2'], capture_output=True, text=True)
sys.stdout.write(proc.stdout); sys.stderr.write(proc.stderr)
failed = set()
if proc.returncode != 0:
    m = re.search(r'Failed On The Following Notebooks:\n=+\n(.*)', proc.stderr, re.S)
    failed = {l.strip() for l in m.group(1).splitlines() if l.strip()} if m else {f.name for f in files}
res = {'notebooks': len(files), 'failed': sorted(failed), 'passed': len(files) - len(failed), 'seconds': round(time.time() - t0)}
Path('.ci/.work/nbtest.json').write_text(json.dumps(res))
print(f"nbdev-test: {res['passed']} notebooks passed, {len(failed)} failed in {res['seconds']} s")
sys.exit(proc.returncode)
