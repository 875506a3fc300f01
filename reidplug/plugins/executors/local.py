"""Runs trials in local worker processes (spawned, reused across trials; see core/processes.py for their life)."""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import os
import selectors
import sys
import time
import traceback
from pathlib import Path

from reidplug.core import processes
from reidplug.core.executor import ErrorEvent, Executor, LaunchSpec, ResultEvent, SavedEvent
from reidplug.core.hookspecs import hookimpl


class _Slot:
    def __init__(self, index: int, gpu: str):
        self.index = index
        self.gpu = gpu  # CUDA_VISIBLE_DEVICES for its worker
        self.proc: mp.process.BaseProcess | None = None
        self.conn = None
        self.lifeline = None  # write end of the worker's lifeline; never written, closed when we go
        self.trial_id: int | None = None

    def kill(self) -> None:
        """SIGKILL the worker and every process it started (its process group)."""
        if self.proc is not None and self.proc.pid is not None:
            if self.proc.is_alive():
                self.proc.kill()
            processes.kill_group(self.proc.pid)


class LocalExecutor(Executor):
    """A fixed set of slots on this machine, one worker process each.

    A worker lives across trials, so a trial's start costs two pipe messages,
    not a process start. GPUs are handed out through CUDA_VISIBLE_DEVICES: with
    GPU: 0.5 per trial, two slots share each visible GPU. Trials that ask for no
    GPU see none, so that they cannot grab one by accident.
    """

    OPTIONS = {"START_METHOD": "spawn", "GPUS": -1}

    def __init__(self, experiment=None, *, max_concurrent=1, resources=None, experiment_dir=".",
                 start_method="spawn", gpus=-1):
        super().__init__(experiment, max_concurrent=max_concurrent, resources=resources, experiment_dir=experiment_dir)
        self.ctx = mp.get_context(start_method)
        gpu = float(self.resources.get("gpu", 0) or 0)
        self.slots = [_Slot(i, gpu_assignment(i, gpu, gpus)) for i in range(self._num_slots(gpu, gpus))]
        self._by_trial: dict[int, _Slot] = {}
        self._selector: selectors.BaseSelector | None = None

    @classmethod
    def preflight(cls, experiment) -> None:
        """Before the experiment writes anything: trials that ask for a GPU need one to be visible."""
        key = "TUNE.RESOURCES_PER_TRIAL.GPU"
        if float(experiment.cfg.TUNE.RESOURCES_PER_TRIAL.GPU or 0) <= 0:
            return
        gpus = experiment.options("local", cls).get("gpus", -1)
        if (gpus if gpus >= 0 else count_gpus()) == 0:
            from reidplug.core.errors import ConfigError

            raise ConfigError("trials ask for a GPU but none is visible (set it to 0 to train on the CPU)",
                              file=experiment._origin(key), key=key)

    def _num_slots(self, gpu: float, gpus: int) -> int:
        if gpu <= 0:
            return self.max_concurrent
        available = gpus if gpus >= 0 else count_gpus()
        if available == 0:
            from reidplug.core.errors import ConfigError

            raise ConfigError("trials ask for a GPU but none is visible", key="TUNE.RESOURCES_PER_TRIAL.GPU")
        per_gpu = max(int(math.floor(1.0 / gpu + 1e-9)), 1) if gpu < 1 else 1
        capacity = available * per_gpu if gpu <= 1 else available // math.ceil(gpu)
        return max(min(self.max_concurrent, capacity), 1)

    # -- slots
    def free_slots(self) -> int:
        return sum(1 for s in self.slots if s.trial_id is None)

    def running(self) -> list[int]:
        return list(self._by_trial)

    def _worker(self, slot: _Slot):
        if slot.proc is None or not slot.proc.is_alive():
            self._forget(slot)
            for end in (slot.conn, slot.lifeline):
                if end is not None:
                    end.close()
            parent, child = self.ctx.Pipe()
            lifeline_in, lifeline_out = self.ctx.Pipe(duplex=False)
            env = {"CUDA_VISIBLE_DEVICES": slot.gpu, "CPU_THREADS": str(max(int(self.resources.get("cpu", 1)), 1))}
            # Not daemonic: a trial starts data-loader workers, which a daemon may not.
            proc = self.ctx.Process(target=worker_main, args=(child, env, lifeline_in), daemon=False,
                                    name=f"reidplug-worker-{slot.index}")
            with processes.interrupts_held():
                proc.start()
            child.close()
            lifeline_in.close()
            slot.proc, slot.conn, slot.lifeline = proc, parent, lifeline_out
        return slot

    # -- commands
    def launch(self, spec: LaunchSpec, save_to: str | None = None) -> None:
        slot = next(s for s in self.slots if s.trial_id is None)
        self._worker(slot)
        slot.trial_id = spec.trial_id
        self._by_trial[spec.trial_id] = slot
        self._send(slot, ("launch", spec, save_to))

    def step(self, trial_id: int, save_to: str | None = None) -> None:
        self._send(self._by_trial[trial_id], ("step", save_to))

    def save(self, trial_id: int, path: str) -> None:
        self._send(self._by_trial[trial_id], ("save", path))

    def release(self, trial_id: int) -> None:
        slot = self._by_trial.pop(trial_id, None)
        if slot is None:
            return
        slot.trial_id = None
        self._send(slot, ("release",))

    def _send(self, slot: _Slot, message) -> None:
        try:
            slot.conn.send(message)
        except (BrokenPipeError, OSError, AttributeError):
            pass  # a dead worker shows up in poll() through its sentinel

    # -- events
    def poll(self, timeout: float | None = None) -> list:
        busy = [s for s in self.slots if s.trial_id is not None and s.proc is not None]
        if not busy:
            if timeout:
                time.sleep(min(timeout, 0.05))
            return []
        # One selector for the life of the workers: building one per call (as
        # multiprocessing.connection.wait does) is a measurable part of a short trial.
        if self._selector is None:
            self._selector = selectors.DefaultSelector()
        watched = self._selector.get_map()
        for s in busy:
            if s.conn.fileno() not in watched:
                self._selector.register(s.conn, selectors.EVENT_READ, s)
                self._selector.register(s.proc.sentinel, selectors.EVENT_READ, s)
        events = []
        seen = set()
        for key, _ in self._selector.select(timeout):
            slot = key.data
            if slot.index in seen:
                continue
            seen.add(slot.index)
            events.extend(self._drain(slot))
        return events

    def _forget(self, slot: _Slot) -> None:
        """Stop watching a worker that is gone (its sentinel would stay readable forever)."""
        if self._selector is None or slot.conn is None:
            return
        for obj in (slot.conn, slot.proc.sentinel if slot.proc is not None else None):
            if obj is not None:
                with contextlib.suppress(KeyError, ValueError, OSError):
                    self._selector.unregister(obj)

    def _drain(self, slot: _Slot) -> list:
        events = []
        try:
            while slot.conn.poll():
                msg = slot.conn.recv()
                kind = msg[0]
                # A released trial's last message can still be in the pipe: drop it.
                if kind == "result":
                    _, tid, step, metrics, checkpoint, elapsed = msg
                    if tid == slot.trial_id:
                        events.append(ResultEvent(tid, metrics, checkpoint, elapsed, step=step))
                elif kind == "saved":
                    if msg[1] == slot.trial_id:
                        events.append(SavedEvent(msg[1], msg[2]))
                elif kind == "error":
                    _, tid, message, tb = msg
                    if self._by_trial.get(tid) is slot:
                        self._by_trial.pop(tid)
                        slot.trial_id = None
                    events.append(ErrorEvent(tid, message, tb, fault=False))
        except (EOFError, OSError):
            pass
        if slot.proc is not None and not slot.proc.is_alive():
            self._forget(slot)
            if slot.trial_id is None:
                slot.proc = None  # an idle worker died: the next launch starts a new one
                return events
            tid = slot.trial_id
            code = slot.proc.exitcode
            slot.kill()  # whatever it started (loader workers) goes with it
            self._by_trial.pop(tid, None)
            slot.trial_id = None
            slot.proc = None
            why = f"killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
            events.append(ErrorEvent(tid, f"worker process {why}", "", fault=True))
        return events

    def kill_worker(self, trial_id: int) -> None:
        """Kill the worker running `trial_id` (tests and fault drills)."""
        slot = self._by_trial.get(trial_id)
        if slot is not None:
            slot.kill()

    def abort(self) -> None:
        for slot in self.slots:
            slot.kill()
        self.shutdown()

    def shutdown(self) -> None:
        """Idle workers exit; busy ones are killed with their children (the journal says where to resume)."""
        if self._selector is not None:
            self._selector.close()
            self._selector = None
        for slot in self.slots:
            if slot.proc is None:
                continue
            if slot.trial_id is not None:
                slot.kill()  # mid-step: waiting could take an epoch, and the step is redone on resume
            else:
                self._send(slot, ("exit",))
        deadline = time.time() + 5
        for slot in self.slots:
            if slot.proc is None:
                continue
            slot.proc.join(max(deadline - time.time(), 0.1))
            if slot.proc.is_alive():
                slot.kill()
                slot.proc.join(1)
            else:
                slot.kill()  # the worker is gone; anything it left running is not
            for end in (slot.conn, slot.lifeline):
                if end is not None:
                    end.close()
            slot.proc = slot.conn = slot.lifeline = None
            slot.trial_id = None
        self._by_trial.clear()


