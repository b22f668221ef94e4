"""Print the closing line `N passed, N failed`: notebooks tested + pytest tests (+ failed repo checks)."""
import json, sys, xml.etree.ElementTree as ET
from pathlib import Path

checks_failed = int(sys.argv[1]) if len(sys.argv) > 1 else 0
nb = json.loads(Path('.ci/.work/nbtest.json').read_text()) if Path('.ci/.work/nbtest.json').exists() else {'passed': 0, 'failed': ['nbdev-test did not run']}
py_passed = py_failed = py_skipped = 0
xml = Path('.ci/.work/pytest.xml')
if xml.exists():
    for ts in ET.parse(xml).getroot().iter('testsuite'):
        tests, fails, errs, skips = (int(ts.get(k, 0)) for k in ('tests', 'failures', 'errors', 'skipped'))
        py_failed += fails + errs; py_skipped += skips; py_passed += tests - fails - errs - skips
else: py_failed += 1
passed = nb['passed'] + py_passed
failed = len(nb['failed']) + py_failed + checks_failed
print(f"notebooks: {nb['passed']} passed, {len(nb['failed'])} failed; pytest: {py_passed} passed, {py_failed} failed, {py_skipped} skipped; repo checks failed: {checks_failed}")
print(f"{passed} passed, {failed} failed, {py_skipped} skipped")
