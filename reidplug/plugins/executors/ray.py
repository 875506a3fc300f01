"""Runs trials as Ray actors, on this machine or across a Ray cluster."""

from __future__ import annotations

import logging
import math
import os
import sys
import time
import uuid
from pathlib import Path

from reidplug.core.errors import ConfigError
from reidplug.core.executor import ErrorEvent, Executor, LaunchSpec, ResultEvent, SavedEvent
from reidplug.core.hookspecs import hookimpl

INSTALL_HINT = "the ray executor needs Ray: pip install 'reidplug[ray]'"
# How often the number of slots follows nodes joining or leaving the cluster.
CAPACITY_REFRESH_S = 10.0
# At shutdown, how long trainables get to clean up before their actors are killed.
RELEASE_GRACE_S = 5.0


def import_ray(experiment=None):
    """The ray module, or a one-line ConfigError at TUNE.EXECUTOR when Ray is not installed."""
    try:
        import ray
    except ImportError:
        raise ConfigError(INSTALL_HINT, file=_origin(experiment, "TUNE.EXECUTOR"), key="TUNE.EXECUTOR") from None
    return ray


def _origin(experiment, key: str) -> str | None:
    origins = getattr(experiment, "origins", None)
    return origins.of(key) if origins is not None else None


def check_address(address: str, experiment=None) -> str:
    """ADDRESS as given, after checking that it is one of the forms Ray accepts."""
    address = (address or "local").strip()
    if address in ("local", "auto") or address.startswith("ray://") or _is_host_port(address):
        return address
    raise ConfigError(
        f"expected 'local', 'auto', 'ray://HOST:PORT' or 'HOST:PORT', got {address!r}",
        file=_origin(experiment, "TUNE.RAY.ADDRESS"), key="TUNE.RAY.ADDRESS",
    )


def _is_host_port(text: str) -> bool:
    host, _, port = text.rpartition(":")
    return bool(host) and port.isdigit()


