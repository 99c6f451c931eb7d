"""Run `toolrl` with one injected fault (used by tests/test_faults.py; not a test itself).

    python tests/fault_inject.py FAULT N -- toolrl-args...

FAULT: kill_log (SIGKILL right after the N-th RL step's `trajectories` rows, before its `actions`),
kill_ckpt (SIGKILL half-way through the N-th checkpoint's state.pt), kill_sft (SIGKILL at the N-th SFT step
of an SFT round, before it is logged), enospc_ckpt (the N-th checkpoint's state.pt write fails with ENOSPC after
half its bytes, as on a full disk)."""
import errno, io, os, signal, sys

import torch

from toolrl_nb import cli, runlog, trainer

fault, n = sys.argv[1], int(sys.argv[2])
argv = sys.argv[sys.argv.index("--") + 1:]
count = dict(n=0)

def _hit() -> bool:
    count["n"] += 1
    return count["n"] == n

def _kill(): os.kill(os.getpid(), signal.SIGKILL)

if fault == "kill_log":
    real_log = runlog.RunLog.log
    def log(self, table, rows):
        out = real_log(self, table, rows)
        if table == "trajectories" and len(rows) and _hit(): _kill()
        return out
    runlog.RunLog.log = log
elif fault in ("kill_ckpt", "enospc_ckpt"):
    real_save = torch.save
    def save(obj, f, *a, **k):
        name = str(getattr(f, "name", f))
        if "/checkpoints/step_" in name and name.endswith("state.pt") and _hit():
            buf = io.BytesIO(); real_save(obj, buf, *a, **k)
            f.write(buf.getvalue()[: len(buf.getvalue()) // 2]); f.flush()
            if fault == "kill_ckpt": _kill()
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **k)
    torch.save = save
elif fault == "kill_sft":
    real_sft = trainer.Trainer._log_sft_step
    def log_sft(self, s):
        if self.rl_done > 0 and _hit(): _kill()      # inside an SFT round (after some RL steps)
        return real_sft(self, s)
    trainer.Trainer._log_sft_step = log_sft
else: raise SystemExit(f"unknown fault {fault!r}")

cli.main(argv)
