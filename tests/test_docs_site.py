"""The offline docs site, checked in a real browser (headless Chromium driven over the DevTools protocol).

Builds the site once per session (`efficient_video.docs.build_site`), serves it on 127.0.0.1, opens every page and
asserts: every notebook has a page, MathJax typeset every equation, every image loads, every internal link (and
anchor) resolves, and the server never answered 404 (e.g. a MathJax file we forgot to copy).

Needs Chromium (`apt-get install chromium`, or set `CHROMIUM=/path`) and `websocket-client`. Without them the tests
skip, unless `EV_REQUIRE_BROWSER=1` (set in CI), where they fail.
"""
import functools, http.server, json, os, re, shutil, subprocess, sys, tempfile, threading, time, urllib.request
from pathlib import Path
from urllib.parse import urlsplit, unquote

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault('HF_HUB_OFFLINE', '1')  # pages execute notebooks: never reach for a model hub

# ---------------------------------------------------------------- browser
def _chromium():
    for c in [os.environ.get('CHROMIUM'), 'chromium', 'chromium-headless-shell', 'chromium-browser', 'google-chrome']:
        if c and (p := shutil.which(c)): return p
    return None

def _need_browser():
    "Skip (locally) or fail (CI: EV_REQUIRE_BROWSER=1) when the browser or the CDP client is missing"
    why = None
    try: import websocket  # noqa: F401  (websocket-client)
    except ImportError: why = 'websocket-client is not installed (pip install websocket-client)'
    if _chromium() is None: why = 'Chromium not found (apt-get install chromium, or set CHROMIUM=/path/to/chromium)'
    if why is None: return
    if os.environ.get('EV_REQUIRE_BROWSER') == '1': pytest.fail(f'EV_REQUIRE_BROWSER=1 but {why}')
    pytest.skip(why)

