"""Level 2: a real kernel, no browser. The panel runs in an ipykernel; we talk to its widgets over comm messages
exactly as the JupyterLab frontend does and watch the `update` messages on iopub.

Uses the tiny random model on the fast lane with a tiny budget (`panel.tiny_config`)."""
import json, queue, time

import pytest
from jupyter_client.manager import start_new_kernel

CODE = """
import tempfile
from pathlib import Path
from toolrl_nb.panel import show_panel, tiny_config
panel = show_panel(tiny_config(Path(tempfile.mkdtemp()) / "run", steps=200, supervision=dict(scheme="sync")), refresh_s=0.1)
panel
"""


class Frontend:
    "Just enough of a widget frontend: comm ids by description/class, the latest state of each widget."
    def __init__(self, kc):
        self.kc, self.state, self.ids = kc, {}, {}
        self.updates = []   # (time, comm_id, state)

    def pump(self, seconds=0.2):
        end = time.time() + seconds
        while True:
            left = end - time.time()
            if left <= 0: return
            try: msg = self.kc.get_iopub_msg(timeout=left)
            except queue.Empty: return
            t, c = msg["msg_type"], msg["content"]
            if t == "comm_open":
                st = c["data"].get("state", {})
                self.state[c["comm_id"]] = dict(st)
                for key in [st.get("description")] + list(st.get("_dom_classes") or []):
                    if key: self.ids.setdefault(key, c["comm_id"])
            elif t == "comm_msg" and c["data"].get("method") in ("update", "echo_update"):
                self.state.setdefault(c["comm_id"], {}).update(c["data"]["state"])
                self.updates.append((time.time(), c["comm_id"], c["data"]["state"]))
            elif t == "error": raise AssertionError("\n".join(c["traceback"]))

    def send(self, comm_id, data):
        self.kc.shell_channel.send(self.kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data}))

    def click(self, description): self.send(self.ids[description], {"method": "custom", "content": {"event": "click"}})
    def set(self, key, value):
        self.send(self.ids[key], {"method": "update", "state": {"value": value}, "buffer_paths": []})
    def value(self, key): return self.state[self.ids[key]].get("value")

    def until(self, cond, timeout=180):
        end = time.time() + timeout
        while time.time() < end:
            self.pump(0.2)
            if cond(): return True
        return False


@pytest.fixture
def kernel():
    km, kc = start_new_kernel(kernel_name="python3")
    try: yield kc
    finally:
        kc.stop_channels(); km.shutdown_kernel(now=True)


def test_comm_messages_drive_the_panel(kernel):
    fe = Frontend(kernel)
    kernel.execute(CODE)
    assert fe.until(lambda: "Stop" in fe.ids and "toolrl-status" in fe.ids, 240), "panel widgets never opened"
    status = lambda: fe.value("toolrl-status") or ""
    step = lambda: int(fe.value("toolrl-step") or -1)   # the step box: the last logged step ("" before the first)

    fe.click("Start")
    assert fe.until(lambda: step() >= 2), f"step counter did not move: {step()}"
    fe.click("Pause")
    assert fe.until(lambda: "pausing at next safe point" in status() or "paused after step" in status(), 30), status()
    assert fe.until(lambda: "paused after step" in status(), 120), status()
    frozen = step()
    fe.set("ops", True)                       # a supervision switch, toggled as the frontend does
    t0 = time.time(); fe.pump(4.0)
    assert step() == frozen, "the step counter moved while paused"
    step_id = fe.ids["toolrl-step"]
    assert not [u for u in fe.updates if u[0] > t0 and u[1] == step_id and "value" in u[2]]

    fe.click("Resume")
    assert fe.until(lambda: step() >= frozen + 1), "resume did not continue"
    fe.click("Stop")
    assert fe.until(lambda: "stopped" in status() and "running" not in status(), 180), status()
    assert "stopped" in status()
    # the toggle was logged at the step the paused run ran next
    kernel.execute("import json, time; panel.close(); time.sleep(0.5); "
                   "panel.phase_w.value = json.dumps(panel.log.query(\"SELECT step FROM events WHERE kind = 'toggle'\")['step'].to_list())")
    assert fe.until(lambda: (fe.value("phase") or "").startswith("["), 30)
    assert json.loads(fe.value("phase")) == [frozen + 1]
