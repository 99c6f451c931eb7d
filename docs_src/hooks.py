"""mkdocs hook (see mkdocs.yml `hooks:`): keep notebook pages offline.

nbconvert's templates, which mkdocs-jupyter extends, always emit a MathJax loader (`<script src=...>`, a CDN URL
by default, an empty one when `custom_mathjax_url` is "") with its config script, and a Mermaid loader that imports
its module from a CDN. No notebook here uses math or Mermaid, so they are removed from every page.
(To support math offline later: vendor MathJax from npm into docs_src/ and point `custom_mathjax_url` at it.)
Also used by tools/build_docs.py's nbconvert fallback.
"""
import re

_LOADERS = [
    # MathJax loader: empty src, or any remote src
    re.compile(r'<script\s+src\s*=\s*"(?:|(?:https?:)?//[^"]*)"\s*>\s*</script>', re.I),
    # MathJax configuration block
    re.compile(r'<!--\s*Load mathjax\s*-->|<!--\s*MathJax configuration\s*-->|<!--\s*End of mathjax configuration\s*-->', re.I),
    re.compile(r'<script\s+type="text/x-mathjax-config">.*?</script>', re.I | re.S),
    # Mermaid module loader (imports mermaid from cdnjs when a page has diagrams)
    re.compile(r'<script\s+type="module">(?:(?!</script>).)*?mermaid(?:(?!</script>).)*?</script>', re.I | re.S),
]


def strip_cdn_loaders(html: str, full_page: bool = False) -> str:
    for rx in _LOADERS:
        html = rx.sub("", html)
    return html


def on_page_content(html, page, config, files):
    return strip_cdn_loaders(html)


def on_post_page(output, page, config):
    return strip_cdn_loaders(output)
