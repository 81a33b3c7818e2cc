"""Worker processes that reach the racy step of their work at the same instant.

Independent processes started one after the other are seconds apart once their imports and start-up
are done, while the races between study workers (creating a storage's schema, creating and marking a
study, claiming its queued trial) last milliseconds: started plainly, such workers never race. Here
each worker waits at a :class:`FolderBarrier` right before the step under test, and all of them go on
once the last one arrived.

Example (each of two shells, or two ``subprocess.Popen``)::

    python -c "from autoevol.testing.together import cli_together; cli_together('/tmp/gate', 2)" tune ...
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

#: How often a waiting worker looks at the barrier folder (seconds).
POLL_SECONDS = 0.0005


class FolderBarrier:
    """A barrier across processes: ``wait`` returns once ``parties`` processes have called it.

    Each process leaves a file named after the barrier and its process id in ``folder``; all of them
    poll the folder, so they go on within a poll interval of the last arrival.
    """

    def __init__(self, folder: str | Path, name: str, parties: int) -> None:
        self.folder = Path(folder)
        self.name = name
        self.parties = parties

    def arrived(self) -> int:
        """How many processes have reached the barrier so far."""
        return sum(1 for _ in self.folder.glob(f"{self.name}.*"))

    def wait(self, timeout: float = 600.0) -> None:
        """Arrive, then return once every party has arrived (``TimeoutError`` after ``timeout`` seconds)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"{self.name}.{os.getpid()}").touch()
        deadline = time.monotonic() + timeout
        while self.arrived() < self.parties:
            if time.monotonic() > deadline:
                raise TimeoutError(f"barrier {self.name!r}: {self.arrived()} of {self.parties} processes arrived")
            time.sleep(POLL_SECONDS)


def cli_together(folder: str, parties: int) -> None:
    """Run the ``autoevol`` command line (``sys.argv``) as one of ``parties`` study workers released together.

    A ``tune`` run waits for the other workers three times: right before it opens its study (so that
    all of them create the storage's schema and the study at the same moment); once its attempt at
    creating the study is over (so that the creator marks the new study while the others load it and
    look for the mark); and, in its first trial, between listing the queued trials and claiming one
    (so that all of them claim the same queued trial at the same moment).
    """
    import optuna

    from autoevol.cli import main
    from autoevol.optimizers.tuning import run as tuning_run
    from autoevol.optimizers.tuning import study as tuning_study

    opening = FolderBarrier(folder, "open", parties)
    creating = FolderBarrier(folder, "create", parties)
    claiming = FolderBarrier(folder, "claim", parties)
    open_study = tuning_study.open_study
    create_study = optuna.create_study
    pop_waiting_trial = optuna.study.Study._pop_waiting_trial_id

    def open_together(*args: Any, **kwargs: Any) -> Any:
        tuning_study.open_study = tuning_run.open_study = open_study  # only the first opening waits
        opening.wait()
        return open_study(*args, **kwargs)

    def create_together(*args: Any, **kwargs: Any) -> Any:
        optuna.create_study = create_study
        try:
            return create_study(*args, **kwargs)  # the creator's study, or DuplicatedStudyError for the others
        finally:
            creating.wait()

    def pop_together(study: optuna.Study) -> int | None:
        storage = study._storage
        list_trials = storage.get_all_trials

        def listed_then_together(*args: Any, **kwargs: Any) -> Any:
            trials = list_trials(*args, **kwargs)
            claiming.wait()
            return trials

        optuna.study.Study._pop_waiting_trial_id = pop_waiting_trial  # only the first trial waits
        storage.get_all_trials = listed_then_together
        try:
            return pop_waiting_trial(study)
        finally:
            del storage.get_all_trials

    tuning_study.open_study = tuning_run.open_study = open_together
    optuna.create_study = create_together
    optuna.study.Study._pop_waiting_trial_id = pop_together
    main()