def gpu_assignment(index: int, gpu: float, gpus: int) -> str:
    """The CUDA_VISIBLE_DEVICES of slot `index`."""
    if gpu <= 0:
        return ""
    available = gpus if gpus >= 0 else count_gpus()
    if available <= 0:
        return ""
    if gpu >= 1:
        need = math.ceil(gpu)
        first = (index * need) % available
        return ",".join(str((first + k) % available) for k in range(need))
    per_gpu = max(int(math.floor(1.0 / gpu + 1e-9)), 1)
    return str((index // per_gpu) % available)


def count_gpus() -> int:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip()])
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # no torch or no driver: no GPUs
        return 0


# ---------------------------------------------------------------- the worker


def worker_main(conn, env: dict, lifeline=None) -> None:
    """Serve trials one after another until told to exit, or until the experiment process is gone."""
    processes.worker_prelude(lifeline)
    os.environ["CUDA_VISIBLE_DEVICES"] = env["CUDA_VISIBLE_DEVICES"]
    threads = env.get("CPU_THREADS", "1")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, threads)
    runner = TrialRunner(conn, int(threads))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        if msg[0] == "exit":
            runner.release()
            return
        try:
            runner.handle(msg)
        except (BrokenPipeError, EOFError, ConnectionResetError):
            return  # the experiment process is gone (killed): nobody to report to


