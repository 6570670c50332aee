"""One writer per model directory: the chief holds <model_dir>/lease.json for the whole run.

Two runs on one directory (a job submitted twice) would each save over the other's checkpoints and run record. The
lease is created only if absent (an exclusive create on local disks, a generation precondition on gs://) and
renewed every `timeout / 4` seconds; a start finds it held and stops with exit 2 naming the holder, unless

  - its heartbeat is older than the timeout (the holder died without letting go), or
  - it was held by an earlier start of the same run: the same CYCLEGAN_RUN (which `cyclegan submit` sets to the
    job's name, so a preempted pod's replacement is never locked out by its predecessor), or a process of this
    host that is gone.

Those are taken over, with a line that says so. A run lets go of the lease when it ends, however it ends. A start
reads the lease first (for the holder's name in the refusal); the exclusive create and the generation
preconditions settle two starts at the same moment. Other filesystems (ram://) have no exclusive create: there the
check and the write are two steps.
"""
import datetime
import json
import os
import socket
import threading
import uuid

import tensorflow as tf

from preprocessing.jobs import UsageError
from trainer.files import write_whole
from trainer.model_dir import LEASE, RUN_ENV, model_path


def now():
    return datetime.datetime.now(datetime.timezone.utc)


def me():
    """Who this start is: host, pid, the run it belongs to (CYCLEGAN_RUN, when set), a fresh id for this start."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "run": os.environ.get(RUN_ENV, ""),
            "start": uuid.uuid4().hex}


class LeaseLost(Exception):
    """Another start took this run's model directory over (its heartbeat was not renewed in time)."""


class Storage:
    """Read, create-if-absent and replace one small file: through google-cloud-storage with generation
    preconditions on gs://, O_EXCL on local disks, TensorFlow's gfile elsewhere."""

    def __init__(self, path):
        self.path, self.generation = path, None
        self.blob = None
        if path.startswith("gs://"):
            from google.cloud import storage

            bucket, _, name = path[len("gs://"):].partition("/")
            self.blob = storage.Client().bucket(bucket).blob(name)

    def read(self):
        """The lease as a dict, or None."""
        if self.blob is not None:
            from google.api_core.exceptions import NotFound

            try:
                text = self.blob.download_as_text()
            except NotFound:
                return None
            self.generation = self.blob.generation
            return json.loads(text)
        if not tf.io.gfile.exists(self.path):
            return None
        with tf.io.gfile.GFile(self.path) as f:
            return json.loads(f.read())

    def create(self, lease):
        """Write `lease` if no lease exists; False if one does."""
        text = json.dumps(lease, indent=1) + "\n"
        if self.blob is not None:
            from google.api_core.exceptions import PreconditionFailed

            try:
                self.blob.upload_from_string(text, if_generation_match=0)
            except PreconditionFailed:
                return False
            self.generation = self.blob.generation
            return True
        if "://" not in self.path:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w") as f:
                f.write(text)
            return True
        if tf.io.gfile.exists(self.path):
            return False
        write_whole(self.path, text)
        return True

    def replace(self, lease):
        """Overwrite the lease this process read or wrote last; False if someone else wrote it since (gs://)."""
        text = json.dumps(lease, indent=1) + "\n"
        if self.blob is not None:
            from google.api_core.exceptions import PreconditionFailed

            try:
                self.blob.upload_from_string(text, if_generation_match=self.generation)
            except PreconditionFailed:
                return False
            self.generation = self.blob.generation
            return True
        write_whole(self.path, text)
        return True

    def delete(self):
        if self.blob is not None:
            from google.api_core.exceptions import NotFound, PreconditionFailed

            try:
                self.blob.delete(if_generation_match=self.generation)
            except (NotFound, PreconditionFailed):
                pass
        elif tf.io.gfile.exists(self.path):
            tf.io.gfile.remove(self.path)