def connect(address: str = "local", *, num_cpus: float = -1, num_gpus: float = -1, runtime_env: dict | None = None,
            log_to_driver: bool = False) -> bool:
    """Connect this process to Ray (starting a local instance for 'local'); True if this call did so.

    A process that already called `ray.init` keeps its connection: an application that
    embeds the Tuner decides where its trials run.
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    kwargs: dict = {"log_to_driver": log_to_driver, "logging_level": logging.WARNING}
    if runtime_env:
        kwargs["runtime_env"] = dict(runtime_env)
    if address == "local":
        kwargs["include_dashboard"] = False
        if num_cpus is not None and num_cpus >= 0:
            kwargs["num_cpus"] = int(num_cpus)
        if num_gpus is not None and num_gpus >= 0:
            kwargs["num_gpus"] = int(num_gpus)
    else:
        kwargs["address"] = address
    ray.init(**kwargs)
    return True


class _Run:
    """One trial on one actor, from its launch to its release."""

    __slots__ = ("trial_id", "actor")

    def __init__(self, trial_id: int, actor):
        self.trial_id = trial_id
        self.actor = actor


class RayExecutor(Executor):
    """Each trial runs in a Ray actor holding the trial's CPUs and GPUs, reserved whole on one node
    by a placement group of its own (a multi-GPU trial runs DDP there).

    Actors outlive their trials and serve the next one, so a trial's start costs
    one actor call, not a process start. Results come back through the actor
    calls' ObjectRefs, collected with `ray.wait`, so the loop never blocks on one
    trial. Checkpoints are written by the actor straight into the paths the loop
    gives, which must be on storage that every node and the driver see.
    """

    OPTIONS = {
        # "local": start Ray on this machine; "auto": join the running cluster;
        # "ray://HOST:PORT": Ray Client; "HOST:PORT": the head's GCS address.
        "ADDRESS": "local",
        # For ADDRESS local: what the local instance offers (-1: this machine's).
        "NUM_CPUS": -1,
        "NUM_GPUS": -1,
        # Passed to ray.init, e.g. {working_dir: ., py_modules: [...], pip: [...], env_vars: {...}}.
        "RUNTIME_ENV": {},
        # Forward the actors' stdout/stderr outside trials (trial output goes to the trial's log.txt).
        "LOG_TO_DRIVER": False,
        # On a cluster of several nodes, check at start that every node sees the experiment folder.
        "CHECK_SHARED_STORAGE": True,
    }

    def __init__(self, experiment=None, *, max_concurrent=1, resources=None, experiment_dir=".",
                 address="local", num_cpus=-1, num_gpus=-1, runtime_env=None, log_to_driver=False,
                 check_shared_storage=True):
        super().__init__(experiment, max_concurrent=max_concurrent, resources=resources, experiment_dir=experiment_dir)
        import_ray(experiment)
        self.address = check_address(address, experiment)
        self.num_cpus, self.num_gpus = num_cpus, num_gpus
        self.runtime_env = dict(runtime_env or {})
        self.log_to_driver = log_to_driver
        self.check_shared_storage = check_shared_storage
        self.cpu = float(self.resources.get("cpu", 1) or 0)
        self.gpu = float(self.resources.get("gpu", 0) or 0)
        self._ray = None
        self._owns_ray = False
        self._actor_cls = None
        self._actor_options: dict = {}
        self._groups: dict = {}  # actor -> the placement group that holds its trial's resources
        self._capacity = max_concurrent
        self._capacity_at = 0.0
        self._idle: list = []  # live actors without a trial
        self._unreleased: list = []  # idle actors whose trainable has not been ended yet
        self._runs: dict[int, _Run] = {}  # trial id -> its run
        self._pending: dict = {}  # ObjectRef -> the run that asked for it
        self._dead: set = set()  # actors known to be dead or killed

    @classmethod
    def preflight(cls, experiment=None, *, address: str | None = None) -> None:
        """Everything that can be checked before the experiment writes anything: Ray installed, ADDRESS."""
        import_ray(experiment)
        if address is None and experiment is not None and hasattr(experiment, "options"):
            address = experiment.options("ray", cls).get("address", "local")
        check_address(address or "local", experiment)

    # -- lifecycle
    def start(self) -> None:
        self._ray = import_ray(self.experiment)
        try:
            self._owns_ray = connect(self.address, num_cpus=self.num_cpus, num_gpus=self.num_gpus,
                                     runtime_env=self.runtime_env, log_to_driver=self.log_to_driver)
        except ConnectionError as exc:
            raise ConfigError(f"cannot connect to Ray at {self.address!r}: {describe(exc)}",
                              file=_origin(self.experiment, "TUNE.RAY.ADDRESS"), key="TUNE.RAY.ADDRESS") from None
        from reidplug.plugins.executors.ray_actor import TrialActor

        options = {"num_cpus": self.cpu, "max_restarts": 0, "max_task_retries": 0}
        if self.gpu > 0:
            options["num_gpus"] = self.gpu
        self._actor_cls, self._actor_options = self._ray.remote(TrialActor), options
        self._refresh_capacity(force=True)
        if self._capacity == 0:
            self._fail_on_no_room()
        if self.check_shared_storage and sum(1 for n in self._ray.nodes() if n.get("Alive")) > 1:
            self._check_storage()

    def _check_storage(self) -> None:
        storage = getattr(self.experiment, "storage", None)
        folder = Path(storage or self.experiment_dir).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".shared-{uuid.uuid4().hex}"
        probe.touch()
        try:
            blind = nodes_not_seeing(self._ray, str(probe))
        finally:
            probe.unlink(missing_ok=True)
        if blind:
            raise ConfigError(
                f"Ray nodes {', '.join(blind)} do not see {folder}: checkpoints written there would be lost; "
                "set TUNE.STORAGE (or OUTPUT_DIR) to storage that every node mounts at the same path (NFS or similar)",
                file=_origin(self.experiment, "TUNE.STORAGE"), key="TUNE.STORAGE",
            )

    def shutdown(self) -> None:
        if self._ray is None:
            return
        ray = self._ray
        actors = self._idle + [r.actor for r in self._runs.values()]
        try:
            waits = [a.handle.remote(("release",)) for a in actors if a not in self._dead]
            if waits:
                ray.wait(waits, num_returns=len(waits), timeout=RELEASE_GRACE_S)
            for actor in actors:
                ray.kill(actor, no_restart=True)
        finally:
            for actor in list(self._groups):
                self._remove_group(actor)
            self._idle, self._unreleased, self._runs, self._pending = [], [], {}, {}
            if self._owns_ray:
                ray.shutdown()
                self._owns_ray = False
            self._ray = None

    # -- slots
    def _refresh_capacity(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._capacity_at < CAPACITY_REFRESH_S:
            return
        self._capacity_at = now
        self._capacity = min(self.max_concurrent, cluster_capacity(self._ray.nodes(), self.cpu, self.gpu))

    def _fail_on_no_room(self) -> None:
        need = f"CPU {self.cpu:g}" + (f", GPU {self.gpu:g}" if self.gpu else "")
        nodes = [n.get("Resources", {}) for n in self._ray.nodes() if n.get("Alive")]
        have = "; ".join(f"CPU {r.get('CPU', 0):g}, GPU {r.get('GPU', 0):g}" for r in nodes) or "no live nodes"
        raise ConfigError(f"no node of the Ray cluster can hold one trial ({need}); nodes: {have}",
                          file=_origin(self.experiment, "TUNE.RESOURCES_PER_TRIAL"), key="TUNE.RESOURCES_PER_TRIAL")

    def free_slots(self) -> int:
        self._refresh_capacity()
        return max(self._capacity - len(self._runs), 0)

    def running(self) -> list[int]:
        return list(self._runs)

    # -- commands
    def launch(self, spec: LaunchSpec, save_to: str | None = None) -> None:
        actor = self._idle.pop() if self._idle else self._new_actor()
        if actor in self._unreleased:
            self._unreleased.remove(actor)  # "launch" ends the previous trainable first: one call saved
        run = _Run(spec.trial_id, actor)
        self._runs[spec.trial_id] = run
        self._call(run, ("launch", spec, save_to))

    def step(self, trial_id: int, save_to: str | None = None) -> None:
        self._call(self._runs[trial_id], ("step", save_to))

    def save(self, trial_id: int, path: str) -> None:
        self._call(self._runs[trial_id], ("save", path))

    def release(self, trial_id: int) -> None:
        run = self._runs.pop(trial_id, None)
        if run is None:
            return
        # The loop usually launches the next trial on this actor right away; the release is sent
        # at the next poll() only if it did not. The actor finishes what it is doing first, and
        # whatever the released trial still reports is dropped in poll().
        self._idle.append(run.actor)
        self._unreleased.append(run.actor)

    def _flush_releases(self) -> None:
        for actor in self._unreleased:
            actor.handle.remote(("release",))
        self._unreleased = []

    def _call(self, run: _Run, message) -> None:
        self._pending[run.actor.handle.remote(message)] = run

    def _new_actor(self):
        group = self._placement_group()
        options = dict(self._actor_options)
        if group is not None:
            from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

            # Ray tasks the trainable starts itself run inside the trial's reservation too.
            options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                group, placement_group_bundle_index=0, placement_group_capture_child_tasks=True)
        actor = self._actor_cls.options(**options).remote(self._actor_setup())
        if group is not None:
            self._groups[actor] = group
        return actor

    def _placement_group(self):
        """A placement group of one bundle holding the whole trial: its CPUs and GPUs, on one node.

        A trial with several GPUs (or TUNE.RESOURCES_PER_TRIAL.CPU_PROCESSES > 1) starts its
        data-parallel processes itself, on the actor's node, so its resources must be reserved
        there together: a trial never starts holding part of what it needs. None for a trial
        that asks for nothing (Ray refuses empty bundles).
        """
        from ray.util.placement_group import placement_group

        bundle = {"CPU": self.cpu} if self.cpu > 0 else {}
        if self.gpu > 0:
            bundle["GPU"] = self.gpu
        return placement_group([bundle], strategy="STRICT_PACK") if bundle else None

    def _remove_group(self, actor) -> None:
        group = self._groups.pop(actor, None)
        if group is None:
            return
        from ray.util.placement_group import remove_placement_group

        try:
            remove_placement_group(group)
        except Exception:  # noqa: BLE001 - the cluster is already gone
            pass

    def _actor_setup(self) -> dict:
        env = {k: v for k, v in os.environ.items() if k.startswith("REIDPLUG_")}
        if self.gpu <= 0:
            env["CUDA_VISIBLE_DEVICES"] = ""  # a trial that asks for no GPU must not grab one by accident
        setup = {"env": env, "sys_path": list(sys.path), "threads": max(int(self.cpu), 1)}
        if "working_dir" not in self.runtime_env:
            setup["cwd"] = os.getcwd()  # relative paths in configs mean the same on every node
        return setup

    # -- events
    def poll(self, timeout: float | None = None) -> list:
        self._flush_releases()
        if not self._pending:
            if timeout:
                time.sleep(min(timeout, 0.05))
            return []
        ray = self._ray
        refs = list(self._pending)
        ready, rest = ray.wait(refs, num_returns=1, timeout=timeout)
        if ready and rest:
            more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
            ready += more
        events: list = []
        for ref in ready:
            run = self._pending.pop(ref)
            events.extend(self._collect(ref, run))
        return events

    def _collect(self, ref, run: _Run) -> list:
        ray = self._ray
        current = self._runs.get(run.trial_id) is run
        try:
            messages = ray.get(ref)
        except ray.exceptions.RayError as exc:
            # Trainable errors come back as messages, so an exception here is the actor's own:
            # its process or node is gone (SIGKILL, out of memory, node lost) or it broke.
            self._forget_actor(run.actor)
            if not current:
                return []
            self._runs.pop(run.trial_id, None)
            fault = not isinstance(exc, ray.exceptions.RayTaskError)
            what = "Ray actor died" if fault else "Ray actor failed"
            return [ErrorEvent(run.trial_id, f"{what}: {describe(exc)}", str(exc), fault=fault)]
        if not current:
            return []  # a released trial's last report
        # Each call serves one trial, so the run names it; the runner's own id can be the previous
        # trial's when a launch replaces a trainable that was not released first.
        tid = run.trial_id
        events: list = []
        for msg in messages:
            kind = msg[0]
            if kind == "result":
                _, _, step, metrics, checkpoint, elapsed = msg
                events.append(ResultEvent(tid, metrics, checkpoint, elapsed, step=step))
            elif kind == "saved":
                events.append(SavedEvent(tid, msg[2]))
            elif kind == "error":
                _, _, message, tb = msg
                # The runner already ended the trainable; the actor is free for another trial.
                self._runs.pop(tid, None)
                self._idle.append(run.actor)
                events.append(ErrorEvent(tid, message, tb, fault=False))
        return events

    def _forget_actor(self, actor) -> None:
        if actor in self._dead:
            return
        self._dead.add(actor)
        self._idle = [a for a in self._idle if a != actor]
        self._unreleased = [a for a in self._unreleased if a != actor]
        try:
            self._ray.kill(actor, no_restart=True)
        except Exception:  # already gone with its node
            pass
        self._remove_group(actor)

    def kill_worker(self, trial_id: int) -> None:
        """Kill the actor running `trial_id` (tests and fault drills)."""
        run = self._runs.get(trial_id)
        if run is not None:
            self._ray.kill(run.actor, no_restart=True)


def cluster_capacity(nodes: list[dict], cpu: float, gpu: float) -> int:
    """How many trials of `cpu` CPUs and `gpu` GPUs fit on the live nodes, one node per trial."""
    total = 0
    for node in nodes:
        if not node.get("Alive", False):
            continue
        have = node.get("Resources", {})
        fits = []
        if cpu > 0:
            fits.append(math.floor(have.get("CPU", 0) / cpu + 1e-9))
        if gpu > 0:
            fits.append(math.floor(have.get("GPU", 0) / gpu + 1e-9))
        total += min(fits) if fits else 1_000_000
    return total


def nodes_not_seeing(ray, path: str, timeout: float = 60.0) -> list[str]:
    """Addresses of the live Ray nodes on which `path` does not exist (nodes that do not answer are left out)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    exists = ray.remote(num_cpus=0, max_retries=0)(_exists)
    asked = {}
    for node in ray.nodes():
        if node.get("Alive"):
            where = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
            asked[exists.options(scheduling_strategy=where).remote(path)] = node.get("NodeManagerAddress", node["NodeID"])
    ready, _ = ray.wait(list(asked), num_returns=len(asked), timeout=timeout)
    return sorted(asked[ref] for ref in ready if not ray.get(ref))


def _exists(path: str) -> bool:
    return os.path.exists(path)


def describe(exc: BaseException) -> str:
    """Ray's multi-line error as one line: the exception, where the actor ran, and why it is gone."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    fields = dict(line.strip().split(": ", 1) for line in lines[1:] if line.startswith("\t") and ": " in line)
    where = f" pid {fields['pid']}" if "pid" in fields else ""
    where += f" on {fields['ip']}" if "ip" in fields else ""
    why = next((line.strip() for line in lines[1:] if not line.startswith("\t")), lines[0] if lines else "")
    # Ray appends long generic advice after the exit detail; the exit type is what matters.
    why = why.split(" Worker exit detail:")[0]
    return f"{type(exc).__name__}{where}: {why[:300]}"


@hookimpl
def register_executors(register):
    register("ray", RayExecutor, description="Ray actors on this machine or a Ray cluster")
