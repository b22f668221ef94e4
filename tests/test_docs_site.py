"""The offline docs site, checked in a real browser (headless Chromium driven over the DevTools protocol).

Builds the site once per session (`efficient_video.docs.build_site`), serves it on 127.0.0.1, opens every page and
asserts what a reader sees. At 1400 px: every notebook has a page, MathJax typeset every equation, every image loads
and has alt text, every internal link (and anchor) resolves, no link's text is a bare notebook name (`06_train`), no
output is a stderr block (warnings, progress bars) or a widget repr, outputs wrap instead of scrolling sideways, a page
with an h2 heading has "On this page" in its right margin, listing every h2 and marking the section scrolled to, no
display formula is wider than its box unless that box scrolls (with the cue), a chapter opens with text (its imports
and set-up folded below it), every output figure is numbered with a caption line, and the search box (typed into
through CDP) finds sections. At 400 px (a phone) no page scrolls sideways, and "On this page" sits above the text,
closed. No page or search index holds the build's temporary paths or the checkout's path, and the server never
answered 404 (e.g. a MathJax file we forgot to copy). On the real site, the AIM chapter's prose links `AIMBlock` to
its docs. The real site is built with `efficient-video docs --cache _docs/.cache` (or `$EV_DOCS_CACHE`): pages an
earlier build made from the same notebooks and package code are reused (they are that build's executed pages); a
clean checkout, as in CI, executes every notebook.

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

    def viewport(self, width, height=900, mobile=False):
        "Emulate a window `width` CSS pixels wide (a phone when `mobile`: the page's viewport meta applies)"
        self.send('Emulation.setDeviceMetricsOverride', width=width, height=height, deviceScaleFactor=1, mobile=mobile)

    def type(self, selector, text):
        "Focus `selector` and type `text` into it as a user would (input events included)"
        self.eval(f'document.querySelector({json.dumps(selector)}).focus()')
        self.send('Input.insertText', text=text)

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
    images: [...document.images].map(i => ({src: i.src.slice(0, 80), ok: i.complete && i.naturalWidth > 0, alt: i.alt})),
    links: [...document.querySelectorAll('a[href]')].map(a => a.href),
    link_texts: [...document.querySelectorAll('a[href]:not(.anchor-link)')].map(a => a.textContent.trim()),
    ids: [...document.querySelectorAll('[id]')].map(e => e.id),
    n_stderr: document.querySelectorAll('.output_stderr').length,
    outputs: [...document.querySelectorAll('.output_area')].map(e => e.innerText),
    h2: [...document.querySelectorAll('main h2[id]')].map(h => h.id),
    toc: [...document.querySelectorAll('nav.toc[aria-label="On this page"] a')].map(a => a.getAttribute('href')),
    wide_outputs: [...document.querySelectorAll('.output_area pre')].filter(p => p.scrollWidth > p.clientWidth + 1).length,
    // "On this page" in the right margin: right of the text column, visible at the top of the window
    toc_margin: (() => {
      const t = document.querySelector('aside.toc-margin nav.toc'), m = document.querySelector('main');
      if (!t) return null;
      const r = t.getBoundingClientRect(), col = m.getBoundingClientRect(), cs = getComputedStyle(m);
      return {left: r.left, width: r.width, top: r.top, text_right: col.right - parseFloat(cs.paddingRight),
              visible: r.width > 0 && r.height > 0 && r.top < innerHeight, n: t.querySelectorAll('a').length};
    })(),
    // Display formulas wider than their box, and whether that box scrolls sideways (with the cue)
    math: [...document.querySelectorAll('.MathJax_Display')].map(d => {
      const f = d.querySelector('span.MathJax') || d, box = d.closest('.math-display');
      const w = f.getBoundingClientRect().width, boxw = box ? box.clientWidth : d.clientWidth;
      return {tex: (d.nextElementSibling && d.nextElementSibling.textContent || '').slice(0, 60), w: Math.round(w),
              box: boxw, in_box: !!box, scrolls: !!box && ['auto', 'scroll'].includes(getComputedStyle(box).overflowX)
              && box.scrollWidth > box.clientWidth, cue: !!box && box.classList.contains('scrolls')};
    }),
    doc_links: [...document.querySelectorAll('main a[href]')].filter(a => a.querySelector('code'))
               .map(a => ({href: a.getAttribute('href'), api: !!a.closest('.doc-api')})),
    first_cell: ([...document.querySelectorAll('main .cell')].find(c => c.innerText.trim()) || {className: ''}).className,
    shrunk: [...document.querySelectorAll('figure.ev-figure img')].filter(i => i.naturalWidth > 1.25 * i.clientWidth)
            .map(i => `${i.closest('figure').id}: ${i.naturalWidth} px shown at ${i.clientWidth}`),
    figures: [...document.querySelectorAll('.output_area img')].map(i => {
      const f = i.closest('figure.ev-figure'), c = f && f.querySelector('figcaption');
      return c ? c.textContent.trim() : null;
    }),
    code_cells: document.querySelectorAll('.input_area pre').length,
    wide_code: [...document.querySelectorAll('.input_area pre')].filter(p => p.scrollWidth > p.clientWidth + 1).length,
  };
})()"""

