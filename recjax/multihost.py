"""Multi-process JAX start-up: TPU VMs are found automatically; GPU and CPU hosts take flags or
the environment (RECJAX_COORDINATOR_ADDRESS, RECJAX_NUM_PROCESSES, RECJAX_PROCESS_ID, or SLURM's)."""
from __future__ import annotations

import os
from typing import Optional

import jax


def initialize(coordinator_address: Optional[str] = None, num_processes: Optional[int] = None,
               process_id: Optional[int] = None, *, force: bool = False) -> bool:
    """Calls `jax.distributed.initialize` when there is more than one process; returns whether it did."""
    env = os.environ
    coordinator_address = coordinator_address or env.get("RECJAX_COORDINATOR_ADDRESS")
    if num_processes is None and "RECJAX_NUM_PROCESSES" in env:
        num_processes = int(env["RECJAX_NUM_PROCESSES"])
    if process_id is None and "RECJAX_PROCESS_ID" in env:
        process_id = int(env["RECJAX_PROCESS_ID"])
    on_slurm = "SLURM_JOB_ID" in env and int(env.get("SLURM_NTASKS", "1")) > 1
    on_tpu_pod = "TPU_WORKER_HOSTNAMES" in env and "," in env.get("TPU_WORKER_HOSTNAMES", "")
    if not (force or coordinator_address or on_slurm or on_tpu_pod):
        return False
    if coordinator_address and jax.config.jax_platforms in (None, "", "cpu"):
        # CPU hosts need a collectives backend for cross-process all-reduce.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id)
    return True
