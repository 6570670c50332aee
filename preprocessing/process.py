"""What every job process does, whichever side it is on: its libraries started quietly, the log lines they print
held back or dropped, stop signals handled, and the names of what a job writes on the way to its outputs."""
import contextlib
import logging
import os
import re
import signal
import sys
import tempfile

TF_LOGS_ENV = "CYCLEGAN_TF_LOGS"
# What a job writes on the way to its outputs, on either side: a file being written, renamed onto its name once
# whole (so no reader sees half of one), and the empty file that checks an output folder takes writes.
PARTIAL = ".partial"
WRITE_PROBE = ".cyclegan-write-check"


def prepare_libraries(import_tensorflow=True):
    """Choose TensorFlow's CPU kernels, and silence its C++ start-up chatter and Beam's worker warnings unless
    CYCLEGAN_TF_LOGS=1. Call before anything imports TensorFlow.

    oneDNN's kernels (TF_ENABLE_ONEDNN_OPTS=1, the library PyTorch's CPU convolutions use) are TensorFlow's default
    only on CPUs with AVX-512 VNNI or newer; elsewhere it falls back to Eigen's, whose convolution gradients made
    the whole step slower at 64 px on an AVX2 CPU (benchmarks/RESULTS.md, "Per-op profile");
    at the reference's 256 px the two ran alike. A value the user set is kept. GPU kernels do not depend on it.

    TF 2.21 prints its start-up lines through absl before absl reads any setting, so TF_CPP_MIN_LOG_LEVEL
    alone does not stop them: TensorFlow is imported (and its devices discovered) here once with stderr
    captured, and what it printed is replayed only if that fails.
    """
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    if os.environ.get(TF_LOGS_ENV, "") not in ("", "0"):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # grappler logs harmless ERROR lines; real errors raise
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    for name in ("tensorflow", "absl", "apache_beam", "tensorflow_datasets", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if not import_tensorflow or "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # the CUDA probe prints too; logical devices stay unconfigured
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class HeldStderr:
    """What `stderr_held` yields: the lines it kept back, in order; `passing` lets every later line through."""

    def __init__(self):
        self.lines, self.passing = [], False

    def show(self):
        """Let everything through from here on, the lines kept back first."""
        self.passing = True
        sys.stderr.flush()
        os.write(2, b"".join(self.lines))
        self.lines.clear()


@contextlib.contextmanager
def stderr_held(hold):
    """Within it, the stderr lines for which `hold(line)` is true are kept back (in the HeldStderr it yields);
    every other line passes at once, in order. stderr is file descriptor 2, so this covers TensorFlow's C++ and
    the child processes that inherit it: it goes through a pipe that a thread reads. Leaving the block puts the
    real stderr back and drains the pipe."""
    import threading

    held = HeldStderr()
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    real = os.dup(2)

    def forward():  # owns `real` and closes it at the pipe's end
        pending = b""
        with os.fdopen(read_end, "rb", buffering=0) as pipe, os.fdopen(real, "wb") as out:
            for chunk in iter(lambda: pipe.read(65536), b""):
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    if not held.passing and hold(line):
                        held.lines.append(line + b"\n")
                    else:
                        out.write(line + b"\n")
                out.flush()
            out.write(pending)

    thread = threading.Thread(target=forward, name="stderr-held", daemon=True)
    thread.start()
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield held
    finally:
        sys.stderr.flush()
        os.dup2(real, 2)  # closes our write end of the pipe: the thread reads to the end and stops
        # Child processes still running (Beam's workers as a job is stopped) hold the pipe open: the thread then
        # goes on forwarding what they print until they exit, without holding this one up.
        thread.join(timeout=1)


class CppLogLines:
    """TensorFlow's C++ log records below FATAL (absl's format: severity, month and day, time, thread,
    file:line]; before absl is set up the time reads 00:00:<seconds since 1970>) and the lines gRPC appends to
    them. TF_CPP_MIN_LOG_LEVEL does not reach them in TF 2.21."""
    RECORD = re.compile(rb"^[IWE]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w.-]+:\d+\] ")
    CONTINUATION = re.compile(rb"^(Additional GRPC error information|:\w+:)")

    def __init__(self):
        self.inside = False

    def __call__(self, line):
        self.inside = bool(self.RECORD.match(line) or (self.inside and self.CONTINUATION.match(line)))
        return self.inside


@contextlib.contextmanager
def cpp_log_filter():
    """Within it, TensorFlow's and gRPC's C++ log lines below FATAL are dropped from stderr: a lost peer worker
    makes them print a dozen "E0000 ... Aborting RingReduce" lines ahead of the one line that says what happened
    and what to do. CYCLEGAN_TF_LOGS=1 keeps them."""
    if os.environ.get(TF_LOGS_ENV, "") not in ("", "0"):
        yield
        return
    with stderr_held(CppLogLines()):
        yield


@contextlib.contextmanager
def stop_signals_handled_by(handler):
    """SIGTERM and SIGINT go to `handler` while the block runs; the previous handlers are put back after it."""
    previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