# At phone width: does the page scroll sideways, and which elements stick out (not inside a box that scrolls/clips)?
OVERFLOW_REPORT = r"""(async () => {
  const hub = window.MathJax && MathJax.Hub;
  if (hub) await new Promise(r => hub.Queue(r));
  const W = document.documentElement.clientWidth, over = document.documentElement.scrollWidth - W, culprits = [];
  const clipped = e => { for (let p = e.parentElement; p && p !== document.body; p = p.parentElement)
    if (getComputedStyle(p).overflowX !== 'visible') return true; return false; };
  if (over > 1) for (const e of document.querySelectorAll('main *, nav *')) {
    if (e.getBoundingClientRect().right > W + 1 && !clipped(e)) {
      culprits.push(e.tagName.toLowerCase() + '.' + String(e.className).split(' ').join('.') + ': ' + (e.textContent || '').trim().slice(0, 60));
      if (culprits.length >= 5) break;
    }
  }
  const toc = document.querySelector('details.toc-box'), main = document.querySelector('main');
  return {width: W, over, culprits, toc_open: toc ? toc.open : null,
          toc_in_text: toc ? main.contains(toc) && toc.getBoundingClientRect().right <= W + 1 : null};
})()"""

# Scroll to the middle entry of "On this page" and report which entry the page marks as the current section
SPY = r"""(async () => {
  const links = [...document.querySelectorAll('nav.toc a[href^="#"]')];
  if (links.length < 2) return null;
  const want = links[Math.floor(links.length / 2)], head = id => document.getElementById(decodeURIComponent(id.slice(1)));
  head(want.getAttribute('href')).scrollIntoView();
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  window.dispatchEvent(new Event('scroll'));
  await new Promise(r => setTimeout(r, 150));
  const got = document.querySelector('nav.toc a.active');
  return {want: want.getAttribute('href'), got: got && got.getAttribute('href'),
          want_top: head(want.getAttribute('href')).getBoundingClientRect().top,
          got_top: got ? head(got.getAttribute('href')).getBoundingClientRect().top : null};
})()"""

RESULTS = "[...document.querySelectorAll('#search-results a')].map(a => ({href: a.href, text: a.textContent}))"

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

def search_site(br, url, query, timeout=20):
    "Open `url`, type `query` into the search box, and return the results the page lists"
    br.open(url)
    br.type('#search', query)
    t0 = time.time()
    while not (hits := br.eval(RESULTS)) and time.time() - t0 < timeout: time.sleep(0.1)
    return hits

def visit_site(site:Path, query:str):
    "Open every page of `site` in Chromium at 1400 and 400 px, search for `query`; return (reports, phone, hits, errors, url)"
    _need_browser()
    srv, br = _Server(site), Browser(_chromium())
    try:
        pages = [f.relative_to(site).as_posix() for f in sorted(site.rglob('*.html')) if 'mathjax' not in f.relative_to(site).parts]
        reports, phone = {}, {}
        br.viewport(1400)
        for page in pages:
            br.open(srv.url + page)
            reports[page] = br.eval(PAGE_REPORT)
            reports[page]['spy'] = br.eval(SPY)
        hits = search_site(br, srv.url + pages[-1], query)
        br.viewport(400, 800, mobile=True)
        for page in pages:
            br.open(srv.url + page)
            phone[page] = br.eval(OVERFLOW_REPORT)
        return reports, phone, hits, srv.errors, srv.url
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

