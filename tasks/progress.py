"""Progress for long work: a terminal bar (tqdm, stderr) and a Prefect progress artifact.

The artifact is updated at most every ``min_interval_s`` seconds so thousands of samples do
not mean thousands of API calls. Outside a flow run only the terminal bar is shown.
"""

from __future__ import annotations

import logging
import time

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.context import get_run_context
from tqdm.auto import tqdm

log = logging.getLogger(__name__)


class StageProgress:
    """``total`` items of kind ``unit`` (the bar prints items/s and the ETA in those units)."""

    def __init__(
        self,
        total: int,
        description: str,
        key: str | None = None,
        min_interval_s: float = 2.0,
        unit: str = "it",
    ):
        self.total, self.done = max(1, total), 0
        self.bar = tqdm(total=total, desc=description, unit=unit, leave=False, dynamic_ncols=True)
        self.min_interval_s, self._last = min_interval_s, 0.0
        self.artifact_id = None
        if _in_run():
            try:
                self.artifact_id = create_progress_artifact(progress=0.0, key=key, description=description)
            except Exception as err:  # the artifact is a view; never fail the work over it
                log.warning("could not create progress artifact: %s", err)

    def advance(self, amount: int = 1) -> None:
        self.done += amount
        self.bar.update(amount)
        self._publish(force=self.done >= self.total)

    def set(self, done: int) -> None:
        self.advance(done - self.done)

    def _publish(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.artifact_id is None or (not force and now - self._last < self.min_interval_s):
            return
        self._last = now
        try:
            update_progress_artifact(self.artifact_id, progress=min(100.0, 100.0 * self.done / self.total))
        except Exception as err:
            log.warning("could not update progress artifact: %s", err)

    def close(self) -> None:
        self._publish(force=True)
        self.bar.close()

    def __enter__(self) -> StageProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _in_run() -> bool:
    try:
        get_run_context()
        return True
    except Exception:
        return False
