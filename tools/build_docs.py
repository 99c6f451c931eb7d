"""Build the notebooks in nbs/ into a static site that works offline, without Quarto (`make docs`).

How it works:

1. **Process + execute** every notebook, each in its own subprocess (2 at a time, per-notebook timeout), with
   nbdev's own processors run through `NBProcessor`, in nbdev's order (`FilterDefaults`), except that the
   whole notebook is executed in place of nbdev's `exec_show_docs`:
   frontmatter (`# Title` + `> summary` cell, or a raw YAML cell) -> dropped and re-inserted as a plain heading;
   `add_show_docs`; then the notebook's fast cells run in an execnb `CaptureShell` from `nbs/` (cells with
   `#| eval: false` or a `tst_flags` flag such as `#| slow` are skipped, as `nbdev_test` does; frontmatter
   `skip_exec: true` or a `.notest` file skips the notebook). A hidden first cell switches Altair to the `svg`
   renderer so charts are static images, not vega-embed from a CDN. Any cell that raises fails the build, naming
   the notebook and the cell. Then `rm_export`/`hide_` (`#| export`, `#| hide` cells go), `clean_show_doc`,
   `add_links` (links to our own API pages made relative), and a last pass here: `#|` lines stripped,
   `echo: false` -> tag `hide_input`, `output: false` -> no outputs, `include: false` -> cell dropped,
   `execution` metadata dropped, show_doc's Pandoc attributes `{target="_blank" ...}` removed.
   Result: `_proc/_mkdocs_docs/<page>.ipynb`, page names as nbdev/Quarto names them (`00_config` -> `config`),
   so nbdev's doc links resolve. (`_proc/` is nbdev's cache folder too; Quarto skips `_`-prefixed folders, so
   `nbdev_docs` is unaffected where Quarto exists.)
2. **Render** with mkdocs-material + mkdocs-jupyter (`mkdocs.yml`; `execute: false`, `font: false`) into `site/`,
   with a generated nav: Home (index), Tutorials (names starting with a letter, or a number >= 30; a placeholder
   page while there are none), API reference (00_ ... 29_, titled by their markdown title).
   `docs_src/hooks.py` removes the MathJax / Mermaid loaders that nbconvert's templates point at a CDN.
3. **Check offline**: no `<script src>`, `<link href>`, `<img src>`, ... in `site/**/*.html` may be an external
   URL (plain `<a href>` hyperlinks are allowed); the build fails otherwise.

Fallback if mkdocs-jupyter misbehaves: `--engine nbconvert` renders the same processed notebooks with nbconvert's
`HTMLExporter(template_name="lab")` into standalone pages plus a small index page (same offline check).

Usage: `.venv/bin/python tools/build_docs.py [--workers 2] [--timeout 600] [--engine mkdocs|nbconvert]`
(the build prints the slowest notebook's time against the per-notebook limit).
"""
from __future__ import annotations

import argparse, contextlib, json, os, re, resource, shutil, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"
DOCS_DIR = ROOT / "_proc" / "_mkdocs_docs"   # processed, executed notebooks (mkdocs `docs_dir`)
SITE_DIR = ROOT / "site"
STATIC = ROOT / "docs_src"                     # css and the placeholder pages, copied into DOCS_DIR
MANIFEST = "_pages.json"                       # written into SITE_DIR: notebook -> page, title, section
RESULTS = ROOT / "_proc" / "_docs_results.json"          # titles of the processed notebooks (for --skip-exec)
TIMINGS = ROOT / "_proc" / "_docs_timings.json"  # seconds per notebook, last build (scheduling only)

# Injected before the first cell (not shown): static chart images instead of vega-embed from a CDN; whole tables.
INJECT = """\
try:
    import altair as _alt
    _alt.renderers.enable("svg")
except ImportError:
    pass
try:   # tables show all their rows (up to 60) and whole column names, not a head ... tail cut
    import polars as _pl
    _pl.Config.set_tbl_rows(60); _pl.Config.set_fmt_str_lengths(60); _pl.Config.set_tbl_width_chars(200)
    import pandas as _pd
    _pd.set_option("display.max_rows", 60)
except ImportError:
    pass
"""

