"""Where tasks run: local worker processes (default) or Ray (a local instance or an existing cluster).

Both have the same small interface: `slots` (tasks run at once), `submit(task)`, `wait(timeout)`
(the finished tasks with their outcomes or the exception that killed them) and `close()`.
The parent keeps at most `slots` tasks in flight, so a run marked `running` in the store is running.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import ctypes
import multiprocessing as mp
import os
import signal
from typing import Any

from forgetlaw.errors import UserError
from forgetlaw.study.tasks import Task, execute


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_worker(workers: int) -> int:
    """Cores divided between the workers (two 1-thread processes beat one 2-thread process here)."""
    return max(1, available_cores() // max(1, workers))


def visible_gpus(device: str) -> list[int]:
    """The GPUs local workers are spread over: all CUDA devices for device auto/cuda, none for cpu or
    a device the spec pins itself (cuda:1)."""
    if device not in ("auto", "cuda"):
        return []
    import torch

    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


def _init_worker(threads: int, gpu_queue=None) -> None:
    # A worker must not outlive a killed sweep: it could otherwise keep writing a base checkpoint that
    # the resumed sweep is writing too. PR_SET_PDEATHSIG (Linux) kills it with its parent; elsewhere the
    # progress watchdog in tasks._Reporter does it at the next progress call.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    # The parent stops workers itself; Ctrl-C in the terminal should not print a traceback per worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if gpu_queue is not None:
        # One GPU per worker, set before the worker's first use of CUDA (torch is imported lazily).
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu_queue.get())


class LocalExecutor:
    """A pool of `workers` spawned processes, `threads` torch threads each. With `gpus`, one worker per
    GPU by default, each seeing only its own (CUDA_VISIBLE_DEVICES), so `auto` means its GPU."""

    name = "local"

    def __init__(self, workers: int | None = None, threads: int | None = None, gpus: list[int] | None = None):
        self.gpus = list(gpus or [])
        self.slots = workers or len(self.gpus) or available_cores()
        self.threads = threads or threads_per_worker(self.slots)
        self.parent_pid = os.getpid()
        self._pool = self._new_pool()

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        # spawn, not fork: forking a process that may hold torch/OpenMP threads can deadlock.
        context = mp.get_context("spawn")
        queue = None
        if self.gpus:
            # Each new worker takes one GPU; with more workers than GPUs they share round robin.
            queue = context.Queue()
            for i in range(self.slots):
                queue.put(self.gpus[i % len(self.gpus)])
        return cf.ProcessPoolExecutor(max_workers=self.slots, mp_context=context,
                                      initializer=_init_worker, initargs=(self.threads, queue))

    def submit(self, task: Task) -> cf.Future:
        return self._pool.submit(execute, task)

    def wait(self, handles: list[Any], timeout: float) -> list[tuple[Any, Any]]:
        done, _ = cf.wait(handles, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        finished = []
        broken = False
        for future in done:
            try:
                finished.append((future, future.result()))
            except cf.process.BrokenProcessPool as exc:
                broken = True
                finished.append((future, exc))
            except Exception as exc:  # pickling errors and the like
                finished.append((future, exc))
        if broken:  # a worker died (killed, out of memory): its runs fail, a fresh pool takes the rest
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
        return finished

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class RayExecutor:
    """One Ray task per task; a GPU per task when the cluster has GPUs, else `threads` CPUs."""

    name = "ray"

    def __init__(self, workers: int | None = None, address: str | None = None, threads: int | None = None):
        try:
            import ray
        except ImportError:
            raise UserError("--executor ray: Ray is not installed; pip install 'forgetlaw[ray]'") from None
        self.ray = ray
        self._started_here = False
        if not ray.is_initialized():
            if address:
                ray.init(address=address, log_to_driver=True)
            else:
                ray.init(num_cpus=workers or available_cores(), include_dashboard=False, log_to_driver=True)
                self._started_here = True
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        cpus = int(resources.get("CPU", 1))
        if gpus:
            self.slots = workers or gpus
            self.threads = threads or max(1, cpus // max(1, self.slots))
            options = {"num_gpus": 1, "num_cpus": 1}
        else:
            self.threads = threads or 1
            self.slots = workers or max(1, cpus // self.threads)
            options = {"num_cpus": self.threads}
        # A task that dies is recorded as failed; --retry-failed reruns it. Ray retrying it silently
        # would hide the failure.
        self._remote = ray.remote(execute).options(max_retries=0, **options)
        self.parent_pid = None  # Ray workers are children of the raylet, not of this process

    def submit(self, task: Task) -> Any:
        return self._remote.remote(task)

    def wait(self, handles: list[Any], timeout: float) -> list[tuple[Any, Any]]:
        ready, _ = self.ray.wait(handles, num_returns=1, timeout=timeout)
        finished = []
        for ref in ready:
            try:
                finished.append((ref, self.ray.get(ref)))
            except Exception as exc:  # RayTaskError, WorkerCrashedError, ...
                finished.append((ref, exc))
        return finished

    def close(self) -> None:
        if self._started_here:
            self.ray.shutdown()


def make_executor(kind: str, workers: int | None = None, address: str | None = None,
                  threads: int | None = None, device: str = "auto"):
    """`threads`: torch threads per task; default the cores divided between the workers. `device`:
    the spec's execution.device, which decides whether local workers are spread over GPUs."""
    if workers is not None and workers < 1:
        raise UserError(f"--workers: {workers} must be at least 1")
    if threads is not None and threads < 1:
        raise UserError(f"--threads: {threads} must be at least 1")
    if kind == "local":
        if address:
            raise UserError("--address is for --executor ray; drop it or add --executor ray")
        return LocalExecutor(workers, threads, visible_gpus(device))
    if kind == "ray":
        return RayExecutor(workers, address, threads)
    raise UserError(f"--executor: unknown executor '{kind}'; choose local or ray")
