"""Multi-process training (DDP, gloo, 2 CPU processes under torchrun) equals one process.

The loss and gradients of a global batch split over two ranks, with contrastive negatives
gathered across ranks with gradients, equal those of one process on the whole batch
(dropout 0; the noise tensors come from the batch). A whole run under torchrun ends with the
weights of a one-process run.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _train_data import load_pairing, tiny_config, tiny_toml, write_cohort

HERE = Path(__file__).resolve().parent
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

STEP_SCRIPT = r'''
import sys
from pathlib import Path
import numpy as np, torch
sys.path.insert(0, sys.argv[3])
from _train_data import load_pairing, tiny_config
from mirror_model.data import MirrorDataset, Standardizer, collate_bags
from mirror_model.nn import MirrorModule
from mirror_model.train import init_distributed, seed_everything
from mirror_model.train._loop import _setup, train_step

torch.set_num_threads(1)
root, out = Path(sys.argv[1]), Path(sys.argv[2])
info = init_distributed("cpu")
mcfg, tcfg = tiny_config(model=dict(dropout=0.0, patch_dim=8, n_genes=12), train=dict(device="cpu"))
pairing = load_pairing(root / "slides", root / "refined.h5ad")
ds = MirrorDataset(pairing, standardizer=Standardizer.fit(pairing.rna), n_patches=16, seed=3,
                   dim=mcfg.dim, latent_dim=mcfg.latent_dim)
shard = np.array_split(np.arange(7), info.world_size)[info.rank]   # 4 + 3 cases: uneven on purpose
seed_everything(0)
module = MirrorModule(mcfg)
run = _setup(module, tcfg, None, {}, False, info)
values, n = train_step(run, collate_bags([ds[int(i)] for i in shard]))
if info.rank == 0:
    torch.save({"values": values, "n": n, "grads": {k: p.grad.clone() for k, p in module.named_parameters()
                                                    if p.grad is not None}}, out)
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args: list[str], tmp_path: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MIRROR_NO_PROGRESS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), *args]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-6000:]
    return proc


def test_two_ranks_equal_one_process_loss_and_gradients(tmp_path):
    from mirror_model.data import MirrorDataset, Standardizer, collate_bags
    from mirror_model.nn import MirrorModule
    from mirror_model.train import DistInfo, seed_everything
    from mirror_model.train._loop import _setup, train_step

    write_cohort(tmp_path)
    script = tmp_path / "ddp_step.py"
    script.write_text(STEP_SCRIPT)
    torchrun([str(script), str(tmp_path), str(tmp_path / "ddp.pt"), str(HERE)], tmp_path)
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)

    mcfg, tcfg = tiny_config(model=dict(dropout=0.0, patch_dim=8, n_genes=12), train=dict(device="cpu"))
    pairing = load_pairing(tmp_path / "slides", tmp_path / "refined.h5ad")
    ds = MirrorDataset(pairing, standardizer=Standardizer.fit(pairing.rna), n_patches=16, seed=3,
                       dim=mcfg.dim, latent_dim=mcfg.latent_dim)
    seed_everything(0)
    module = MirrorModule(mcfg)
    run = _setup(module, tcfg, None, {}, False, DistInfo())
    values, n = train_step(run, collate_bags([ds[i] for i in range(7)]))

    assert ddp["n"] == n == 7
    torch.testing.assert_close(ddp["values"], values, rtol=1e-5, atol=1e-6)
    grads = {k: p.grad for k, p in module.named_parameters() if p.grad is not None}
    assert set(grads) == set(ddp["grads"]) and len(grads) > 10
    for name, g in grads.items():  # equal up to float32 rounding (other batch shapes, other sum orders)
        assert (ddp["grads"][name] - g).abs().max() <= 1e-4 * g.abs().max() + 1e-7, name


def test_torchrun_pretrain_matches_single_process(tmp_path):
    from mirror_model import constants as C

    slides, rna = write_cohort(tmp_path)
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_TOML)
    common = ["pretrain", "--slides", str(slides), "--rna", str(rna), "--config", str(config),
              "--device", "cpu", "--num-workers", "0"]
    torchrun(["-m", "mirror_model.cli", *common, "--out", str(tmp_path / "ddp")], tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MIRROR_NO_PROGRESS": "1"}
    single = subprocess.run([sys.executable, "-m", "mirror_model.cli", *common, "--out", str(tmp_path / "one")],
                            env=env, capture_output=True, text=True, timeout=240)
    assert single.returncode == 0, single.stderr
    a = torch.load(tmp_path / "ddp" / C.CHECKPOINT_LAST, weights_only=True)
    b = torch.load(tmp_path / "one" / C.CHECKPOINT_LAST, weights_only=True)
    assert a["world_size"] == 2 and b["world_size"] == 1 and len(a["rng"]) == 2
    assert a["epoch"] == b["epoch"] == 2
    for key in b["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=1e-4, atol=1e-5, msg=key)
    np.testing.assert_allclose([r["loss"] for r in a["history"]], [r["loss"] for r in b["history"]], rtol=1e-4)
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())


TINY_TOML = tiny_toml({"dropout": 0.0}, epochs=2, batch_size=4, n_patches=16, lr=1e-3)
