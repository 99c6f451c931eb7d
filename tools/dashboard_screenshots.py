"""Screenshots of the control panel for the dashboard tutorial (nbs/34_dashboard.ipynb), taken in a real JupyterLab
in Debian's chromium (Playwright), on real CPU runs of SmolLM2-135M:

1. a live run (the collapse setting from the collapse run's SFT warm-up checkpoint, 1 task x 4 rollouts per step):
   Start, two RL steps, the live charts; Pause; the OPS switch flipped while paused; Stop;
2. the finished collapse run browsed read-only: the token inspector on its latest collapsed trajectory, and the SQL tab.

Needs a SmolLM2 run with a pinned SFT warm-up for the live run to start from (default runs/collapse-lr1e-4 from
nbs/30_collapse.ipynb), optionally another finished run under runs/ to browse (default the same), and
`make browser-deps`. The cells show paths relative to the repository (the
notebook's folder links runs/ and configs/). Writes nbs/images/dashboard_*.png and prints the timings it measured.
Usage: .venv/bin/python tools/dashboard_screenshots.py [runs/LIVE_FROM [runs/BROWSED]]"""
import json, os, shutil, socket, subprocess, sys, tempfile, time, urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "nbs" / "images"
RUN = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/collapse-lr1e-4")   # live run starts from its warm-up (relative to ROOT)
DONE = Path(sys.argv[2]) if len(sys.argv) > 2 else RUN                       # the finished run the inspector and SQL browse
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]

LIVE = f"""import dataclasses, tempfile
from pathlib import Path
from toolrl_nb.config import load_config
from toolrl_nb.trainer import TrainConfig, EvalConfig
from toolrl_nb.evaluation import pinned_checkpoint
from toolrl_nb.panel import show_panel
cfg = load_config(TrainConfig, "configs/cpu/collapse.yaml")
cfg = dataclasses.replace(cfg, run_dir=str(Path(tempfile.mkdtemp()) / "live"), steps=12, tasks_per_step=1, warmup_tasks=0,
                          supervision=dataclasses.replace(cfg.supervision, scheme="sync"),   # sync: the OPS toggle passes the signal checks
                          micro_batch_size=2, init_from=str(pinned_checkpoint({str(RUN)!r})),
                          eval=EvalConfig(n_tasks=2, at_start=False, max_action_tokens=48))
panel = show_panel(cfg, refresh_s=0.5)
panel"""
INSPECT = f"""from toolrl_nb.panel import Panel
done = Panel.from_run({str(DONE)!r})
done.tabs.selected_index = 2
done.show_trajectory(done.latest_collapsed())
done"""
SQL = f"""sql = Panel.from_run({str(DONE)!r})
sql.tabs.selected_index = 3
sql.run_sql("SELECT step, avg(CASE WHEN state IN ('text_pollution', 'collapsed') THEN 1.0 ELSE 0.0 END) AS unhealthy_share "
            "FROM actions GROUP BY step ORDER BY step")
sql"""


def free_port():
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def lab(tmp: Path):
    cells = [dict(cell_type="code", id=f"c{i}", metadata={}, execution_count=None, outputs=[], source=src)
             for i, src in enumerate((LIVE, INSPECT, SQL))]
    nb = dict(nbformat=4, nbformat_minor=5, cells=cells,
              metadata=dict(kernelspec=dict(name="python3", display_name="Python 3 (ipykernel)", language="python")))
    (tmp / "dashboard.ipynb").write_text(json.dumps(nb))
    for d in ("runs", "configs"): (tmp / d).symlink_to(ROOT / d)      # the cells read repository-relative paths
    port, token = free_port(), "T"
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp / "cfg"), JUPYTERLAB_WORKSPACES_DIR=str(tmp / "ws"))
    proc = subprocess.Popen([str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
                             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp}", "--LabApp.news_url=", "--allow-root"],
                            env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / "lab.log", "w"))
    url = f"http://127.0.0.1:{port}"
    for _ in range(180):
        try: urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2); break
        except OSError: time.sleep(0.5)
    else: raise RuntimeError("jupyter lab did not start: " + (tmp / "lab.log").read_text()[-2000:])
    return proc, f"{url}/lab/tree/dashboard.ipynb?token={token}"


def main():
    from playwright.sync_api import sync_playwright, expect
    if not (ROOT / RUN / "config.yaml").exists(): sys.exit(f"{RUN} is missing: run nbs/30_collapse.ipynb first (or name a run)")
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp())
    proc, url = lab(tmp)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=shutil.which("chromium"), args=ARGS)
            page = browser.new_page(viewport=dict(width=1280, height=2400))   # tall: whole cells fit
            page.set_default_timeout(900_000)
            page.goto(url)
            page.locator("#jp-main-statusbar").get_by_text("Idle").first.wait_for()
            news = page.get_by_role("button", name="No", exact=True)    # JupyterLab's "notify about news?" toast
            try: news.click(timeout=10_000)
            except Exception: pass
            page.locator(".jp-Cell .cm-content").first.click()
            page.keyboard.press("Shift+Enter")                 # the live panel
            live = page.locator(".jp-Cell").nth(0)
            live.locator("button.jupyter-button", has_text="Start").click()
            t0 = time.time()
            page.wait_for_function("() => +document.querySelector('.toolrl-step input').value >= 2")
            print(f"two RL steps in {time.time() - t0:.0f} s")
            page.wait_for_timeout(4000)                        # the charts' next render
            live.screenshot(path=str(OUT / "dashboard_live.png"))
            t1 = time.time()
            live.locator("button.jupyter-button", has_text="Pause").click()
            expect(live.locator(".toolrl-status")).to_contain_text("paused after step", timeout=900_000)
            print(f"pause click -> paused: {time.time() - t1:.0f} s")
            live.get_by_role("tab", name="Signals & values").click()
            live.get_by_role("checkbox", name="ops").check()
            page.wait_for_timeout(1500)
            live.screenshot(path=str(OUT / "dashboard_paused_signals.png"))
            live.locator("button.jupyter-button", has_text="Stop").click()
            expect(live.locator(".toolrl-status")).to_contain_text("stopped", timeout=900_000)
            for i, name in ((1, "dashboard_inspector.png"), (2, "dashboard_sql.png")):
                page.locator(".jp-Cell").nth(i).locator(".cm-content").click()
                page.keyboard.press("Shift+Enter")
                cell = page.locator(".jp-Cell").nth(i)
                cell.locator(".widget-tab").first.wait_for()
                page.wait_for_timeout(3000)
                cell.screenshot(path=str(OUT / name))
            browser.close()
        for p in sorted(OUT.glob("dashboard_*.png")): print(p.relative_to(ROOT), p.stat().st_size // 1024, "KiB")
    finally:
        proc.terminate()
        try: proc.wait(20)
        except subprocess.TimeoutExpired: proc.kill()


if __name__ == "__main__": main()
