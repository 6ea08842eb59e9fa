"""Run ``process_prompt`` in Ray actors; the driver keeps the store.

Design: actors load the models once and return ``PairResult``s (images travel through Ray's object store); the
driver claims each prompt's lease just before handing it to an idle actor and commits each result itself. Why the
driver commits rather than the actors:

- SQLite's WAL needs shared memory between its writers, which network filesystems (NFS, EFS, Lustre) do not give;
  on a multi-node cluster only the driver's disk can hold the ledger safely.
- One writer means no write contention, and the store's guarantees (atomic commit, leases, resume, sweep) stay
  exactly those of the single-process run, which the tests check against each other.
- A pair is a few MB of PNG per prompt against seconds to minutes of GPU work per prompt, so shipping results to
  the driver costs little.

Leases still matter: two drivers on one store (or a driver plus local workers) never process the same prompt, and
a prompt whose actor died is released at once and claimed again.

Multi-node: start Ray on every node (``ray start --head`` on one, ``ray start --address HEAD:6379`` on the others)
with artaug and the model weights (or hub access) installed on each, then run ``artaug synth PROMPTS --out DIR --ray
HEAD:6379`` (or ``--ray auto`` on a cluster node) from the node whose local disk holds DIR. Each actor takes one GPU
(``--workers`` defaults to the cluster's GPU count); point ``critic.model`` at one shared OpenAI-compatible endpoint
to keep the VLM out of the painters' GPUs.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from artaug.synth.work import PairResult, SynthComponents, process_prompt

if TYPE_CHECKING:
    from artaug.config import Config
    from artaug.synth.store import Store

log = logging.getLogger("artaug.synth")


class SynthWorker:
    """The actor: loads the components once, then runs ``process_prompt`` on whatever record it is handed."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.components = SynthComponents.load(config)
        self.name = f"ray:{socket.gethostname()}:{os.getpid()}"

    def process(self, record: Any) -> PairResult:
        result = process_prompt(record, self.components, self.config)
        result.worker = self.name
        return result


def run_on_ray(
    store: Store,
    config: Config,
    *,
    address: str,
    workers: int | None,
    limit: int,
    commit: Callable[[PairResult], None],
) -> None:
    """Process up to ``limit`` prompts of ``store`` on ``workers`` Ray actors; ``commit`` is called on the driver."""
    try:
        import ray
    except ImportError:
        raise ImportError("--ray needs Ray: pip install 'artaug[ray]'") from None

    # 1. connect: reuse an initialised Ray, else "auto" = a running cluster if any, else a local instance that
    #    listens on loopback only (a local cluster is nobody else's business; a real one is given by address)
    started_here = not ray.is_initialized()
    if started_here:
        local = {"_node_ip_address": "127.0.0.1", "include_dashboard": False} if address == "auto" else {}
        ray.init(address=None if address == "auto" else address, **local)
    actors: list[Any] = []
    in_flight: dict[Any, tuple[Any, Any]] = {}
    try:
        # 2. one actor per GPU (or the --workers asked for); each holds its own painter, critic and judge
        gpus = ray.cluster_resources().get("GPU", 0)
        count = workers or max(1, int(gpus))
        gpu_each = 1 if gpus >= count else (gpus / count if gpus else 0)
        remote = ray.remote(SynthWorker).options(num_cpus=1, num_gpus=gpu_each)
        actors = [remote.remote(config) for _ in range(count)]
        log.info("ray: %d actors (%s GPU each) on %s", count, gpu_each, ray.get_runtime_context().gcs_address)

        # 3. keep every actor busy with one prompt; claim just in time, commit on arrival
        idle, submitted = list(actors), 0
        with store.keep_alive():
            while True:
                while idle and submitted < limit:
                    claimed = store.claim(1)
                    if not claimed:
                        break
                    actor = idle.pop()
                    in_flight[actor.process.remote(claimed[0])] = (actor, claimed[0])
                    submitted += 1
                if not in_flight:
                    break
                ready, _ = ray.wait(list(in_flight), num_returns=1)
                actor, record = in_flight.pop(ready[0])
                try:
                    result = ray.get(ready[0])
                except ray.exceptions.RayActorError as error:
                    # The actor (or its node) died: the prompt goes back to the queue; carry on with the others.
                    store.release(record.id)
                    actors.remove(actor)
                    log.warning("ray: an actor died on %s (%s); %d actors left", record.id, error, len(actors))
                    if not actors:
                        raise RuntimeError("every Ray actor died; see the Ray logs") from error
                    continue
                except ray.exceptions.RayTaskError as error:
                    result = PairResult(record, error=f"RayTaskError: {error}", worker="ray")
                commit(result)
                idle.append(actor)
    finally:
        # 4. hand back what was never committed and stop the actors
        for _, record in in_flight.values():
            store.release(record.id)
        for actor in actors:
            ray.kill(actor)
        if started_here:
            ray.shutdown()
