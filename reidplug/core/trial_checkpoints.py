"""A search's trial checkpoints: when to save, recording a save, finding an intact one,
PBT's copies, and pruning to TUNE.KEEP_CHECKPOINTS.

Every path recorded is relative to the experiment's storage folder and used only
when it stays inside it (`retention.py`).
"""

from __future__ import annotations

import json
import os
import time

from reidplug.core import checkpoints as ckpt
from reidplug.core import results
from reidplug.core.errors import UserError
from reidplug.core.retention import staging_leftovers
from reidplug.core.trial import Trial, TrialStatus

_ACTIVE = (TrialStatus.PENDING, TrialStatus.RUNNING, TrialStatus.PAUSED)


def path_for(exp, trial: Trial, step: int) -> str:
    """Where the trial's checkpoint after `step` is saved."""
    return str(exp.storage / trial.name / "checkpoints" / f"step_{step:05d}")


def wants(exp, trial: Trial, step: int) -> bool:
    """Save after `step`? Every CHECKPOINT_FREQ steps, whenever the scheduler asks, and
    after a Re-ID trial's last step (the trained model). Other trainables are not saved
    after their last step: a finished trial never resumes."""
    if exp.scheduler.wants_checkpoint(trial, step):
        return True
    if exp.max_steps and step >= exp.max_steps:
        return exp.is_reid
    freq = exp.cfg.TUNE.CHECKPOINT_FREQ
    return bool(freq) and step % freq == 0


def add(exp, trial: Trial, step: int, path: str) -> None:
    rel = os.path.relpath(path, exp.storage)
    if exp._retention.path(rel) is None:
        raise UserError(f"{path}: a checkpoint outside the experiment's folder {exp.storage}")
    trial.checkpoint, trial.checkpoint_step = rel, step
    with exp.journal.transaction("checkpoint"):
        exp.journal.add_checkpoint(trial.id, step, rel)
        exp.journal.save_trial(trial)
        exp._retention.track(trial.id, rel)
        prune(exp, trial)


def newest_intact(exp, trial: Trial) -> str | None:
    """The newest intact checkpoint of the trial (absolute path); corrupt ones are logged and skipped.

    The trial's current checkpoint comes first: after a PBT exploit it is the donor's
    copy, which must win over the trial's own later steps.
    """
    rows = exp.journal.checkpoints_newest_first(trial.id)
    rows.sort(key=lambda row: row[1] != trial.checkpoint)  # stable: the rest stay newest first
    for step, rel in rows:
        path = exp._retention.path(rel)
        problem = "outside the experiment folder" if path is None else ckpt.verify(path)
        if problem is None:
            trial.checkpoint, trial.checkpoint_step = rel, step
            return str(exp.storage / rel)
        with exp.journal.transaction("corrupt"):
            exp.journal.set_checkpoint_status(rel, "corrupt" if path is not None else "refused")
            exp.journal.add_event("corrupt_checkpoint", trial.id, path=rel, problem=problem)
        exp._retention.forget(trial.id, rel)
    trial.checkpoint, trial.checkpoint_step = None, 0
    return None


def copy_from(exp, donor: Trial, recipient: Trial) -> str | None:
    """Give `recipient` its own copy of the donor's newest checkpoint (PBT exploit)."""
    source = newest_intact(exp, donor)
    if source is None:
        return None
    dest = str(exp.storage / recipient.name / "checkpoints" / f"step_{donor.checkpoint_step:05d}_from_{donor.id:04d}")
    ckpt.link_copy(source, dest)
    rel = os.path.relpath(dest, exp.storage)
    with exp.journal.transaction("exploit"):
        exp.journal.add_checkpoint(recipient.id, donor.checkpoint_step, rel)
        exp.journal.add_event("exploit_copy", recipient.id, donor=donor.id, source=donor.checkpoint, path=rel)
        exp._retention.track(recipient.id, rel)
    recipient.checkpoint, recipient.checkpoint_step = rel, donor.checkpoint_step
    recipient.restore_from = dest
    return dest


def exploit(exp, recipient: Trial, donor: Trial, params: dict, **info) -> bool:
    """PBT's exploit: `recipient` continues from a copy of the donor's checkpoint with `params`.

    The copy holds everything the donor saved (weights, optimizer, LR schedule,
    AMP scaler, epoch). The recipient's step becomes the donor's. Returns False
    (and changes nothing) when the donor has no intact checkpoint.
    """
    dest = copy_from(exp, donor, recipient)
    if dest is None:
        return False
    old = dict(recipient.params)
    recipient.params = dict(params)
    recipient.parent = donor.id
    recipient.step = donor.checkpoint_step
    recipient.restore_from = dest
    entry = {"time": round(time.time(), 3), "trial_id": recipient.id, "step": recipient.step, "donor": donor.id,
             "donor_step": donor.checkpoint_step, "old_params": old, "new_params": recipient.params, **info}
    lineage = exp.dir / "pbt_lineage.jsonl"
    with exp.journal.transaction("exploit"):
        exp.journal.add_event("exploit", recipient.id, **{k: v for k, v in entry.items() if k != "trial_id"})
        exp.journal.save_trial(recipient)
        # Files that describe the exploit follow its commit (and are rebuilt on resume).
        exp.journal.after_commit(lambda: results.append_line(lineage, json.dumps(entry, default=str) + "\n"))
        exp.journal.after_commit(lambda: results.write_trial_config(exp, recipient))
    return True


def needed(exp) -> set[str]:
    """Checkpoints no pruning may remove: the best trial's and those a scheduler pins."""
    needed = set()
    best = exp.best_trial()
    if best is not None and best.checkpoint:
        needed.add(best.checkpoint)
    pinned = getattr(exp.scheduler, "pinned_checkpoints", None)
    if pinned is not None:
        needed |= set(pinned())
    return needed


def prune(exp, trial: Trial) -> None:
    """Keep the last KEEP_CHECKPOINTS of an active trial, the best trial's newest, and any a scheduler pins.

    The journal stops listing a checkpoint in the caller's transaction; its folder goes
    only once that has committed. A crash in between leaves a folder nobody lists,
    which the next resume removes.
    """
    if not exp._retention.live:
        return
    keep_last = max(exp.cfg.TUNE.KEEP_CHECKPOINTS, 1)
    doomed = exp._retention.doomed(trial.id, exp.trials, needed(exp), keep_last, _ACTIVE)
    if not doomed:
        return
    with exp.journal.transaction("prune"):
        for tid, rel in doomed:
            exp.journal.set_checkpoint_status(rel, "deleted")
            exp._retention.forget(tid, rel)
            owner = exp.trials.get(tid)
            if owner is not None and owner.checkpoint == rel:
                owner.checkpoint = None
                exp.journal.save_trial(owner)
            exp.journal.after_commit(lambda rel=rel: exp._retention.remove(rel))


def drop_staging(exp, trial: Trial) -> None:
    """A dead worker's half-written saves of `trial`: nothing will ever finish them."""
    for path in staging_leftovers(exp.storage / trial.name / "checkpoints"):
        if exp._retention.path(os.path.relpath(path, exp.storage)) is not None:
            ckpt.remove(path)


def unusable(exp, path: str) -> bool:
    """Whether `path` is outside the storage folder or fails its manifest."""
    inside = exp._retention.path(os.path.relpath(path, exp.storage))
    return inside is None or ckpt.verify(inside) is not None


