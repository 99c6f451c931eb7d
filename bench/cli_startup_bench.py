"""CLI start-up: wall time of `toolrl --help` and of an error path (`toolrl report` on a path that is not a run), this
checkout against a baseline commit (default `main`), interleaved (A B A B ...), median of `--repeats` (default 5).

The baseline's `toolrl_nb/` is extracted with `git archive` into a temporary folder and put first on PYTHONPATH;
both sides use this venv's Python. Writes bench/results/cli_startup_bench_<time>.json and prints a table.

Usage: `.venv/bin/python bench/cli_startup_bench.py [--baseline main] [--repeats 5]`
"""
import argparse, io, json, os, platform, shutil, statistics, subprocess, sys, tarfile, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MISSING = Path(tempfile.gettempdir()) / "cli_startup_bench_missing"   # removed after every call: main's report creates it
CASES = {"--help": ["--help"], "error path (report on a missing run)": ["report", str(MISSING / "run")]}


def extract(rev: str, dest: Path) -> str:
    "`toolrl_nb/` of commit `rev` under `dest`; returns the full commit id."
    sha = subprocess.run(["git", "rev-parse", rev], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    blob = subprocess.run(["git", "archive", sha, "toolrl_nb"], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(blob)) as t: t.extractall(dest, filter="data")
    return sha


def timed(pkg_root: Path, args: list[str]) -> tuple[float, int]:
    env = dict(os.environ, PYTHONPATH=str(pkg_root))
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", "import sys; from toolrl_nb.cli import main; sys.exit(main())", *args],
                       env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
    return time.perf_counter() - t0, r.returncode


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", default="main"); ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        sha = extract(a.baseline, Path(d))
        sides = {"this checkout": ROOT, f"baseline {a.baseline} ({sha[:7]})": Path(d)}
        times = {(s, c): [] for s in sides for c in CASES}
        codes, created = {}, {s: False for s in sides}
        for _ in range(a.repeats):
            for c, args in CASES.items():
                for s, root in sides.items():
                    t, rc = timed(root, args)
                    if MISSING.exists(): shutil.rmtree(MISSING); created[s] = True
                    times[(s, c)].append(round(t, 3)); codes[(s, c)] = rc
    rows = [dict(side=s, case=c, median_s=statistics.median(v), runs_s=v, exit_code=codes[(s, c)],
                 created_the_missing_path=created[s] and c != "--help") for (s, c), v in times.items()]
    for r in rows: print(f"{r['case']:<40} {r['side']:<28} median {r['median_s']:6.2f} s  (exit {r['exit_code']}{', WROTE the path' if r['created_the_missing_path'] else ''})  {r['runs_s']}")
    out = ROOT / "bench" / "results" / f"cli_startup_bench_{time.strftime('%Y%m%d_%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(baseline=a.baseline, baseline_commit=sha, repeats=a.repeats, python=platform.python_version(),
                                   load_avg=os.getloadavg(), rows=rows), indent=1))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
