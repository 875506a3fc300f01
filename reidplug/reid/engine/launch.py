"""One process per device for data-parallel training: starting the ranks, driving them, and
taking them all down together when one fails.

    plan = LaunchPlan(processes=2, device_type="cpu")      # --num-gpus 2 MODEL.DEVICE=cpu
    with RankGroup(plan) as group:                          # spawns the ranks, each joins the group
        replies = group.call(fn, *args)                     # fn(state, *args) on every rank

A rank that raises or dies makes `call` kill every rank of this machine and raise one
`RankFailed` line naming the rank and the cause (a rank that died first beats the
peers that then lost their connection to it). Ranks ask the kernel to kill them when
the launching process dies, so none outlives it.
"""

from __future__ import annotations

import multiprocessing as mp
import multiprocessing.connection
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass

from reidplug.core import processes
from reidplug.core.errors import UserError

# After a first failure, how long to wait for the others before naming the cause.
GRACE_S = 0.5
# Exception names and message parts of a rank that only lost its connection to a failed peer.
_PEER_LOSS_TYPES = ("DistBackendError", "DistNetworkError", "DistStoreError")
_PEER_LOSS_TEXT = ("closed by peer", "reset by peer", "broken pipe", "connection refused", "connection closed")


class RankFailed(UserError):
    """A rank of a distributed run raised or died; the other ranks were stopped."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class LaunchPlan:
    """Where the ranks of a run are: `processes` on each of `num_machines` machines (FastReID's flags)."""

    processes: int = 1  # --num-gpus: ranks on this machine, one device each
    num_machines: int = 1  # --num-machines
    machine_rank: int = 0  # --machine-rank
    dist_url: str = "auto"  # --dist-url: tcp://HOST:PORT of machine rank 0; auto: a free local port
    device_type: str = "cpu"  # "cuda": NCCL, rank i on cuda:i; "cpu": gloo
    threads: int = 0  # torch threads per rank on the CPU; 0: this machine's cores / processes
    log_path: str | None = None  # ranks append their output here (a trial's log.txt)

    @property
    def world_size(self) -> int:
        return self.processes * self.num_machines

    def check(self) -> None:
        from reidplug.core.errors import ConfigError

        for flag, value, low in (("--num-gpus", self.processes, 1), ("--num-machines", self.num_machines, 1),
                                 ("--machine-rank", self.machine_rank, 0)):
            if value < low:
                raise ConfigError(f"must be at least {low}, got {value}", key=flag)
        if self.machine_rank >= self.num_machines:
            raise ConfigError(f"{self.machine_rank} is not below --num-machines {self.num_machines}", key="--machine-rank")
        if self.device_type == "cuda":
            import torch

            visible = torch.cuda.device_count()
            if self.processes > visible:
                raise ConfigError(f"{self.processes} processes need {self.processes} GPUs, {visible} visible "
                                  "(MODEL.DEVICE=cpu trains on CPU processes)", key="--num-gpus")


class RankGroup:
    """The ranks of this machine, spawned once and driven by calls until closed."""

    def __init__(self, plan: LaunchPlan):
        plan.check()
        self.plan = plan
        self.procs: list = []
        self.conns: list = []
        self.url = ""

    def __enter__(self) -> RankGroup:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        else:
            self.kill()

    def start(self) -> None:
        from reidplug.reid.engine.distributed import resolve_dist_url

        self.url = resolve_dist_url(self.plan.dist_url, self.plan.num_machines)
        ctx = mp.get_context("spawn")  # a fresh interpreter: no CUDA or OpenMP state inherited
        try:
            for local in range(self.plan.processes):
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=rank_main, args=(local, self.plan, self.url, child), daemon=False,
                                   name=f"reidplug-rank-{local}")
                proc.start()
                child.close()
                self.procs.append(proc)
                self.conns.append(parent)
        except BaseException:
            self.kill()
            raise

    def call(self, fn, *args) -> list:
        """`fn(state, *args)` on every rank of this machine (state: a dict each rank keeps); their results."""
        for conn in self.conns:
            try:
                conn.send(("call", fn, args))
            except (BrokenPipeError, OSError):
                pass  # its sentinel tells why
        try:
            return self._collect()
        except BaseException:
            self.kill()
            raise

    def _collect(self) -> list:
        n = len(self.procs)
        replies: dict[int, object] = {}
        failures: dict[int, tuple] = {}
        first_failure = None
        while len(replies) + len(failures) < n:
            waiting = [i for i in range(n) if i not in replies and i not in failures]
            wait_s = None if first_failure is None else max(first_failure + GRACE_S - time.monotonic(), 0)
            if first_failure is not None and wait_s == 0:
                break
            handles = {self.conns[i]: i for i in waiting}
            handles.update({self.procs[i].sentinel: i for i in waiting})
            for obj in mp.connection.wait(list(handles), timeout=wait_s):
                i = handles[obj]
                if i in replies or i in failures:
                    continue
                msg = self._receive(i)
                if msg is None:
                    if obj is self.conns[i]:
                        continue
                    self.procs[i].join(1)
                    msg = ("died", self.procs[i].exitcode)
                if msg[0] == "ok":
                    replies[i] = msg[1]
                else:
                    failures[i] = msg
                    first_failure = first_failure or time.monotonic()
        if failures:
            self.kill()
            raise self._failure(failures)
        return [replies[i] for i in range(n)]

    def _receive(self, i: int):
        conn = self.conns[i]
        try:
            if conn.poll():
                return conn.recv()
        except (EOFError, OSError):
            pass
        return None

    def _failure(self, failures: dict[int, tuple]) -> RankFailed:
        def peer_loss(msg) -> bool:
            if msg[0] != "error":
                return False
            return msg[1] in _PEER_LOSS_TYPES or any(t in msg[2].lower() for t in _PEER_LOSS_TEXT)

        local, msg = min(failures.items(), key=lambda item: (peer_loss(item[1]), item[0]))
        global_rank = self.plan.machine_rank * self.plan.processes + local
        others = self.plan.processes - 1
        stopped = f"; stopped the other {others} rank{'s' if others != 1 else ''} of this machine" if others else ""
        if msg[0] == "died":
            code = msg[1]
            if code is not None and code < 0:
                try:
                    name = signal.Signals(-code).name
                except ValueError:
                    name = f"signal {-code}"
                return RankFailed(f"rank {global_rank} was killed by {name}{stopped}", exit_code=1)
            return RankFailed(f"rank {global_rank} exited with code {code}{stopped}", exit_code=1)
        _, kind, message, exit_code = msg[:4]
        if exit_code == UserError.exit_code and kind != "KeyboardInterrupt":
            return RankFailed(message, exit_code=exit_code)  # the user's mistake, the same on every rank
        if kind == "KeyboardInterrupt":
            raise KeyboardInterrupt
        return RankFailed(f"rank {global_rank} failed: {kind}: {message}{stopped}", exit_code=1)

    def kill(self) -> None:
        """SIGKILL every rank (their loader workers die with them)."""
        for proc in self.procs:
            if proc.pid is not None and proc.is_alive():
                proc.kill()
        for proc in self.procs:
            proc.join(5)
        self._close_pipes()

    def close(self) -> None:
        """Ranks leave the process group and exit; any still there after a few seconds are killed."""
        for conn in self.conns:
            try:
                conn.send(("exit",))
            except (BrokenPipeError, OSError):
                pass
        deadline = time.monotonic() + 10
        for proc in self.procs:
            proc.join(max(deadline - time.monotonic(), 0.1))
        self.kill()

    def _close_pipes(self) -> None:
        for conn in self.conns:
            conn.close()
        self.conns = []
        self.procs = []