_re_nb_name = re.compile(r'^\d+[a-zA-Z]?_[\w-]+(\.ipynb)?(#\S*)?$')          # `06_train`, `03a_pretrain.ipynb#x`
_re_widget = re.compile(r'\b\w+\(children=\(|application/vnd\.jupyter\.widget')  # `interactive(children=(IntSlider(...`
_re_mkdtemp = re.compile(r'/tmp/tmp[a-z0-9_]{8}\b')                              # tempfile.mkdtemp() under /tmp

def check_site(site:Path, nbs:Path, must_have_math=(), query='', forbidden=()):
    """Check every page of `site` as a reader sees it; `query` must find a section in the search box, and no page
    (nor the search index) may contain any of the `forbidden` strings (the build's temporary folders)"""
    for f in [*site.rglob('*.html'), site/'search.json', site/'search.js']:
        if 'mathjax' in f.relative_to(site).parts: continue
        text = f.read_text(encoding='utf-8')
        leaks = [x for x in forbidden if x in text] + _re_mkdtemp.findall(text)
        assert not leaks, f'{f.relative_to(site)}: temporary paths of the build on the page: {leaks}'
    reports, phone, hits, errors, base = visit_site(site, query)
    missing = expected_pages(nbs) - set(reports)
    assert not missing, f'notebooks without a page: {sorted(missing)}'
    ids = {p: set(r['ids']) for p, r in reports.items()}
    def resolve(page, href):
        "Assert an internal link `href` lands on a file of the site (and on an existing anchor of a page)"
        sp = urlsplit(href)
        tgt = unquote(sp.path[len(urlsplit(base).path):]) or 'index.html'
        assert (site/tgt).is_file(), f'{page}: broken link {href}'
        if sp.fragment and tgt.endswith('.html'):
            assert tgt in ids and unquote(sp.fragment) in ids[tgt], f'{page}: link to a missing anchor {href}'
    for page, r in reports.items():
        assert r['has_mathjax'], f'{page}: MathJax did not load'
        for raw in ('$$', '\\(', '\\['):
            assert raw not in r['prose'], f'{page}: raw {raw!r} left in the text: MathJax did not typeset it'
        assert r['n_errors'] == 0, f'{page}: {r["n_errors"]} MathJax errors'
        assert r['n_rendered'] >= r['n_jax'], f'{page}: {r["n_jax"]} equations, only {r["n_rendered"]} rendered'
        bad = [i['src'] for i in r['images'] if not i['ok']]
        assert not bad, f'{page}: images that did not load: {bad}'
        no_alt = [i['src'] for i in r['images']
                  if i['alt'].strip().lower() in ('', 'png', 'image', 'no description has been provided for this image')]
        assert not no_alt, f'{page}: images without alt text: {no_alt}'
        for href in r['links']:
            if href.startswith(base): resolve(page, href)  # external links are not ours to check offline
        ids_shown = [t for t in r['link_texts'] if _re_nb_name.match(t)]
        assert not ids_shown, f'{page}: links that show a notebook name instead of a title: {ids_shown}'
        assert r['n_stderr'] == 0, f'{page}: {r["n_stderr"]} stderr blocks (warnings, progress bars) on the page'
        widgets = [o[:80] for o in r['outputs'] if _re_widget.search(o)]
        assert not widgets, f'{page}: widget reprs on the page: {widgets}'
        assert r['wide_outputs'] == 0, f'{page}: {r["wide_outputs"]} outputs scroll sideways at 1400 px instead of wrapping'
        if r['h2']:
            t = r['toc_margin']
            assert t and t['visible'] and t['left'] >= t['text_right'] - 1, f'{page}: no "On this page" in the right margin: {t}'
            missing_h2 = [h for h in r['h2'] if f'#{h}' not in r['toc']]
            assert not missing_h2, f'{page}: "On this page" misses {missing_h2}'
            if (spy := r['spy']):   # the section scrolled to is marked (or one that starts right below it, above the line)
                assert spy['got'] == spy['want'] or (spy['got_top'] is not None and spy['want_top'] <= spy['got_top'] <= 121), \
                    f'{page}: scrolled to {spy["want"]}, "On this page" marks {spy["got"]}'
            assert phone[page]['toc_open'] is False and phone[page]['toc_in_text'], f'{page}: at 400 px "On this page" is not above the text, closed'
        clipped = [m for m in r['math'] if m['w'] > m['box'] + 1 and not (m['scrolls'] and m['cue'])]
        assert not clipped, f'{page}: display formulas wider than their box, which does not scroll (with its cue): {clipped}'
        assert not r['math'] or all(m['in_box'] for m in r['math']), f'{page}: display formulas left in their paragraph'
        if r['code_cells']:
            assert 'text_cell' in r['first_cell'], f'{page}: opens with a code cell ({r["first_cell"]}), not with text'
        n_fig = [c for c in r['figures']]
        assert all(c and c.startswith(f'Figure {i}.') for i, c in enumerate(n_fig, 1)), f'{page}: figures without number/caption: {n_fig}'
        p = phone[page]
        assert p['over'] <= 1, f'{page}: at {p["width"]} px the page scrolls sideways by {p["over"]} px: {p["culprits"]}'
    for page in must_have_math:
        assert reports[page]['n_jax'] > 0 and reports[page]['n_rendered'] > 0, f'{page}: expected typeset math'
    if query:
        assert hits, f'searching {query!r} found nothing'
        for h in hits: resolve('search results', h['href'])
        assert any(query.lower() in h['text'].lower() for h in hits), f'no result for {query!r} mentions it: {hits[:3]}'
    assert not errors, f'requests the server could not answer: {errors}'
    n_code, n_wide = sum(r['code_cells'] for r in reports.values()), sum(r['wide_code'] for r in reports.values())
    return dict(reports=reports, phone=phone, hits=hits, code_cells=n_code, wide_code=n_wide)

