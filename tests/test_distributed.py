"""DistributedDataParallel over the torch backend: two CPU processes (gloo, started with torch.multiprocessing)
train on different data and must end with identical parameters (DDP all-reduces the gradients), which must
also differ from the start."""
from __future__ import annotations

import os
import socket

import numpy as np
import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")

from conftest import ROOT  # noqa: E402

MODEL = ROOT / "examples" / "mlp.pnet"
STEPS = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out_dir: str):
    """One rank: build the module from the .pnet file (graphs hold lambdas; sources travel, not modules)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        from torch.nn.parallel import DistributedDataParallel as DDP

        from pnet.backends.torch_backend import to_module
        from pnet.dsl.compile import load_file
        graph = load_file(MODEL, overrides={"hidden": 16}).graph
        model = DDP(to_module(graph))  # every rank starts from the same seeded parameters
        gen = torch.Generator().manual_seed(100 + rank)  # different data on every rank
        for _ in range(STEPS):
            x = torch.randn(8, 64, generator=gen)
            labels = torch.randint(0, 10, (8,), generator=gen)
            model.zero_grad(set_to_none=True)
            model(x=x, labels=labels)["loss"].backward()
            with torch.no_grad():  # plain SGD: torch.optim's first step would import torch._dynamo (seconds)
                for p in model.parameters():
                    p.sub_(0.1 * p.grad)
        state = {k: v.detach().numpy() for k, v in model.module.state_dict().items()}
        np.savez(os.path.join(out_dir, f"rank{rank}.npz"), **state)
    finally:
        dist.destroy_process_group()


def _start_method() -> str:
    """fork where there is one: the ranks then inherit this process's imports (torch._dynamo, which DDP pulls in,
    and pnet) instead of paying them again, which under spawn took 10-30 s on a 2-core box."""
    import multiprocessing
    return "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


def _run_ranks(mp, out_dir, attempts: int = 2, deadline_s: float = 600.0):
    """Start both ranks and wait for them, with a deadline: a rank can wait forever in gloo's rendezvous when
    its peer died early (a port taken between _free_port and the bind, or a fork that inherited a held
    lock). Such an attempt is killed and retried on a fresh port with spawned (not forked) ranks; a hang is
    never left to stall the suite."""
    import time
    for attempt in range(attempts):
        ctx = mp.start_processes(_worker, args=(2, _free_port(), str(out_dir)), nprocs=2, join=False,
                                 start_method=_start_method() if attempt == 0 else "spawn")
        end = time.monotonic() + deadline_s
        try:
            while not ctx.join(timeout=1.0):
                if time.monotonic() > end:
                    raise TimeoutError(f"DDP ranks did not finish in {deadline_s:.0f} s")
            return
        except Exception as e:  # noqa: BLE001 - a rank that failed or hung: kill both, maybe retry
            for p in ctx.processes:
                if p.is_alive():
                    p.kill()
            if attempt == attempts - 1:
                pytest.fail(f"DDP ranks failed twice; last: {type(e).__name__}: {e}")


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed with gloo unavailable")
def test_ddp_two_ranks_agree(tmp_path):
    import torch._dynamo  # noqa: F401 - imported once here, inherited by forked ranks
    import torch.multiprocessing as mp

    from pnet.backends import torch_backend  # noqa: F401
    from pnet.ir.registry import all_ops
    all_ops()
    _run_ranks(mp, tmp_path)
    a, b = (dict(np.load(tmp_path / f"rank{r}.npz")) for r in range(2))
    assert a.keys() == b.keys() and a
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    from pnet.backends import numpy_ref
    from pnet.dsl.compile import load_file
    start = numpy_ref.init_params(load_file(MODEL, overrides={"hidden": 16}).graph)
    assert any(not np.array_equal(a[k], start[k]) for k in a), "training changed nothing"