# ----------------------------------------------------------------------------------------------- naming / nav

def notebooks(nbs: Path = NBS) -> list[Path]:
    "The notebooks nbdev would document (names starting with `_` or `.` are skipped, as nbglob does)."
    return sorted(p for p in nbs.rglob("*.ipynb")
                  if not any(part.startswith(("_", ".")) for part in p.relative_to(nbs).parts))


def page_name(nb: Path, nbs: Path = NBS) -> str:
    "Page path without suffix, as nbdev/Quarto names it: `00_config.ipynb` -> `config`."
    rel = nb.relative_to(nbs)
    return (rel.parent / re.sub(r"^\d+[a-zA-Z0-9]*_", "", rel.name.lower())).with_suffix("").as_posix()


def section(nb: Path) -> str:
    "`home` (index), `paper` (paper.ipynb), `api` (numbered 00_ ... 29_) or `tutorials` (a letter first, or a number >= 30)."
    if nb.stem in ("index", "paper"): return {"index": "home", "paper": "paper"}[nb.stem]
    m = re.match(r"(\d+)", nb.name)
    return "api" if m and int(m.group(1)) < 30 else "tutorials"


# ------------------------------------------------------------------------------------ process + execute (child)

def _doc_prefix() -> str:
    "Absolute URL nbdev's `add_links` gives our own pages (rewritten to relative links)."
    from nbdev.config import get_config
    cfg = get_config()
    return f"{cfg.doc_host.rstrip('/')}{cfg.doc_baseurl.rstrip('/')}/"


_re_pandoc_attr = re.compile(r'\{target="_blank"[^}\n]*\}')
_re_directive = re.compile(r"^\s*#\s*\|.*(\n|$)")


# show_doc's "[source](<git_url>/blob/...)" links: the repository address in settings.ini is not published, so they go
_re_source = re.compile(r"\[source\]\(https://github\.com/[^)\s]*/blob/[^)\s]*\)")
# links between notebooks, as they work on a clone (`30_collapse.ipynb#x`, `nbs/paper.ipynb`) -> the site's pages
_re_nb_link = re.compile(r"\]\((?:\.\./)?(?:nbs/)?([\w-]+)\.ipynb(#[^)\s]*)?\)")


def _nb_link(m) -> str: return f"]({page_name(NBS / (m.group(1) + '.ipynb'))}.html{m.group(2) or ''})"


def _clean_md(text: str, prefix: str) -> str:
    text = _re_source.sub("", _re_pandoc_attr.sub("", text)).replace(prefix, "")
    return _re_nb_link.sub(_nb_link, text)


_re_progress = re.compile(r"^.{0,80}\d+%\|.*\|")   # a tqdm progress bar line


def _clean_stream(o):
    "Streams as a terminal would show them (text after the last `\\r`), without progress bars; None if empty."
    if o.get("output_type") != "stream": return o
    text = o["text"] if isinstance(o["text"], str) else "".join(o["text"])
    lines = [l.rsplit("\r", 1)[-1] for l in text.split("\n")]
    lines = [l for l in lines if not _re_progress.match(l)]
    text = "\n".join(lines)
    if not text.strip(): return None
    o["text"] = text
    return o


class BuildError(Exception): pass