def launch(fn, plan: LaunchPlan, *args):
    """`fn(*args)` on every rank of `plan` (FastReID's launch); returns this machine's first rank's result.

    With one process on one machine, `fn` runs here, without a process group.
    """
    if plan.world_size == 1:
        return fn(*args)
    with RankGroup(plan) as group:
        return group.call(_run, fn, args)[0]


def _run(state: dict, fn, args):
    return fn(*args)


# ---------------------------------------------------------------- inside a rank


def rank_main(local: int, plan: LaunchPlan, url: str, conn) -> None:
    """A rank's life: join the process group, then run the calls it is sent until told to exit."""
    processes.die_with_parent()
    if plan.log_path:
        log = open(plan.log_path, "a", buffering=1)
        sys.stdout = sys.stderr = log
    global_rank = plan.machine_rank * plan.processes + local
    os.environ.update({"LOCAL_RANK": str(local), "RANK": str(global_rank), "WORLD_SIZE": str(plan.world_size),
                       "LOCAL_WORLD_SIZE": str(plan.processes)})
    try:
        _join(local, plan, url, global_rank)
    except BaseException as exc:
        _report(conn, exc)
        os._exit(1)
    state: dict = {}
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            os._exit(1)  # the launcher is gone
        if msg[0] == "exit":
            break
        _, fn, args = msg
        try:
            result = fn(state, *args)
        except BaseException as exc:
            _report(conn, exc)
            # Out at once: peers may wait in a collective for this rank, and the launcher stops them.
            os._exit(1)
        conn.send(("ok", result))
    from reidplug.reid.engine.distributed import destroy_process_group

    destroy_process_group()
    sys.stdout.flush()


