"""The docs site (`make docs` = tools/build_docs.py): one page per notebook, no errors, offline, and it renders.

The site is built once per test session (module-scoped fixture; executing the notebooks is most of the cost).
Set DOCS_SITE_REUSE=1 to check an existing `site/` from a `make docs` run instead of rebuilding.
The screenshot test needs Debian's chromium (`make browser-deps`); it is skipped with a reason otherwise.
"""
import contextlib, functools, http.server, importlib.util, json, os, re, shutil, socket, threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "site"
SHOTS = ROOT / "artifacts" / "screenshots"


def _load_builder():
    spec = importlib.util.spec_from_file_location("build_docs", ROOT / "tools" / "build_docs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


bd = _load_builder()


@pytest.fixture(scope="module")
def site():
    if not (os.environ.get("DOCS_SITE_REUSE") == "1" and (SITE / bd.MANIFEST).exists()):
        cwd = os.getcwd()
        try: bd.main([])            # raises SystemExit (with the failing notebook and cell) if the build fails
        except SystemExit as e:
            if e.code not in (0, None): pytest.fail(f"docs build failed: {e.code}")
        finally: os.chdir(cwd)
    pages = json.loads((SITE / bd.MANIFEST).read_text())
    return {p["notebook"]: p for p in pages}


def test_page_names_are_unique():
    "Two notebooks must not map to one page (`16_controller` and `32_controller` would both be controller.html)."
    names = [bd.page_name(p) for p in bd.notebooks()]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_every_notebook_has_a_page(site):
    nbs = [p.relative_to(ROOT).as_posix() for p in bd.notebooks()]
    assert sorted(site) == sorted(nbs)
    for nb, p in site.items():
        html = (SITE / p["page"]).read_text(encoding="utf-8")
        assert "jp-Notebook" in html, f"{p['page']} ({nb}) is not a rendered notebook"
        assert p["title"] in html, f"{p['page']} lacks its title {p['title']!r}"
    assert (SITE / "index.html").exists()


def test_nav_sections(site):
    home = (SITE / "index.html").read_text(encoding="utf-8")
    for label in ("Tutorials", "API reference"):
        assert label in home
    for p in site.values():
        if p["section"] == "api": assert f'href="{p["page"]}"' in home, f"{p['page']} missing from the nav"


def test_no_error_output(site):
    "No page shows a traceback or an error output (the build fails first; this guards the rendering)."
    for p in site.values():
        nb = json.loads((bd.DOCS_DIR / p["page"].replace(".html", ".ipynb")).read_text())
        errs = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errs, f"{p['notebook']}: error outputs {errs[:1]}"
        html = (SITE / p["page"]).read_text(encoding="utf-8")
        assert "Traceback (most recent call last)" not in html, p["page"]
        assert not re.search(r'class="[^"]*jp-OutputArea-output[^"]*"[^>]*data-mime-type="application/vnd\.jupyter\.error', html)


def test_show_doc_rendered(site):
    "show_doc output is markdown rendered to HTML, without Pandoc's `{target=...}` attributes or `#|` lines."
    api = [p for p in site.values() if p["section"] == "api"]
    assert api
    for p in api:
        html = (SITE / p["page"]).read_text(encoding="utf-8")
        assert 'target="_blank"' not in html.replace('target="_blank" rel', ''), p["page"]
        assert '{target=' not in html, p["page"]
        assert not re.search(r'<span class="c1">#\s*\|', html), f'{p["page"]}: a `#|` directive line is shown'


def test_offline_no_external_resources(site):
    "No script, stylesheet, image, font or frame is loaded from the network; plain `<a href>` links are fine."
    assert bd.check_offline(SITE) == {}
    assert bd.external_refs('<a href="https://x.org">x</a><script src="https://cdn.x/y.js"></script>') == \
        ["<script src=https://cdn.x/y.js>"]
    for html in SITE.rglob("*.html"):
        text = html.read_text(encoding="utf-8")
        assert not re.search(r"fonts\.(googleapis|gstatic)\.com|cdnjs\.cloudflare|cdn\.jsdelivr|unpkg\.com", text), html


def test_charts_are_static(site):
    "Altair charts are executed to static SVG/PNG outputs (the svg renderer), never Vega-Lite specs for vega-embed."
    svg = 0
    for p in site.values():
        nb = json.loads((bd.DOCS_DIR / p["page"].replace(".html", ".ipynb")).read_text())
        mimes = {m for c in nb["cells"] for o in c.get("outputs", []) for m in o.get("data", {})}
        assert not {m for m in mimes if m.startswith("application/vnd.vega")}, f"{p['notebook']}: a Vega spec output"
        html = (SITE / p["page"]).read_text(encoding="utf-8")
        assert "vega-embed" not in html and "vegaEmbed" not in html, p["page"]
        svg += ('data-mime-type="image/svg+xml"' in html) or ('data-mime-type="image/png"' in html)
    uses_altair = any("alt.Chart(" in nb.read_text() for nb in bd.notebooks())
    assert svg or not uses_altair, "notebooks draw Altair charts but no page shows a static chart image"



# Files a clone does not have: the docs must name things in the repository.
OUTSIDE = re.compile(r"\.\./shared/|\b(?:PAPER|STACK|STYLE)\.md\b")
SKIP: set = set()   # files exempt from the check (none)
_re_link = re.compile(r"\]\(([^)\s#]+)(?:#[^)\s]*)?\)")


def _texts():
    "(path, everything in it, its markdown) of what a reader of the repository or the site reads: notebooks, *.md, tools, the package."
    for nb in bd.notebooks():
        cells = json.loads(nb.read_text())["cells"]
        md = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        yield nb, "\n".join("".join(c["source"]) for c in cells), md
    for p in [*ROOT.glob("*.md"), *(ROOT / "docs_src").glob("*"), *(ROOT / "bench").glob("*.md"),
              *(ROOT / "tools").glob("*.py"), *(ROOT / "toolrl_nb").glob("*.py")]:
        if p.is_file() and p.name != "LEAD_NOTES_READ_ME.md":
            text = p.read_text(encoding="utf-8")
            yield p, text, text if p.suffix == ".md" else ""


def test_no_references_outside_the_repository():
    "No doc cites a file outside the repository, and every relative markdown link resolves inside it."
    bad = []
    for p, text, md in _texts():
        rel = p.relative_to(ROOT).as_posix()
        if rel in SKIP: continue
        bad += [f"{rel}: {m.group(0)}" for m in OUTSIDE.finditer(text)]
        for m in _re_link.finditer(md):
            target = m.group(1)
            if re.match(r"[a-z]+:", target): continue               # https:, mailto:
            t = ((ROOT if p.name == "index.ipynb" else p.parent) / target).resolve()   # index.ipynb is the README
            if not t.is_relative_to(ROOT) or not t.exists(): bad.append(f"{rel}: link to {target}")
    assert not bad, bad


def test_no_links_to_a_missing_repository(site):
    "show_doc's [source] links pointed at a repository address that does not exist: the build drops them."
    assert bd._clean_md("[source](https://github.com/x/y/blob/main/y/m.py#L3) and [p](paper.ipynb#a)", "") == " and [p](paper.html#a)"
    for html in SITE.rglob("*.html"):
        assert "github.com/toolrl-nb" not in html.read_text(encoding="utf-8"), html


# ------------------------------------------------------------------------------------------------- browser

@contextlib.contextmanager
def _serve(directory: Path):
    handler = functools.partial(_QuietHandler, directory=str(directory))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True); t.start()
    try: yield f"http://127.0.0.1:{port}"
    finally: srv.shutdown(); srv.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass


CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def test_screenshots(site):
    chromium = shutil.which("chromium")
    if not chromium: pytest.skip("Debian's chromium is not installed (`make browser-deps` installs it)")
    pw = pytest.importorskip("playwright.sync_api", reason="playwright (python package) is not installed")
    api = sorted(p["page"] for p in site.values() if p["section"] == "api")
    targets = {"home": "index.html", "api": "runlog.html" if "runlog.html" in api else api[0]}
    tutorials = sorted(p["page"] for p in site.values() if p["section"] == "tutorials")
    if tutorials: targets["tutorial"] = tutorials[0]
    if "dashboard.html" in tutorials: targets["dashboard"] = "dashboard.html"   # the panel's screenshots
    SHOTS.mkdir(parents=True, exist_ok=True)
    external = []
    with _serve(SITE) as base, pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda r: None if r.url.startswith((base, "data:", "blob:")) else external.append(r.url))
            for name, path in targets.items():
                page.goto(f"{base}/{path}", wait_until="load")
                assert page.locator("h1").first.is_visible()
                assert page.locator("nav.md-nav--primary").count() >= 1
                if name == "tutorial": assert page.locator(".jp-OutputArea svg, .jp-OutputArea img").count() > 0  # charts
                if name == "dashboard":   # its pictures are copied with the site (nbs/images) and load offline
                    assert page.locator(".jp-RenderedMarkdown img").count() >= 4
                    assert page.evaluate("() => [...document.querySelectorAll('.jp-RenderedMarkdown img')]"
                                         ".every(i => i.complete && i.naturalWidth > 0)")
                if name == "api":
                    assert page.locator(".jp-CodeCell").count() > 0
                    assert page.locator(".jp-RenderedMarkdown h3, .jp-RenderedMarkdown h2").count() > 0  # show_doc
                page.screenshot(path=str(SHOTS / f"docs_{name}.png"))
                page.screenshot(path=str(SHOTS / f"docs_{name}_full.png"), full_page=True)
        finally:
            browser.close()
    assert not external, f"the pages requested external URLs: {external[:5]}"
    assert (SHOTS / "docs_home.png").stat().st_size > 10_000


def test_headroom_is_reported():
    "The build names its slowest notebook against the limit, and warns when under a quarter of the limit is left."
    r = [{"nb": Path("10_trainer.ipynb"), "secs": 289.0}, {"nb": Path("a.ipynb"), "secs": 3.0}]
    assert bd.headroom(r, 300).endswith("289s of its 300s limit  WARNING: under 25% headroom, raise --timeout or speed it up")
    assert bd.headroom(r, bd.TIMEOUT) == "build_docs: slowest notebook 10_trainer.ipynb 289s of its 600s limit"