# ---------------------------------------------------------------- a small project: every feature, always buildable
def code(src): return ('code', src)

WIDE_MATH = ('$$\\mathcal{L}(\\theta) = -\\sum_{i=1}^{N} \\log \\frac{\\exp(\\langle f(x_i), g(t_i) \\rangle / \\tau)}'
             '{\\sum_{j=1}^{N} \\exp(\\langle f(x_i), g(t_j) \\rangle / \\tau)} + \\lambda_1 \\lVert \\theta \\rVert_1'
             ' + \\lambda_2 \\lVert \\theta \\rVert_2^2$$')
WIDER_MATH = '$$' + ' + '.join(f'\\alpha_{{{i}}} x_{{{i}}}^{{{i}}}' for i in range(40)) + '$$'
WIDE_TABLE = ('| ' + ' | '.join(f'column number {i}' for i in range(12)) + ' |\n|' + '---|' * 12 + '\n| '
              + ' | '.join(str(i) for i in range(12)) + ' |')

TINY = {
 '00_tiny.ipynb': ['# Tiny\n> A tiny notebook', code('#| default_exp tiny'), code('#| export\nimport math'),
     # imports and set-up before the first sentence: folded, after it
     code('import os\nfrom pathlib import Path'), code('ROOT = Path.cwd().parent   # the project'),
     'The area is $A = \\pi r^2$, and\n\n$$E = mc^2$$\n\nfor $\\mathcal{L}: \\mathbb{R} \\to \\mathbb{R}$ (fonts beyond the basic set) costs \\$5. See [part two](tutorials/other.ipynb#part-two).',
     code('#| export\ndef area(r:float, # radius\n        )->float:\n    "Area of a circle of radius `r`"\n    return math.pi*r**2'),
     code('#| fig-cap: The area of circles of radius 0 and 1\nimport matplotlib.pyplot as plt\n'
          'plt.figure(figsize=(2,2)); plt.plot([0, 1], [0, area(1)]); plt.show()'),
     # a long default value, a docstring of two lines; a path in the checkout
     code('#| export\nRADII = tuple(range(40))\ndef areas(radii:tuple=RADII, # radii\n          )->list:\n'
          '    \"\"\"Areas of circles, one for each\n    radius in `radii`\"\"\"\n    return [area(r) for r in radii]'),
     code('print("project:", ROOT, "data:", ROOT/"data")'),
     code('print("| radius | area |\\n|--:|--:|\\n| 1 | 3.14 |")'),   # a printed Markdown table: shown as a table
     code('#| slow\nraise RuntimeError("a slow cell must not run in the docs build")'),
     '![a picture](images/dot.png)',
     # what a run prints that a reader should not see: progress bars, warnings, widget reprs, temporary paths
     '## What a run prints\nAs [00_tiny.ipynb](00_tiny.ipynb#area) and `00_tiny` say (chapter references show titles).',
     code('import tempfile, warnings\nfrom ipywidgets import interact\nfrom tqdm.auto import tqdm'),
     code('squares = [i * i for i in tqdm(range(300), desc="squares")]\nwarnings.warn("readers need not see this")\n'
          'print("saved to", tempfile.mkdtemp())'),
     code('_ = interact(area, r=(1, 5))'),
     code('print(" ".join(f"word{i}" for i in range(80)))'),
     # what must not widen the page on a phone: display math, a table, a long output line (above), an image
     f'## Wide things\n{WIDE_MATH}\n\nInline too: {WIDE_MATH.replace("$$", "$")}.\n\n{WIDE_TABLE}\n\n![](images/dot.png)\n\n'
     f'Wider than the column at 1400 px, inside a sentence: {WIDER_MATH} and on.'],
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
        cells = [new_code_cell(s[1]) if isinstance(s, tuple) else new_markdown_cell(s) for s in srcs]
        (nbs/name).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(new_notebook(cells=cells, metadata={'kernelspec': {'name': 'python3', 'language': 'python',
                                                                          'display_name': 'Python 3'}}), nbs/name)
    import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
    (nbs/'images').mkdir()
    plt.figure(figsize=(1, 1)); plt.plot([0], [0], 'o'); plt.savefig(nbs/'images'/'dot.png'); plt.close()
    return nbs

@pytest.fixture(scope='session')
def tiny_site(tmp_path_factory):
    import tempfile
    from efficient_video.docs import build_site
    _need_browser()
    root = tmp_path_factory.mktemp('tiny')
    nbs = make_tiny_project(root)
    build_tmp, old = tmp_path_factory.mktemp('tinytmp'), tempfile.tempdir
    tempfile.tempdir = str(build_tmp)  # the build's temporary folders go here: no page may mention it
    try: site = build_site(nbs, out=root/'_docs', theme=REPO/'docs', quiet=True)
    finally: tempfile.tempdir = old
    return site, nbs, build_tmp

def test_tiny_site_in_browser(tiny_site):
    site, nbs, build_tmp = tiny_site
    res = check_site(site, nbs, must_have_math=['tiny.html'], query='area', forbidden=[str(build_tmp), str(nbs.parent)])
    reports = res['reports']
    assert set(reports) == {'tiny.html', 'tutorials/other.html'}
    r = reports['tiny.html']
    assert len(r['images']) == 3, 'the executed figure and the two markdown images'
    assert r['figures'] == ['Figure 1. The area of circles of radius 0 and 1'], r['figures']
    assert '$5' in r['prose'], 'an escaped dollar stays a dollar'
    assert 'area' in r['ids'], 'show_doc rendered a heading for the exported function'
    assert any(h.endswith('tutorials/other.html#part-two') for h in r['links'])
    assert 'Tiny' in r['link_texts'], 'links to 00_tiny show its title'
    assert any('saved to /tmp/…' in o for o in r['outputs']), 'the temporary path is shown, as /tmp/…'
    assert any(o.strip() == 'project: . data: ./data' for o in r['outputs']), 'paths in the checkout are shown relative to it'
    assert any(h['href'].endswith('tiny.html#area') for h in res['hits']), res['hits']
    wide = [m for m in r['math'] if m['w'] > m['box']]
    assert wide and all(m['scrolls'] and m['cue'] for m in wide), f'the wide formula scrolls in its box, with the cue: {r["math"]}'
    page = (site/'tiny.html').read_text()
    from bs4 import BeautifulSoup
    soup = BeautifulSoup(page, 'html.parser')
    assert 'radii:tuple=RADII, # radii' in soup.get_text(), 'a long default value is shown by its name'
    assert [[td.get_text() for td in tr.find_all('td')] for tr in soup.select('.output_area table tbody tr')] == [['1', '3.14']]
    assert re.search(r'<em>Areas of circles, one for each\s+radius in <code>radii</code></em>', page), 'the docstring in italics, both lines'
    folded = re.search(r'<details class="fold" data-group="setup"><summary>Imports and set-up</summary>(.*?)</details>', page, re.S)
    assert folded and 'ROOT' in folded.group(1) and page.index('The area is') < folded.start(), 'imports and set-up folded after the first text'

def test_docs_module_imports_light():
    "`import efficient_video.docs` loads none of the heavy dev extras (they are imported where they are used)"
    heavy = ['nbconvert', 'nbformat', 'jinja2', 'bs4', 'pygments', 'execnb', 'nbdev']
    code = f"import sys, efficient_video.docs; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, 'PYTHONPATH': os.pathsep.join(filter(None, [str(REPO), os.environ.get('PYTHONPATH')]))})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == '[]', f'importing efficient_video.docs imported {res.stdout.strip()}'

# ---------------------------------------------------------------- the real site
@pytest.fixture(scope='session')
def real_site(tmp_path_factory):
    import tempfile
    nbs = REPO/'nbs'
    if not any(nbs.glob('*.ipynb')): pytest.skip('no notebooks in nbs/ yet')
    _need_browser()  # don't spend a minute executing notebooks for nothing
    # built through the user-facing command, exactly as the README says
    out = tmp_path_factory.mktemp('site')
    build_tmp = tempfile.mkdtemp(prefix='ev-site-tmp-')  # short: notebooks may put sockets in their temp folder
    exe = shutil.which('efficient-video') or str(Path(sys.executable).parent/'efficient-video')
    # Pages whose notebook and package code are unchanged since an earlier build (`efficient-video docs`, or this test)
    # come from its cache: they are the executed pages that build made. A clean checkout (CI) executes every notebook.
    cache = os.environ.get('EV_DOCS_CACHE') or str(REPO/'_docs'/'.cache')
    cmd = [exe, 'docs', '--out', str(out), '--cache', cache, '--json'] + ([] if os.environ.get('EV_DOCS_EXEC', '1') == '1' else ['--no-exec'])
    t0 = time.time()
    try: res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ, 'HF_HUB_OFFLINE': '1', 'TMPDIR': build_tmp})
    finally: shutil.rmtree(build_tmp, ignore_errors=True)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout)
    assert Path(report['out']) == out.resolve() and report['pages'] >= len(expected_pages(nbs)), report
    print(f'\nbuilt the real site in {time.time() - t0:.0f}s:\n{res.stderr}')
    return out, nbs, res.stderr, [build_tmp, os.path.realpath(build_tmp), str(REPO), os.path.realpath(REPO)]

