"""A screenshot of a real run in TensorBoard, for the dashboard tutorial (nbs/34_dashboard.ipynb).

Trains a short real CPU run of SmolLM2-135M (the demo preset at a budget near the main job's `--quick` one: 4 RL steps of 1 task x 4 rollouts, with
`report_to: [tensorboard]`), starts `tensorboard --logdir` on it and photographs its scalars in Debian's chromium
(Playwright). Needs `make browser-deps`. Writes nbs/images/tensorboard_run.png and prints what it measured.
Usage: .venv/bin/python tools/tensorboard_screenshot.py [--run-dir runs/tensorboard-demo]"""
import argparse, shutil, socket, subprocess, sys, tempfile, time, urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
OUT = ROOT / "nbs" / "images" / "tensorboard_run.png"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
QUICK = ["steps=4", "tasks_per_step=1", "warmup_tasks=4", "warmup.epochs=1", "eval.n_tasks=2", "rollout.group_size=4", "checkpoint_every=2",
         "rollout.max_action_tokens=48", "rollout.max_total_tokens=1200", "eval.max_action_tokens=32", "diagnostics.bank_contexts=8",
         "report_to=[tensorboard]"]


def free_port():
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def train(run_dir: Path):
    if (run_dir / "tensorboard").is_dir(): return print(f"{run_dir}: reusing its TensorBoard mirror")
    t0 = time.time()
    sets = [a for s in QUICK + [f"run_dir={run_dir}"] for a in ("--set", s)]
    subprocess.run([str(BIN / "toolrl"), "train", str(ROOT / "configs/demo.yaml"), *sets], check=True, cwd=ROOT)
    print(f"trained {run_dir} in {time.time() - t0:.0f} s")


def main():
    ap = argparse.ArgumentParser(); ap.add_argument("--run-dir", default=str(ROOT / "runs" / "tensorboard-demo"))
    run_dir = Path(ap.parse_args().run_dir)
    train(run_dir)
    from playwright.sync_api import sync_playwright
    port, log = free_port(), tempfile.NamedTemporaryFile("w", suffix=".log", delete=False)
    proc = subprocess.Popen([str(BIN / "tensorboard"), "--logdir", str(run_dir), "--host", "127.0.0.1", f"--port={port}"],
                            stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try: urllib.request.urlopen(url, timeout=2); break
            except OSError: time.sleep(0.5)
        else: raise RuntimeError("tensorboard did not start: " + Path(log.name).read_text()[-2000:])
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=shutil.which("chromium"), args=ARGS)
            page = browser.new_page(viewport=dict(width=1400, height=1000))
            page.set_default_timeout(120_000)
            page.goto(f"{url}/#timeseries")
            page.get_by_text("rl", exact=False).first.wait_for()         # the tag groups are listed
            page.locator('tb-filter-input[placeholder^="Filter tags"] input').fill("rl/(reward_mean|kl|entropy|ratio_max)")
            page.mouse.click(120, 900)                        # close the tag suggestions (a click outside them)
            try: page.get_by_role("button", name="Settings").first.click(timeout=5000)   # fold the settings pane away
            except Exception: pass
            page.wait_for_timeout(8000)                       # the charts draw after the filter settles
            shown = page.inner_text("body")
            if "matching filter" not in shown: raise RuntimeError("TensorBoard shows no filtered cards: " + shown[:500])
            OUT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(OUT))
            browser.close()
        print(OUT.relative_to(ROOT), OUT.stat().st_size // 1024, "KiB")
    finally:
        proc.terminate()
        try: proc.wait(20)
        except subprocess.TimeoutExpired: proc.kill()


if __name__ == "__main__": main()
