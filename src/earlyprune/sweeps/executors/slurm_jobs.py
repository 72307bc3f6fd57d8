"""Asking Slurm about a sweep's jobs, and the store's record of which jobs those are.

Every submission appends one line to ``<store>/.slurm/jobs.jsonl`` (array job id, time, runs),
so ``earlyprune sweep status`` can show the jobs' states later from any shell. The ``.slurm``
folder also holds submitit's pickles and the jobs' logs (``logs/<job id>_<task>_log.out|err``);
names starting with a dot are not runs to the store's readers.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from earlyprune.core.errors import SpecError

#: Slurm states of a job that is still queued or running (``squeue``'s long names).
ACTIVE = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED"}


def slurm_folder(store_root: Path) -> Path:
    return store_root / ".slurm"


def call(*argv: str, timeout_s: float = 30.0) -> str:
    """The output of a Slurm command; ``SpecError`` (one line) where none answers."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except FileNotFoundError:
        raise SpecError(
            f"--backend slurm: no Slurm here ({argv[0]} not found); run on a login node of "
            "your cluster, or start a local one with scripts/slurm-local start"
        ) from None
    except subprocess.TimeoutExpired:
        raise SpecError(f"--backend slurm: {argv[0]} did not answer in {timeout_s:.0f} s") from None
    if done.returncode != 0:
        why = (done.stderr or done.stdout).strip().splitlines()
        raise SpecError(
            f"--backend slurm: {argv[0]} failed: {why[-1] if why else done.returncode} "
            "(is slurmctld running? scripts/slurm-local start starts a local one)"
        )
    return done.stdout


def partitions() -> dict[str, list[str]]:
    """Partition name → its node names (the default partition's name without the ``*``)."""
    found: dict[str, list[str]] = {}
    for line in call("sinfo", "-h", "-N", "-o", "%P %N").splitlines():
        name, _, node = line.strip().partition(" ")
        found.setdefault(name.rstrip("*"), []).append(node)
    return found


def default_partition() -> str | None:
    for line in call("sinfo", "-h", "-o", "%P").splitlines():
        if line.strip().endswith("*"):
            return line.strip().rstrip("*")
    return None


def record_submission(store_root: Path, job_id: str, runs: int) -> None:
    folder = slurm_folder(store_root)
    folder.mkdir(parents=True, exist_ok=True)
    line = {
        "job_id": job_id,
        "runs": runs,
        "submitted": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    with open(folder / "jobs.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")


def submissions(store_root: Path) -> list[dict[str, object]]:
    try:
        text = (slurm_folder(store_root) / "jobs.jsonl").read_text(encoding="utf-8")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a full disk: skip it
            continue
    return out


def active_states(job_id: str) -> dict[str, str]:
    """Task → state of the array's tasks still queued or running (``{}`` once all ended)."""
    try:
        out = call("squeue", "-h", "-j", job_id, "-o", "%i %T")
    except SpecError:  # squeue forgets a job some minutes after it ended ("Invalid job id")
        return {}
    states = {}
    for line in out.splitlines():
        task, _, state = line.strip().partition(" ")
        if state in ACTIVE:
            states[task] = state
    return states


def ended_states(job_id: str) -> dict[str, str]:
    """Task → final state from the accounting (``sacct``), or from the job-completion file
    (``sacct -c``) where the cluster keeps no accounting database (as scripts/slurm-local)."""
    argv = ("-n", "-X", "-j", job_id, "-o", "JobID,State", "--parsable2")
    for extra in ((), ("-c",)):
        try:
            out = call("sacct", *extra, *argv)
        except SpecError:
            continue
        states = {}
        for line in out.splitlines():
            task, _, state = line.strip().partition("|")
            if task:
                states[task] = state.split(" ")[0]  # "CANCELLED by 0" → CANCELLED
        if states:
            return states
    return {}


def count_line(states: dict[str, str]) -> str:
    counts = Counter(states.values())
    return ", ".join(f"{n} {state.lower()}" for state, n in sorted(counts.items()))


def status_lines(store_root: Path) -> list[str]:
    """One line per Slurm submission recorded in the store: its tasks' states."""
    lines = []
    for sub in submissions(store_root):
        job_id = str(sub["job_id"])
        try:
            states = {**ended_states(job_id), **active_states(job_id)}
        except SpecError:
            states = {}
        shown = count_line(states) if states else "states unknown (no Slurm answers here)"
        lines.append(
            f"slurm job {job_id} (submitted {sub['submitted']}, {sub['runs']} runs): {shown}"
        )
    return lines