def _join(local: int, plan: LaunchPlan, url: str, global_rank: int) -> None:
    import torch

    from reidplug.reid.engine.distributed import backend_for, init_process_group

    if plan.device_type == "cuda":
        torch.cuda.set_device(local)
    else:
        cores = os.cpu_count() or 1
        torch.set_num_threads(plan.threads if plan.threads > 0 else max(cores // plan.processes, 1))
    init_process_group(backend_for(plan.device_type), url, plan.world_size, global_rank)


def _report(conn, exc: BaseException) -> None:
    tb = traceback.format_exc()
    exit_code = getattr(exc, "exit_code", 1) if isinstance(exc, UserError) else 1
    if not isinstance(exc, (UserError, KeyboardInterrupt)):
        sys.stderr.write(tb)
        sys.stderr.flush()
    try:
        conn.send(("error", type(exc).__name__, str(exc).strip().splitlines()[0] if str(exc).strip() else "", exit_code, tb))
    except (BrokenPipeError, OSError):
        pass


# ---------------------------------------------------------------- `reidplug train --num-gpus N`


def train_data_parallel(cfg, config, overrides: list, *, resume: bool, echo: bool, num_gpus: int,
                        num_machines: int = 1, machine_rank: int = 0, dist_url: str = "auto") -> dict:
    """`reidplug train` with `num_gpus` ranks here (of `num_machines` machines); rank 0's final evaluation.

    The data sets are read (the synthetic one generated) here, once, before any rank starts,
    so that a bad folder is one line and the ranks only read.
    """
    from reidplug.reid.engine.training import resolve_device
    from reidplug.reid.trainable import ReIDTrainable

    device = resolve_device(cfg.MODEL.DEVICE)
    plan = LaunchPlan(processes=num_gpus, num_machines=num_machines, machine_rank=machine_rank, dist_url=dist_url,
                      device_type=device.type)
    plan.check()
    ReIDTrainable.prepare(cfg)
    if echo:
        where = f" on machine {machine_rank} of {num_machines}" if num_machines > 1 else ""
        backend = "NCCL, one GPU each" if device.type == "cuda" else "gloo on the CPU"
        print(f"starting {num_gpus} training processes{where} ({plan.world_size} in all, {backend}); "
              f"global batch SOLVER.IMS_PER_BATCH={cfg.SOLVER.IMS_PER_BATCH}", flush=True)
    return launch(_train_rank, plan, config, overrides, resume, echo)


def _train_rank(config, overrides, resume, echo):
    from reidplug.reid.api import train
    from reidplug.reid.engine import distributed as D

    return train(config, overrides, resume=resume, echo=echo and D.is_main())
