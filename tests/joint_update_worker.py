"""One RL step's update with the joint loss (GRPO + λ·SFT), on one process or as one of several under
`torchrun`: each process takes its share of the groups and of the SFT examples. Writes the updated weights
(main process) to argv[1]. TINY RANDOM model, fixed random data. Used by tests/test_joint_multiprocess.py."""
import sys
import torch
from accelerate import Accelerator
from toolrl_nb.grpo import GRPOConfig, make_optimizer, random_batch, train_step
from toolrl_nb.models import load_policy
from toolrl_nb.sft import SFTExample
from toolrl_nb.supervision import joint_sft_term
from toolrl_nb.trainer import trainable_state

# one thread in every process: torchrun sets OMP_NUM_THREADS=1 in its children, a plain process uses all cores, and a
# different thread count changes the summation order. AdamW's first steps are nearly sign(g), so the rounding noise on
# gradients near zero became update differences of 9e-5 (measured with OMP_NUM_THREADS unset; 1e-8 with it pinned).
torch.set_num_threads(1)
torch.manual_seed(0)
model, tok = load_policy("tiny-random")
V = model.config.vocab_size
cfg = GRPOConfig(lr=1e-3, warmup_steps=0, kl_coef=0.0, mini_batches=2, max_grad_norm=1e9)   # 2 updates: the second sees ratios != 1
batch = random_batch(B=8, T=12, vocab_size=V, G=2, seed=1)                    # 4 groups of 2
g = torch.Generator().manual_seed(2)
sft = [SFTExample(input_ids=torch.randint(1, V, (n,), generator=g).tolist(), loss_mask=[0] * 3 + [1] * (n - 3))
       for n in (7, 9, 5, 11)]                                                # different target counts: the normaliser matters
acc = Accelerator(cpu=True)
world, rank = acc.num_processes, acc.process_index
opt, sched = make_optimizer([p for p in model.parameters() if p.requires_grad], cfg)
if world > 1: model, opt = acc.prepare(model, opt)
# this process's share: groups rank, rank+world, ... (rows of a group stay together) and every world-th SFT example
mine = torch.isin(batch["group"], torch.arange(rank, int(batch["group"].max()) + 1, world))
part = {k: v[mine] for k, v in batch.items()}
part["group"] = torch.unique(part["group"], return_inverse=True)[1]
extra = joint_sft_term(sft[rank::world], sft_weight=0.5, micro_batch_size=1, pad_id=0)
stats = train_step(model, part, opt, sched, cfg, micro_batch_size=2, accelerator=acc if world > 1 else None, extra=extra)
if acc.is_main_process: torch.save(dict(weights=trainable_state(acc.unwrap_model(model)), stats=stats, world=world), sys.argv[1])
acc.wait_for_everyone()
