"""Two processes with the joint loss (GRPO + λ·SFT) make the same update as one process on the whole step: the GRPO
and the SFT normalisers are global token counts, DDP averages the gradients. `accelerate launch` on CPU (gloo), TINY
RANDOM model, two mini-batch updates so the second runs with ratios != 1.

Launched with `torchrun --nproc_per_node 2` (gloo): `accelerate launch --cpu --num_processes 2` starts ONE process
(its simple launcher; the worker's `acc.num_processes` is 1), which would make this comparison vacuous. Measured: the
two runs agree to 1e-8; with a per-process normaliser (global_count patched to the local count) they differ by 4e-3."""
import os, socket, subprocess, sys
from pathlib import Path
import torch

BIN, WORKER = Path(sys.executable).parent, Path(__file__).with_name("joint_update_worker.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}   # the same thread count in both runs (see the worker)


def test_two_processes_joint_update_equals_one(tmp_path):
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    r = subprocess.run([sys.executable, str(WORKER), str(one)], capture_output=True, text=True, timeout=300, cwd=WORKER.parents[1], env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    with socket.socket() as sk: sk.bind(("127.0.0.1", 0)); port = sk.getsockname()[1]   # a free rendezvous port
    cmd = [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(port),
           str(WORKER), str(two)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=WORKER.parents[1], env=ENV)   # the repo root: its toolrl_nb
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    a, b = torch.load(one), torch.load(two)
    assert (a["world"], b["world"]) == (1, 2)                               # really one and really two processes
    assert a["stats"]["sft_loss"] > 0 and b["stats"]["sft_loss"] > 0      # the joint term took part in both
    moved = max(float((a["weights"][k] - b["weights"][k]).abs().max()) for k in a["weights"])
    assert moved < 1e-5, f"two-process update differs from one-process by {moved}"
    # the comparison is not vacuous: the step changed the weights by far more than the tolerance
    from toolrl_nb.models import load_policy
    torch.manual_seed(0); m0, _ = load_policy("tiny-random")
    init = {k: v for k, v in m0.state_dict().items() if k in a["weights"]}
    assert max(float((a["weights"][k] - init[k]).abs().max()) for k in init) > 1e-4
