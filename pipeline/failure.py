"""A local run that fails ends in one line, not in Beam's worker tracebacks.

Beam's local runner logs every failed bundle, each attempt, with its traceback (a full disk gave eleven) before the
job's own exception arrives, and its worker processes print each one to stderr as well. Those ERROR records and
the printed tracebacks are held while the job runs: dropped if the failure is one named here (a full disk),
otherwise written, with the job's own traceback, to OUTPUT/preprocess-failure.log, while the console gets the
cause and the step it happened in (CYCLEGAN_TF_LOGS=1 shows them all there instead).
"""
import contextlib
import logging
import re
import traceback

from preprocessing.process import stderr_held

NO_SPACE = "No space left on device"


class HeldErrors(logging.Filter):
    """On Beam's loggers: keeps their ERROR records back, to be shown (replay) or dropped."""

    def __init__(self):
        super().__init__()
        self.records, self.printed = [], None

    def filter(self, record):
        if record.levelno >= logging.ERROR:
            self.records.append(record)
            return False
        return True

    def replay(self):
        self.printed.show()
        for record in self.records:
            logging.getLogger(record.name).callHandlers(record)

    def text(self, err):
        """Everything held, then the job's own traceback."""
        formatter = logging.Formatter("%(levelname)s:%(name)s:%(message)s")
        return "\n".join([*(formatter.format(record) for record in self.records),
                          b"".join(self.printed.lines).decode(errors="replace"),
                          "".join(traceback.format_exception(err))])


def cause(err):
    """(the step that failed or None, the innermost exception's line) from a failed job's exception, whose text
    holds the worker's traceback."""
    text = str(err)
    steps = re.findall(r"\[while running '([^']+)'\]", text)
    raised = [line.strip() for line in text.splitlines() if re.match(r"^\s*[\w.]+(Error|Exception)\b", line)]
    line = raised[-1] if raised else f"{type(err).__name__}: {(text.splitlines() or [''])[0]}"
    line = re.sub(r"( \[while running '[^']+'\])?( with exceptions None)?$", "", line)
    return (steps[-1] if steps else None), line[:400]


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
        with stderr_held(TracebackLines()) as held.printed:
            yield held
    finally:
        for logger in loggers:
            logger.removeFilter(held)


class TracebackLines:
    """The lines of Python tracebacks printed to stderr (a worker process's `print(traceback.format_exc())`):
    from "Traceback (most recent call last):" through the exception's line, with the chaining lines between
    tracebacks and the blank lines that follow."""
    CHAINING = (b"During handling of the above exception", b"The above exception was the direct cause")

    def __init__(self):
        self.inside = self.after = False

    def __call__(self, line):
        if line.startswith(b"Traceback (most recent call last):"):
            self.inside = True
        elif self.inside:
            self.inside = line.startswith((b" ", b"\t"))  # the first line that is not indented is the exception's
            self.after = not self.inside
        elif self.after and (not line.strip() or line.startswith(self.CHAINING)):
            pass
        else:
            self.after = False
            return False
        return True


def disk_full(err):
    """Whether a failed job's exception says the disk filled up (Beam passes the worker's error on as text)."""
    while err is not None:
        if getattr(err, "errno", None) == 28 or NO_SPACE in str(err):
            return True
        err = err.__cause__ or err.__context__
    return False