class TrialRunner:
    def __init__(self, conn, threads: int):
        self.conn = conn
        self.threads = threads
        self.trainable = None
        self.spec: LaunchSpec | None = None
        self.step_no = 0
        self._log = None
        self._saved_streams = None

    def handle(self, msg) -> None:
        kind = msg[0]
        if kind == "release":
            self.release()
            return
        if self.spec is None and kind != "launch":
            return  # a command for a trial that already failed
        tid = msg[1].trial_id if kind == "launch" else self.spec.trial_id
        try:
            if kind == "launch":
                self.release()
                self._start(msg[1])
                self._step(msg[2])
            elif kind == "step":
                self._step(msg[1])
            elif kind == "save":
                self._save(msg[1])
                self.conn.send(("saved", tid, msg[1]))
        except BaseException as exc:  # reported to the loop, which marks the trial ERROR
            tb = traceback.format_exc()
            try:
                sys.stderr.write(tb)
            finally:
                self.release()
            self.conn.send(("error", tid, f"{type(exc).__name__}: {exc}", tb))

    def _start(self, spec: LaunchSpec) -> None:
        from reidplug.core.trainable import as_trainable, can_checkpoint, resolve_trainable

        self.spec = spec
        self._redirect(Path(spec.context.trial_dir) / "log.txt")
        factory = resolve_trainable(spec.trainable)
        if "torch" in sys.modules:  # before the trainable builds anything
            _limit_torch_threads(self.threads)
        self.trainable = as_trainable(factory)
        self.checkpointable = can_checkpoint(self.trainable)
        self.trainable.setup(spec.params, spec.context)
        if spec.context.restore_from:
            self.trainable.load(spec.context.restore_from)
        self.step_no = spec.context.start_step

    def _step(self, save_to: str | None) -> None:
        t0 = time.perf_counter()
        metrics = self.trainable.step()
        self.step_no += 1
        checkpoint = None
        if save_to and self.checkpointable:
            self._save(save_to)
            checkpoint = save_to
        self.conn.send(("result", self.spec.trial_id, self.step_no, metrics, checkpoint, time.perf_counter() - t0))

    def _save(self, path: str) -> None:
        from reidplug.core import checkpoints

        staging = checkpoints.staging_dir(path)
        staging.mkdir(parents=True, exist_ok=True)
        self.trainable.save(str(staging))
        checkpoints.finalize(staging, path)

    def release(self) -> None:
        if self.trainable is not None:
            try:
                self.trainable.cleanup()
            finally:
                self.trainable = None
        self.spec = None
        self._restore_streams()

    def _redirect(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(path, "a", buffering=1)
        self._saved_streams = (sys.stdout, sys.stderr)
        sys.stdout = sys.stderr = self._log

    def _restore_streams(self) -> None:
        if self._saved_streams is not None:
            sys.stdout, sys.stderr = self._saved_streams
            self._saved_streams = None
        if self._log is not None:
            self._log.close()
            self._log = None


def _limit_torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(max(n, 1))


@hookimpl
def register_executors(register):
    register("local", LocalExecutor, description="worker processes on this machine")