def process_notebook(src: Path, dst: Path, timeout: int | None = None) -> dict:
    "Process and execute `src` (see module doc) and write it to `dst`; returns page info. Runs in a child process."
    from execnb.nbio import read_nb, write_nb, mk_cell
    from execnb.shell import CaptureShell
    from fastcore.basics import str2bool
    from nbdev.config import get_config
    from nbdev.frontmatter import FrontmatterProc
    from nbdev.process import NBProcessor, Processor, _directive
    from nbdev import processors as P

    cfg = get_config()
    skip_flags = set(cfg.get("tst_flags", "").split())
    prefix = _doc_prefix()
    nb = read_nb(src)
    for i, c in enumerate(nb.cells): c.src_idx_ = i
    notest = (src.parent / ".notest").exists()

    class execute(Processor):
        "Run the notebook's fast cells in one CaptureShell, from nbs/, failing on the first error."
        def begin(self):
            fm = getattr(self.nb, "frontmatter_", {}) or {}
            if notest or str2bool(fm.get("skip_exec", False)): return
            k = CaptureShell(src, timeout=timeout)
            k.run_cell("from nbdev.showdoc import show_doc")
            k.run(INJECT)
            for cell in self.nb.cells:
                if cell.cell_type != "code" or not cell.source.strip(): continue
                d = getattr(cell, "directives_", {}) or {}
                if d.get("eval:", [""])[0].lower() == "false" or skip_flags & d.keys(): continue
                if "nbdev_export" + "(" in cell.source: continue
                k.cell(cell)
                err = k.exc or next((o for o in cell.get("outputs", []) if o.get("output_type") == "error"), None)
                if err is not None:
                    idx = getattr(cell, "src_idx_", None)
                    where = f"cell {idx} (0-based index in the notebook)" if idx is not None else "a generated show_doc cell"
                    tb = k.prettytb(fname=src) if k.exc is not None else "\n".join(err.get("traceback", []))
                    raise BuildError(f"{src.name}: {where} raised an error\n--- cell source ---\n"
                                     f"{cell.source}\n--- traceback ---\n{tb}")

    procs = [FrontmatterProc, P.populate_language, P.add_show_docs, execute, P.strip_ansi, P.hide_line,
             P.filter_stream_, P.rm_header_dash, P.clean_show_doc, P.rm_export, P.ai_magics, P.clean_magics,
             P.hide_, P.add_links, P.mv_exports, P.strip_hidden_metadata]
    old = Path.cwd()
    os.chdir(src.parent)
    try: NBProcessor(nb=nb, procs=procs).process()
    finally: os.chdir(old)

    fm = dict(getattr(nb, "frontmatter_", {}) or {})
    cells = []
    for c in nb.cells:
        if c.cell_type == "raw" and c.source.lstrip().startswith("---"): continue   # the frontmatter cell
        d = dict(getattr(c, "directives_", {}) or {})
        if c.cell_type == "code":   # Quarto-style `#| key: value` lines left in place, e.g. clean_show_doc's echo: false
            lines = c.source.splitlines(True)
            while lines and _re_directive.match(lines[0]):
                kv = _directive(lines.pop(0))
                if kv: d[kv[0]] = kv[1]
            c.source = "".join(lines).strip("\n")
        if d.get("include:", [""])[0].lower() == "false": continue
        c.metadata = {k: v for k, v in c.metadata.items() if k in {"tags", "language"}}   # execution, jupytext, ...
        if c.cell_type == "code":
            tags = list(c.metadata.get("tags", []))
            if d.get("echo:", [""])[0].lower() == "false" and "hide_input" not in tags: tags.append("hide_input")
            if tags: c.metadata["tags"] = tags
            if d.get("output:", [""])[0].lower() == "false": c.outputs = []
            c.setdefault("outputs", [])
            c.execution_count = None
            c.outputs = [o for o in map(_clean_stream, c.outputs) if o is not None]
            for o in c.outputs:
                if o.get("output_type") == "execute_result": o["execution_count"] = None
                data = o.get("data", {})
                if "text/markdown" in data:
                    md = data["text/markdown"]
                    md = "".join(md) if isinstance(md, list) else md
                    data["text/markdown"] = _clean_md(md, prefix)
            if not c.source and not c.outputs: continue
        elif c.cell_type == "markdown":
            c.source = _clean_md(c.source, prefix)
        cells.append(c)
    title = fm.get("title") or src.stem
    head = f"# {title}" + (f"\n\n> {fm['description']}" if fm.get("description") else "")
    nb.cells = [mk_cell(head, "markdown")] + cells
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}}
    nb.nbformat, nb.nbformat_minor = 4, 5
    dst.parent.mkdir(parents=True, exist_ok=True)
    write_nb(nb, dst)
    return {"title": str(title), "description": fm.get("description")}