def describe(lease):
    run = f", run {lease['run']}" if lease.get("run") else ""
    return f"{lease['host']} pid {lease['pid']}{run}, since {lease['since']}, last heartbeat {lease['heartbeat']}"


def age_s(lease):
    return (now() - datetime.datetime.fromisoformat(lease["heartbeat"])).total_seconds()


def process_gone(lease):
    """Whether the holder was a process of this host that no longer runs."""
    if lease["host"] != socket.gethostname():
        return False
    try:
        os.kill(int(lease["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # it runs, as another user
        return False
    return False


class Lease:
    """The chief's hold on a model directory; `take()` it before writing, `release()` at the end."""

    def __init__(self, model_dir, timeout_s):
        self.model_dir, self.timeout_s = model_dir, timeout_s
        self.storage = Storage(model_path(model_dir, LEASE))
        self.mine = {**me(), "since": now().isoformat(timespec="seconds")}
        self.lost = None
        self._stop = threading.Event()
        self._thread = None

    def take(self, report=print):
        """Hold the model directory, or raise UsageError naming its holder."""
        if self.storage.blob is None:  # object stores have no folders to make
            tf.io.gfile.makedirs(self.model_dir)
        self.mine["heartbeat"] = now().isoformat(timespec="seconds")
        held = self.storage.read()
        if held is None:
            if not self.storage.create(self.mine):  # another start created it since the read: look again
                return self.take(report)
        else:
            why = self.stale_because(held)
            if not why:
                raise UsageError(f"--model_dir {self.model_dir} is in use by another run ({describe(held)}): two "
                                 "runs would save over each other's checkpoints. Wait for it to end, stop it, or use "
                                 f"another --model_dir (a lease whose heartbeat stops is free after "
                                 f"--lease_timeout {self.timeout_s} s)")
            if not self.storage.replace(self.mine):
                raise UsageError(f"--model_dir {self.model_dir}: another start took the lease over at the same "
                                 "moment; this one stops")
            report(f"took over the model directory's lease from {describe(held)}: {why}")
        self._thread = threading.Thread(target=self._renew, name="lease", daemon=True)
        self._thread.start()

    def stale_because(self, held):
        """Why the lease `held` may be taken over, or ''."""
        if self.mine["run"] and held.get("run") == self.mine["run"]:
            return f"an earlier start of this run ({RUN_ENV}={self.mine['run']})"
        if process_gone(held):
            return f"its process {held['pid']} on this host is gone"
        age = age_s(held)
        if age > self.timeout_s:
            return f"its heartbeat stopped {age:.0f} s ago (--lease_timeout {self.timeout_s})"
        return ""

    def _renew(self):
        while not self._stop.wait(self.timeout_s / 4):
            try:
                held = self.storage.read()
                if held is None or held.get("start") != self.mine["start"]:
                    self.lost = describe(held) if held else "nobody (the lease was deleted)"
                    return
                self.mine["heartbeat"] = now().isoformat(timespec="seconds")
                if not self.storage.replace(self.mine):
                    self.lost = "another start, at the same moment"
                    return
            except Exception as err:  # storage unreachable for a while: the next renewal tries again
                print(f"warning: could not renew the model directory's lease ({type(err).__name__}: {err})",
                      flush=True)

    def check(self, step):
        """LeaseLost if another start took the directory over; before a save, so nothing of theirs is overwritten."""
        if self.lost:
            raise LeaseLost(f"step {step}: --model_dir {self.model_dir} was taken over by {self.lost} (this run's "
                            f"heartbeat was not renewed within --lease_timeout {self.timeout_s} s); this run stops "
                            "without saving")

    def release(self):
        self._stop.set()
        if self._thread:
            self._thread.join()
        if not self.lost and self._thread:
            try:
                held = self.storage.read()
                if held and held.get("start") == self.mine["start"]:
                    self.storage.delete()
            except Exception:  # best effort: a lease left behind is free once its heartbeat is old
                pass
