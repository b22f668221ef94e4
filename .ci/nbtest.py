"""Run every notebook's cells as tests (cells flagged notest/slow/cuda skipped, as nbdev-test does) and record how
many notebooks passed and failed.

The notebooks run once, through the docs builder (`efficient_video.docs.build_site`, what `efficient-video docs`
calls), which executes each notebook's cells as nbdev-test does and fails a notebook on any cell's error; the pages it
writes are cached in .ci/.work/site/.cache, so the docs-site tests (tests/test_docs_site.py, pointed at that cache by
EV_DOCS_CACHE) check the pages of this very run instead of executing every notebook a second time. `--keep-going`:
one failing notebook does not hide the others. Writes .ci/.work/nbtest.json; exits 1 when any notebook failed."""
import json
import sys
import time
from pathlib import Path

from nbdev.config import get_config
from efficient_video.docs import DocsBuildError, build_site, list_notebooks

cfg = get_config()
nbs = list_notebooks(cfg.config_path / cfg.nbs_path)
work = Path('.ci/.work')
t0 = time.time()
failed, status = [], 0
try:
    build_site(out=work / 'site', cache=work / 'site' / '.cache', keep_going=True, n_workers=2)
except DocsBuildError as e:
    print(e, file=sys.stderr)
    failed, status = e.failed, 1
except Exception as e:                       # the builder itself broke: every notebook counts as not passed
    print(f'the notebooks could not be run: {type(e).__name__}: {e}', file=sys.stderr)
    failed, status = [p.name for p in nbs], 1
res = {'notebooks': len(nbs), 'failed': sorted(failed), 'passed': len(nbs) - len(failed),
       'seconds': round(time.time() - t0)}
(work / 'nbtest.json').write_text(json.dumps(res))
print(f"notebooks: {res['passed']} passed, {len(failed)} failed in {res['seconds']} s")
sys.exit(status)