def test_real_site_build_log(real_site):
    """The build says what it does: how many pages come from the cache, then for each other notebook a line when it
    starts and one when it ends (its seconds, its peak memory, what still runs), and a summary"""
    site, nbs, log, _ = real_site
    lines, n = log.strip().splitlines(), len(expected_pages(nbs))
    cached = sum(int(m.group(1)) for l in lines if (m := re.match(r'^docs: (\d+) pages? unchanged since the last build', l)))
    started = [l for l in lines if re.match(r'^docs: start \S+\.ipynb; running: .+; \d+/\d+ done, \S+ elapsed', l)]
    done = [l for l in lines if re.match(r'^docs: \[\s*\d+/\d+\] \S+\.ipynb (executed|processed) in \d+\.\ds(, peak \d+\.\d GB)?'
                                         r'(\s\(.*\))?; running: ', l)]
    assert len(done) + cached == n and len(started) == len(done), log
    if done: assert any(l.startswith(('docs: executing', 'docs: processing')) for l in lines), log
    assert re.match(rf'^docs: {n} pages in .+, \d+s', lines[-1]) and 'FAILED' not in lines[-1], log

def test_real_site_in_browser(real_site):
    site, nbs, _, build_tmp = real_site
    res = check_site(site, nbs, query='fit', forbidden=build_tmp)   # the build's temp folders and the checkout's path
    print(f"\ncode cells wider than the column at 1400 px: {res['wide_code']} of {res['code_cells']}")
    aim = res['reports']['aim.html']['doc_links']
    prose = [l['href'] for l in aim if not l['api']]
    assert any(h.split('/')[-1] == 'aim.html#aimblock' for h in prose), f'the AIM chapter\'s prose does not link AIMBlock: {prose}'
    n_links = sum(len(r['doc_links']) for r in res['reports'].values())
    shrunk = {p: r['shrunk'] for p, r in res['reports'].items() if r['shrunk']}
    print(f'doc links to documented names: {n_links}; figures shown below 80% of their drawn size (text shrinks with them): {shrunk}')
    # a review found 79% of code cells scrolling sideways at 1400 px; lines up to ~125 characters now fit
    assert res['wide_code'] <= 0.2 * res['code_cells'], f"{res['wide_code']} of {res['code_cells']} code cells scroll sideways"
