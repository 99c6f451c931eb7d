"""Repository-level checks: README in sync with index.ipynb, CI runs the README's test command, package exported."""
import subprocess
from pathlib import Path

from toolrl_nb.cli import readme_text

ROOT = Path(__file__).resolve().parents[1]


def test_readme_generated_from_index():
    assert (ROOT / "README.md").read_text() == readme_text(ROOT / "nbs" / "index.ipynb"), \
        "README.md is stale: run `.venv/bin/toolrl readme`"


def test_ci_runs_the_readme_test_command():
    readme, ci = (ROOT / "README.md").read_text(), (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make demo" in readme
    assert [l for l in ci.splitlines() if l and not l.startswith(("#", "set ", "cd "))] == ["make test"]


def test_every_notebook_module_is_exported():
    """Each `#| default_exp m` notebook has its module in toolrl_nb/ (nbdev_export was run)."""
    import json, re
    for nb in sorted((ROOT / "nbs").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        src = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        m = re.search(r"#\|\s*default_exp\s+(\S+)", src)
        if m: assert (ROOT / "toolrl_nb" / (m.group(1).replace(".", "/") + ".py")).exists(), nb.name