class Browser:
    "Minimal Chrome DevTools Protocol client: one headless Chromium, one tab"
    def __init__(self, exe):
        import websocket
        self.tmp = tempfile.mkdtemp(prefix='ev-chromium-')
        args = [exe, '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
                '--disable-component-update', '--no-first-run', '--disable-sync', '--disable-dev-shm-usage',
                f'--user-data-dir={self.tmp}', '--remote-debugging-port=0', '--remote-allow-origins=*', 'about:blank']
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        port, t0 = None, time.time()
        while port is None and time.time() - t0 < 60:  # Chromium prints the port it picked
            line = self.proc.stderr.readline()
            if not line and self.proc.poll() is not None: break
            if m := re.search(r'DevTools listening on ws://[^:]+:(\d+)/', line): port = int(m.group(1))
        if port is None:
            self.close()
            raise RuntimeError(f'Chromium ({exe}) did not start a DevTools endpoint')
        # drain stderr so Chromium never blocks on a full pipe
        threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()
        tabs = json.load(urllib.request.urlopen(f'http://127.0.0.1:{port}/json/list', timeout=10))
        url = next(t['webSocketDebuggerUrl'] for t in tabs if t['type'] == 'page')
        self.ws = websocket.create_connection(url, timeout=60, suppress_origin=True)
        self.n = 0
        self.send('Page.enable')

    def send(self, method, **params):
        self.n += 1
        self.ws.send(json.dumps({'id': self.n, 'method': method, 'params': params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get('id') == self.n:
                if 'error' in msg: raise RuntimeError(f'{method}: {msg["error"]}')
                return msg['result']

    def eval(self, js):
        r = self.send('Runtime.evaluate', expression=js, awaitPromise=True, returnByValue=True)
        if 'exceptionDetails' in r: raise RuntimeError(f'JS error: {r["exceptionDetails"]}')
        return r['result'].get('value')

    def open(self, url, timeout=30):
        self.send('Page.navigate', url=url)
        t0 = time.time()
        while self.eval(f'document.readyState === "complete" && location.href === {json.dumps(url)}') is not True:
            if time.time() - t0 > timeout: raise TimeoutError(f'{url} did not load in {timeout}s')
            time.sleep(0.05)

    def close(self):
        try: self.ws.close()
        except Exception: pass
        self.proc.terminate()
        try: self.proc.wait(10)
        except subprocess.TimeoutExpired: self.proc.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)

# Runs in each page: wait for MathJax and images, then report what a reader would see.
PAGE_REPORT = r"""(async () => {
  const hub = window.MathJax && MathJax.Hub;
  if (hub) await new Promise(r => hub.Queue(r));
  await Promise.all([...document.images].map(i => i.complete ? 0 : new Promise(r => { i.onload = i.onerror = r; })));
  // Visible prose: code blocks may show a literal `$` or `\(`, so they are left out.
  const body = document.body.cloneNode(true);
  body.querySelectorAll('pre, code, script, style').forEach(e => e.remove());
  document.body.appendChild(body); body.style.cssText = 'position:absolute;left:-99999px';
  const prose = body.innerText; body.remove();
  return {
    prose, has_mathjax: !!hub,
    n_jax: hub ? hub.getAllJax().length : 0,
    n_rendered: document.querySelectorAll('.MathJax, .MathJax_Display, .MathJax_SVG').length,
    n_errors: document.querySelectorAll('.MathJax_Error, .merror, .noError').length,
    images: [...document.images].map(i => ({src: i.src.slice(0, 80), ok: i.complete && i.naturalWidth > 0})),
    links: [...document.querySelectorAll('a[href]')].map(a => a.href),
    ids: [...document.querySelectorAll('[id]')].map(e => e.id),
  };
})()"""

# ---------------------------------------------------------------- server
class _Server:
    "Serve `root` on 127.0.0.1 and remember every request answered with an error"
    def __init__(self, root):
        errors = self.errors = []
        class H(http.server.SimpleHTTPRequestHandler):
            def log_message(self, fmt, *args): pass
            def log_request(self, code='-', size='-'):
                if str(code).isdigit() and int(code) >= 400: errors.append((int(code), self.path))
        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(H, directory=str(root)))
        self.url = f'http://127.0.0.1:{self.httpd.server_address[1]}/'
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
    def close(self): self.httpd.shutdown(); self.httpd.server_close()

def visit_site(site:Path):
    "Open every page of `site` in Chromium; return ({page: report}, server errors)"
    _need_browser()
    srv, br = _Server(site), Browser(_chromium())
    try:
        reports = {}
        for f in sorted(site.rglob('*.html')):
            if 'mathjax' in f.relative_to(site).parts: continue
            page = f.relative_to(site).as_posix()
            br.open(srv.url + page)
            reports[page] = br.eval(PAGE_REPORT)
        return reports, srv.errors, srv.url
    finally:
        br.close(); srv.close()

def expected_pages(nbs:Path):
    "Pages nbdev/Quarto would make: every notebook not under a `_`/`.`-prefixed name, numeric prefix dropped"
    res = set()
    for p in nbs.rglob('*.ipynb'):
        rel = p.relative_to(nbs)
        if any(part[0] in '_.' for part in rel.parts): continue
        res.add(rel.with_name(re.sub(r'^\d+[a-zA-Z0-9]*_', '', rel.name.lower())).with_suffix('.html').as_posix())
    return res

def check_site(site:Path, nbs:Path, must_have_math=()):
    reports, errors, base = visit_site(site)
    missing = expected_pages(nbs) - set(reports)
    assert not missing, f'notebooks without a page: {sorted(missing)}'
    ids = {p: set(r['ids']) for p, r in reports.items()}
    for page, r in reports.items():
        assert r['has_mathjax'], f'{page}: MathJax did not load'
        for raw in ('$$', '\\(', '\\['):
            assert raw not in r['prose'], f'{page}: raw {raw!r} left in the text: MathJax did not typeset it'
        assert r['n_errors'] == 0, f'{page}: {r["n_errors"]} MathJax errors'
        assert r['n_rendered'] >= r['n_jax'], f'{page}: {r["n_jax"]} equations, only {r["n_rendered"]} rendered'
        bad = [i['src'] for i in r['images'] if not i['ok']]
        assert not bad, f'{page}: images that did not load: {bad}'
        for href in r['links']:
            if not href.startswith(base): continue  # external links are not ours to check offline
            sp = urlsplit(href)
            tgt = unquote(sp.path[len(urlsplit(base).path):]) or 'index.html'
            assert (site/tgt).is_file(), f'{page}: broken link {href}'
            if sp.fragment and tgt.endswith('.html'):
                assert tgt in ids and unquote(sp.fragment) in ids[tgt], f'{page}: link to a missing anchor {href}'
    for page in must_have_math:
        assert reports[page]['n_jax'] > 0 and reports[page]['n_rendered'] > 0, f'{page}: expected typeset math'
    assert not errors, f'requests the server could not answer: {errors}'
    return reports

# ---------------------------------------------------------------- a small project: every feature, always buildable
TINY = {
 '00_tiny.ipynb': ['# Tiny\n> A tiny notebook', '#| default_exp tiny', '#| export\nimport math',
     'The area is $A = \\pi r^2$, and\n\n$$E = mc^2$$\n\nfor $\\mathcal{L}: \\mathbb{R} \\to \\mathbb{R}$ (fonts beyond the basic set) costs \\$5. See [part two](tutorials/other.ipynb#part-two).',
     '#| export\ndef area(r:float, # radius\n        )->float:\n    "Area of a circle of radius `r`"\n    return math.pi*r**2',
     'import matplotlib.pyplot as plt\nplt.figure(figsize=(2,2)); plt.plot([0, 1], [0, area(1)]); plt.show()',
     '#| slow\nraise RuntimeError("a slow cell must not run in the docs build")',
     '![a picture](images/dot.png)'],
 'tutorials/other.ipynb': ['# Other\n> A page in a subfolder', '## Part two\nBack to [tiny](../00_tiny.ipynb#area).'],
 '_skipped.ipynb': ['# Skipped\n> nbdev ignores `_` files'],
}

def make_tiny_project(root:Path) -> Path:
    import nbformat
    from nbformat.v4 import new_notebook, new_markdown_cell, new_code_cell
    (root/'pyproject.toml').write_text('[project]\nname = "tiny"\n[tool.nbdev]\nlib_path = "tiny"\nnbs_path = "nbs"\n'
                                       'doc_path = "_docs"\ntst_flags = ["notest", "slow", "cuda"]\n')
    nbs = root/'nbs'
    for name, srcs in TINY.items():
        cells = [new_code_cell(s) if s.startswith('#|') or s.startswith('import') else new_markdown_cell(s) for s in srcs]
        (nbs/name).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(new_notebook(cells=cells, metadata={'kernelspec': {'name': 'python3', 'language': 'python',
                                                                          'display_name': 'Python 3'}}), nbs/name)
    import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
    (nbs/'images').mkdir()
    plt.figure(figsize=(1, 1)); plt.plot([0], [0], 'o'); plt.savefig(nbs/'images'/'dot.png'); plt.close()
    return nbs

@pytest.fixture(scope='session')
def tiny_site(tmp_path_factory):
    from efficient_video.docs import build_site
    _need_browser()
    root = tmp_path_factory.mktemp('tiny')
    nbs = make_tiny_project(root)
    return build_site(nbs, out=root/'_docs', theme=REPO/'docs'), nbs

def test_tiny_site_in_browser(tiny_site):
    site, nbs = tiny_site
    reports = check_site(site, nbs, must_have_math=['tiny.html'])
    assert set(reports) == {'tiny.html', 'tutorials/other.html'}
    r = reports['tiny.html']
    assert len(r['images']) == 2, 'the executed figure and the markdown image'
    assert '$5' in r['prose'], 'an escaped dollar stays a dollar'
    assert 'area' in r['ids'], 'show_doc rendered a heading for the exported function'
    assert any(h.endswith('tutorials/other.html#part-two') for h in r['links'])

# ---------------------------------------------------------------- the real site
@pytest.fixture(scope='session')
def real_site(tmp_path_factory):
    nbs = REPO/'nbs'
    if not any(nbs.glob('*.ipynb')): pytest.skip('no notebooks in nbs/ yet')
    _need_browser()  # don't spend a minute executing notebooks for nothing
    # built through the user-facing command, exactly as the README says
    out = tmp_path_factory.mktemp('site')
    exe = shutil.which('efficient-video') or str(Path(sys.executable).parent/'efficient-video')
    cmd = [exe, 'docs', '--out', str(out), '--json'] + ([] if os.environ.get('EV_DOCS_EXEC', '1') == '1' else ['--no-exec'])
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ, 'HF_HUB_OFFLINE': '1'})
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout)
    assert Path(report['out']) == out.resolve() and report['pages'] >= len(expected_pages(nbs)), report
    return out, nbs

def test_real_site_in_browser(real_site):
    site, nbs = real_site
    check_site(site, nbs)
