"""Logs a cluster user can read: one line per epoch of a run, one line per finished sweep run.

On a terminal, progress bars (tqdm, on stderr) show how far things are. In a batch job stdout
is a file and a bar shows nothing useful, so there ``Log`` writes plain lines instead::

    3f2a9c1b0d4e snip 90.0 %  epoch 2/3  step 48/72  loss 0.6123  test 78.40 %  1.2 s
    [17/219] 3f2a9c1b0d4e snip 90.0 % seed 0: 79.80 % in 1.2 s

``fmt="json"`` writes one JSON object per line instead (always, terminal or not), every line
of the command included, for tools. ``quiet=True`` drops the progress lines and the bars; the
command's one-line result stays. Lines are flushed at once, so a log file is current.
``tensorboard=DIR`` also writes each run's epochs as TensorBoard scalars under ``DIR/<run_id>``
(needs the optional ``tensorboard`` package).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from tqdm import tqdm

from earlyprune.core.errors import SpecError

if TYPE_CHECKING:
    from earlyprune.run.spec import RunSpec
    from earlyprune.run.store import RunStore
    from earlyprune.train.loop import StepCallback
    from earlyprune.train.optim import Schedule

LOG_FORMATS = ("text", "json")


class Log:
    """Where and how a command's lines go.

    Args:
        fmt: "text" or "json" (one JSON object per line, with an ``event`` key).
        quiet: No progress lines and no bars; results are still written.
        stream: Where lines go (default: ``sys.stdout`` at the time of writing).
        tensorboard: A folder for TensorBoard event files, one subfolder per run id.

    Raises:
        SpecError: An unknown format, or ``tensorboard`` without the tensorboard package.
    """

    def __init__(
        self,
        fmt: str = "text",
        *,
        quiet: bool = False,
        stream: TextIO | None = None,
        tensorboard: str | None = None,
    ):
        if fmt not in LOG_FORMATS:
            raise SpecError(f"unknown log format {fmt!r}; choose one of: {', '.join(LOG_FORMATS)}")
        if tensorboard is not None:
            _summary_writer()  # fail now, in one line, not after the first epoch
        self.fmt, self.quiet, self._stream, self.tensorboard = fmt, quiet, stream, tensorboard

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stdout

    @property
    def lines(self) -> bool:
        """Progress lines are written: JSON always, text when the stream is not a terminal."""
        if self.quiet:
            return False
        return self.fmt == "json" or not _isatty(self.stream)

    @property
    def bars(self) -> bool | None:
        """For ``progress=``: False when quiet, else None (a bar only on a terminal)."""
        return False if self.quiet else None

    def say(self, text: str, event: str, **fields: Any) -> None:
        """A line that is always written (a run's start, its result, a sweep's summary)."""
        self._write(text, {"event": event, **fields})

    def progress(self, text: str, event: str, **fields: Any) -> None:
        """A progress line: written only where ``lines`` says so."""
        if self.lines:
            self._write(text, {"event": event, **fields})

    def _write(self, text: str, event: dict[str, Any]) -> None:
        line = json.dumps(event, default=str) if self.fmt == "json" else text
        try:
            print(line, file=self.stream, flush=True)
        except BrokenPipeError as exc:  # `| head -1`: stop, as SIGPIPE would; the run resumes
            from earlyprune.run.environment import OutputClosed

            raise OutputClosed("standard output was closed by its reader") from exc

    def epoch_callback(self, run_id: str, spec: RunSpec, sched: Schedule) -> StepCallback:
        """An ``on_epoch`` callback writing one line per evaluated epoch of run ``run_id``."""
        started = time.perf_counter()
        epochs = math.ceil(sched.total_steps / sched.steps_per_epoch)
        label = run_label(spec)

        def on_epoch(step: int, _model: Any, _opt: Any, state: Any) -> None:
            row = state.curve[-1]
            elapsed = time.perf_counter() - started
            text = (
                f"{run_id} {label}  epoch {row['epoch']}/{epochs}  step {step}/{sched.total_steps}"
                f"  loss {row['train_loss']:.4f}  test {100 * row['test_accuracy']:.2f} %"
                f"  {elapsed:.1f} s"
            )
            self.progress(
                text,
                "epoch",
                run_id=run_id,
                method=spec.method,
                sparsity=spec.sparsity,
                seed=spec.seed,
                epoch=row["epoch"],
                epochs=epochs,
                step=step,
                total_steps=sched.total_steps,
                lr=row["lr"],
                train_loss=row["train_loss"],
                test_loss=row["test_loss"],
                test_accuracy=row["test_accuracy"],
                elapsed_s=round(elapsed, 3),
            )
            if self.tensorboard is not None:
                self._scalars(run_id, step, row)

        return on_epoch

    def _scalars(self, run_id: str, step: int, row: dict[str, Any]) -> None:
        # Opened and closed per epoch: nothing stays open across a crash or a resumed run.
        writer = _summary_writer()(log_dir=str(Path(self.tensorboard or ".") / run_id))
        try:
            for key in ("train_loss", "test_loss", "test_accuracy", "lr"):
                writer.add_scalar(key, row[key], step)
        finally:
            writer.close()

    def run_done(
        self, index: int, total: int, result: dict[str, Any] | None, spec: RunSpec
    ) -> None:
        """``[17/219] 3f2a9c1b0d4e snip 90.0 % seed 0: 79.80 % in 1.2 s`` (a progress line)."""
        result = result or {"status": "missing", "error": "no result was stored"}
        status, acc = result.get("status"), result.get("test_accuracy")
        seconds = (result.get("timings") or {}).get("total_s")
        head = f"[{index}/{total}] {spec.run_id} {run_label(spec)} seed {spec.seed}"
        if status in ("ok", "disconnected") and acc is not None:
            tail = f"{100 * acc:.2f} %" + (f" in {seconds:.1f} s" if seconds is not None else "")
            tail += " (disconnected: no input→output path)" if status == "disconnected" else ""
        else:
            tail = f"{status}" + (f" ({result['error']})" if result.get("error") else "")
        self.progress(
            f"{head}: {tail}",
            "run",
            index=index,
            total=total,
            run_id=spec.run_id,
            method=spec.method,
            sparsity=spec.sparsity,
            ablation=spec.ablation,
            seed=spec.seed,
            status=status,
            test_accuracy=acc,
            seconds=seconds,
            error=result.get("error"),
        )


class SweepProgress:
    """A sweep's progress: a bar on a terminal, and a ``Log.run_done`` line per finished run.

    Executors call ``done(spec)`` once for every run they finish (in whatever order).
    """

    def __init__(self, total: int, store: RunStore, *, bar: bool, log: Log | None = None):
        self.total, self.store, self.log, self.count = total, store, log, 0
        self._bar = tqdm(total=total, desc="sweep", unit="run", disable=not bar, dynamic_ncols=True)

    def done(self, spec: RunSpec) -> None:
        self.count += 1
        self._bar.update(1)
        if self.log is not None and self.log.lines:
            self.log.run_done(self.count, self.total, self.store.read_result(spec.run_id), spec)

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> SweepProgress:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def run_label(spec: RunSpec) -> str:
    """``snip 90.0 %`` (plus ablation, step and set hyperparameters when not the defaults)."""
    from earlyprune.run.hparams import describe

    label = spec.method if spec.method == "dense" else f"{spec.method} {100 * spec.sparsity:.1f} %"
    if spec.ablation != "none":
        label += f" {spec.ablation}"
    if spec.prune_step:
        label += f" step {spec.prune_step}"
    return label + describe(spec).replace("  ", " ", 1)


def _summary_writer() -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise SpecError(
            "--tensorboard needs the tensorboard package: pip install 'earlyprune[tensorboard]'"
        ) from None
    return SummaryWriter


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a real file
        return False
