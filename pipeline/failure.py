"""A local run that fails for a reason we can name ends in one line, not in Beam's worker tracebacks.

Beam's local runner logs every failed bundle, each attempt, with its traceback (a full disk gave eleven) before the
job's own exception arrives. Those ERROR records are held while the job runs: shown after all if the failure is not
one named here, dropped if it is.
"""
import contextlib
import logging

NO_SPACE = "No space left on device"


class HeldErrors(logging.Filter):
    """On Beam's loggers: keeps their ERROR records back, to be shown (replay) or dropped."""

    def __init__(self):
        super().__init__()
        self.records = []

    def filter(self, record):
        if record.levelno >= logging.ERROR:
            self.records.append(record)
            return False
        return True

    def replay(self):
        for record in self.records:
            logging.getLogger(record.name).callHandlers(record)


@contextlib.contextmanager
def beam_errors_held():
    """Beam's module loggers hold their ERROR records while the block runs. On the loggers, not on handlers:
    Beam's workers add handlers of their own while a job runs."""
    # the local runner's modules, imported here rather than when the job starts, so that their loggers exist
    import apache_beam.runners.portability.fn_api_runner.fn_runner  # noqa: F401
    import apache_beam.runners.portability.local_job_service  # noqa: F401
    import apache_beam.runners.worker.sdk_worker  # noqa: F401

    held = HeldErrors()
    loggers = [logger for name, logger in logging.root.manager.loggerDict.items()
               if name.startswith("apache_beam") and isinstance(logger, logging.Logger)]
    for logger in loggers:
        logger.addFilter(held)
    try:
        yield held
    finally:
        for logger in loggers:
            logger.removeFilter(held)


def disk_full(err):
    """Whether a failed job's exception says the disk filled up (Beam passes the worker's error on as text)."""
    while err is not None:
        if getattr(err, "errno", None) == 28 or NO_SPACE in str(err):
            return True
        err = err.__cause__ or err.__context__
    return False