def _child(src: str, dst: str, timeout: str) -> int:
    "Entry point of the per-notebook subprocess: prints one JSON line, exit status 1 on error."
    os.environ["IN_TEST"] = "1"   # as nbdev_test / proc_nbs do
    try: info = process_notebook(Path(src), Path(dst), int(timeout) or None)
    except BuildError as e:
        print(str(e), file=sys.stderr); return 1
    print(json.dumps(info))
    return 0


# ----------------------------------------------------------------------------------------------- orchestration

def _run_one(nb: Path, dst: Path, timeout: int, threads: int) -> dict:
    env = {**os.environ, "IN_TEST": "1", "PYTHONHASHSEED": "0", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "MPLBACKEND": "Agg",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    t0 = time.time()
    try:
        r = subprocess.run([sys.executable, __file__, "--_child", str(nb), str(dst), str(timeout)], env=env,
                           cwd=nb.parent, capture_output=True, text=True, timeout=timeout + 60)
    except subprocess.TimeoutExpired:
        return {"nb": nb, "ok": False, "secs": time.time() - t0,
                "error": f"{nb.name}: timed out after {timeout}s (per-notebook limit; --timeout to change)"}
    secs = time.time() - t0
    if r.returncode != 0:
        err = r.stderr.strip() or r.stdout.strip()
        if "timed out" not in err and "TimeoutError" in err: err = f"{nb.name}: a cell timed out after {timeout}s\n{err}"
        return {"nb": nb, "ok": False, "secs": secs, "error": err[-6000:] or f"{nb.name}: exit status {r.returncode}"}
    # the result is the last JSON line: a library may print after it at exit (trackio's "Run finished")
    info = json.loads(next(l for l in reversed(r.stdout.strip().splitlines()) if l.startswith("{")))
    return {"nb": nb, "ok": True, "secs": secs, **info}


def execute_all(nbs: list[Path], workers: int, timeout: int) -> list[dict]:
    last = {}   # seconds per notebook in the last build: longest first, so the workers finish together
    with contextlib.suppress(Exception): last = json.loads(TIMINGS.read_text())
    if DOCS_DIR.exists(): shutil.rmtree(DOCS_DIR)
    DOCS_DIR.mkdir(parents=True)
    threads = max(1, (os.cpu_count() or 2) // max(1, workers))
    order = sorted(nbs, key=lambda p: (-last.get(p.name, 1e9), -p.stat().st_size))
    with ThreadPoolExecutor(max_workers=workers) as ex:
        futs = {nb: ex.submit(_run_one, nb, DOCS_DIR / f"{page_name(nb)}.ipynb", timeout, threads) for nb in order}
        results = []
        for nb in order:
            r = futs[nb].result()
            print(f"  {'ok  ' if r['ok'] else 'FAIL'} {nb.name:<24} {r['secs']:6.1f}s", flush=True)
            results.append(r)
    if all(r["ok"] for r in results): TIMINGS.write_text(json.dumps({r["nb"].name: round(r["secs"], 1) for r in results}))
    return sorted(results, key=lambda r: r["nb"])


def make_nav(results: list[dict]) -> tuple[list, list[dict]]:
    pages, home, paper, tuts, api = [], [], [], [], []
    for r in results:
        nb, name = r["nb"], page_name(r["nb"])
        sec = section(nb)
        pages.append({"notebook": nb.relative_to(ROOT).as_posix(), "page": f"{name}.html", "title": r["title"],
                      "section": sec})
        entry = {r["title"]: f"{name}.ipynb"}
        {"home": home, "paper": paper, "api": api}.get(sec, tuts).append(entry)
    if not home: home = [{"Home": "home.md"}]          # no index.ipynb: a static home page
    nav = [{"Home": list(home[0].values())[0]}] + [{"The paper": list(paper[0].values())[0]}] * bool(paper) + [
           {"Tutorials": tuts or [{"Tutorials": "tutorials.md"}]},
           {"API reference": api}]
    return nav, pages


def _copy_static(nav: list):
    "Copy css/js/images, and the placeholder pages the nav uses (home.md, tutorials.md), into DOCS_DIR."
    used = json.dumps(nav)
    for p in STATIC.glob("*"):
        if p.is_file() and (p.suffix in {".css", ".js", ".png", ".svg"} or (p.suffix == ".md" and f'"{p.name}"' in used)):
            shutil.copy2(p, DOCS_DIR / p.name)
    if (NBS / "images").is_dir():    # pictures the notebooks link as images/<name> (e.g. the dashboard's screenshots)
        shutil.copytree(NBS / "images", DOCS_DIR / "images", dirs_exist_ok=True)


def render_mkdocs(nav: list):
    from mkdocs.commands.build import build
    from mkdocs.config import load_config
    _copy_static(nav)
    cfg = load_config(str(ROOT / "mkdocs.yml"), nav=nav, docs_dir=str(DOCS_DIR), site_dir=str(SITE_DIR))
    build(cfg)


def render_nbconvert(pages: list[dict]):
    "Fallback: standalone nbconvert `lab` pages plus a small index (use if mkdocs-jupyter misbehaves)."
    import nbformat
    from nbconvert import HTMLExporter
    sys.path.insert(0, str(STATIC))
    from hooks import strip_cdn_loaders
    exp = HTMLExporter(template_name="lab", mathjax_url="", require_js_url="")
    exp.exclude_input_prompt = exp.exclude_output_prompt = True
    exp.register_preprocessor(_tag_remover(), enabled=True)
    SITE_DIR.mkdir(parents=True, exist_ok=True)
    order = {"home": 0, "paper": 1, "tutorials": 2, "api": 3}
    ps = sorted(pages, key=lambda p: (order[p["section"]], p["notebook"]))
    nav = ('<nav style="font:14px sans-serif;padding:8px 24px;border-bottom:1px solid #ccc">'
           + " · ".join(f'<a href="{p["page"]}">{p["title"]}</a>' for p in ps) + "</nav>")
    for p in ps:
        nb = nbformat.read(DOCS_DIR / p["page"].replace(".html", ".ipynb"), as_version=4)
        html, _ = exp.from_notebook_node(nb)
        html = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + nav, strip_cdn_loaders(html, full_page=True), count=1)
        (SITE_DIR / p["page"]).write_text(html, encoding="utf-8")
    if not any(p["page"] == "index.html" for p in pages):
        (SITE_DIR / "index.html").write_text(f"<!doctype html><meta charset=utf-8><title>docs</title>{nav}",
                                             encoding="utf-8")


def _tag_remover():
    from nbconvert.preprocessors import TagRemovePreprocessor
    return TagRemovePreprocessor(remove_input_tags=["hide_input"], enabled=True)


# ----------------------------------------------------------------------------------------------- offline check

_re_ext = re.compile(r"""<(script|link|img|iframe|source|video|audio|embed|object|image|use)\b[^>]*?\s"""
                     r"""(src|href|data|srcset|xlink:href)\s*=\s*["']?\s*((?:https?:)?//[^"'\s>]+)""", re.I)
_re_css_ext = re.compile(r"""(@import\s+(?:url\()?|url\()\s*["']?\s*((?:https?:)?//[^"')\s]+)""", re.I)


def external_refs(html: str) -> list[str]:
    "External URLs the page would load (scripts, styles, images, fonts, frames); plain `<a href>` links are fine."
    refs = [f"<{m.group(1)} {m.group(2)}={m.group(3)}>" for m in _re_ext.finditer(html)]
    refs += [f"css {m.group(2)}" for m in _re_css_ext.finditer(html)]
    return refs


def check_offline(site: Path = SITE_DIR) -> dict[str, list[str]]:
    bad = {}
    for p in sorted(site.rglob("*")):
        if p.suffix not in {".html", ".css"}: continue
        refs = external_refs(p.read_text(encoding="utf-8", errors="replace"))
        if refs: bad[p.relative_to(site).as_posix()] = refs
    return bad


# ----------------------------------------------------------------------------------------------- main

TIMEOUT = 600   # seconds per notebook: the slowest (10_trainer) took 289 s on 2 shared cores, too close to the old 300


def headroom(results: list[dict], timeout: int) -> str:
    "One line: the slowest notebook's time against its limit (a warning past 75%)."
    r = max(results, key=lambda r: r["secs"])
    warn = "  WARNING: under 25% headroom, raise --timeout or speed it up" if r["secs"] > 0.75 * timeout else ""
    return f"build_docs: slowest notebook {r['nb'].name} {r['secs']:.0f}s of its {timeout}s limit{warn}"


def build(workers: int = 2, timeout: int = TIMEOUT, engine: str = "mkdocs", skip_exec: bool = False) -> list[dict]:
    t0 = time.time()
    nbs = notebooks()
    if skip_exec:   # re-render the notebooks processed by the last build (iterating on the site's look)
        results = [{**r, "nb": ROOT / r["nb"]} for r in json.loads(RESULTS.read_text())]
    else:
        print(f"build_docs: executing {len(nbs)} notebooks ({workers} workers, {timeout}s each)", flush=True)
        results = execute_all(nbs, workers, timeout)
        failed = [r for r in results if not r["ok"]]
        if failed:
            for r in failed: print(f"\n=== {r['nb'].name} FAILED ===\n{r['error']}", file=sys.stderr)
            raise SystemExit(f"build_docs: {len(failed)} notebook(s) failed to execute: "
                             + ", ".join(r["nb"].name for r in failed))
        RESULTS.write_text(json.dumps([{**r, "nb": r["nb"].relative_to(ROOT).as_posix()} for r in results], indent=1))
        print(headroom(results, timeout), flush=True)
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = ru.ru_utime + ru.ru_stime
    t1 = time.time()
    nav, pages = make_nav(results)
    if SITE_DIR.exists(): shutil.rmtree(SITE_DIR)
    if engine == "mkdocs": render_mkdocs(nav)
    else: render_nbconvert(pages)
    (SITE_DIR / MANIFEST).write_text(json.dumps(pages, indent=1))
    bad = check_offline()
    if bad:
        raise SystemExit("build_docs: external (CDN) resources in the site:\n"
                         + "\n".join(f"  {k}: {v[:5]}" for k, v in bad.items()))
    print(f"build_docs: {len(pages)} pages in {SITE_DIR.relative_to(ROOT)}/ (execute {t1 - t0:.0f}s, "
          f"render {time.time() - t1:.0f}s, total {time.time() - t0:.0f}s; notebook CPU time {cpu:.0f}s); "
          "no external resources", flush=True)
    return pages


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_child"]: sys.exit(_child(*argv[1:4]))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=int(os.environ.get("DOCS_WORKERS", 2)))
    ap.add_argument("--timeout", type=int, default=int(os.environ.get("DOCS_TIMEOUT", TIMEOUT)),
                    help="seconds per notebook (and per cell)")
    ap.add_argument("--engine", choices=["mkdocs", "nbconvert"], default="mkdocs",
                    help="nbconvert: fallback standalone pages if mkdocs-jupyter misbehaves")
    ap.add_argument("--skip-exec", action="store_true",
                    help="re-render the notebooks processed and executed by the last build (no execution)")
    a = ap.parse_args(argv)
    os.chdir(ROOT)
    build(a.workers, a.timeout, a.engine, a.skip_exec)


if __name__ == "__main__":
    main()
