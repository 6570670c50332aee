"""One writer per folder: the trainer's chief holds <model_dir>/lease.json for the whole run, and `cyclegan
preprocess` holds <output>/lease.json for the whole job (its launcher, also for a Dataflow job it waits for).

Two runs on one model directory (a job submitted twice) would each save over the other's checkpoints and run
record; two preprocessing jobs on one output folder would write each other's shards and delete each other's
staging files. The lease is created only if absent (an exclusive create on local disks, a generation precondition
on gs://) and renewed every `timeout / 4` seconds; a start finds it held and stops with exit 2 naming the holder,
unless

  - its heartbeat is older than the timeout (the holder died without letting go),
  - it was held by an earlier start of the same run: the same CYCLEGAN_RUN (which `cyclegan submit` sets to the
    job's name, so a preempted pod's replacement is never locked out by its predecessor), or a process of this
    host that is gone, or
  - it cannot be read (a start that died while writing it; garbage written over it).

Those are taken over, with a line that says so. A lease is written whole or not at all: on a local disk a finished
temporary file is linked to its name (the link is the exclusive create), elsewhere it is uploaded or renamed whole.
A holder that finds its lease replaced by anything not its own stops as if another start had taken it over. A run
lets go of the lease when it ends, however it ends. A start reads the lease first (for the holder's name in the
refusal); the exclusive create and the generation preconditions settle two starts at the same moment. Other
filesystems (ram://) have no exclusive create: there the check and the write are two steps.
"""
import datetime
import errno
import json
import os
import socket
import threading
import uuid

from preprocessing.flags import UsageError
from preprocessing.process import PARTIAL

LEASE = "lease.json"
RUN_ENV = "CYCLEGAN_RUN"  # the run a start belongs to (`cyclegan submit` sets the job's name)
HOLDER_KEYS = frozenset({"host", "pid", "start", "since", "heartbeat"})


class LeaseUnwritable(Exception):
    """The lease could not be written for want of space: nothing was done, exit status 1."""


def now():
    return datetime.datetime.now(datetime.timezone.utc)


def this_start():
    """Who this start is: host, pid, the run it belongs to (CYCLEGAN_RUN, when set), a fresh id for this start."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "run": os.environ.get(RUN_ENV, ""),
            "start": uuid.uuid4().hex}


class LeaseLost(Exception):
    """Another start took this run's folder over (its heartbeat was not renewed in time)."""


class Storage:
    """One small file read, created if absent and replaced: the lease's storage. Its kinds: GcsStorage (generation
    preconditions), LocalStorage (an exclusive link), and for other filesystems (ram://) one the caller hands in,
    since only the trainer's model directories are there (trainer.files.GfileStorage)."""

    def __init__(self, path):
        self.path = path

    def make_folder(self, folder):
        """Make the folder the file goes in, where the filesystem has folders."""

    def read_text(self):
        """The file's text, or None when there is none."""
        raise NotImplementedError

    def create(self, text):
        """Write `text` if no file exists; False if one does."""
        raise NotImplementedError

    def replace(self, text):
        """Overwrite the file this process read or wrote last; False if someone else wrote it since."""
        raise NotImplementedError

    def delete(self):
        raise NotImplementedError

    def read(self):
        """The lease as a dict, None if there is none, or {"damaged": why} if it cannot be parsed."""
        text = self.read_text()
        if text is None:
            return None
        try:
            lease = json.loads(text)
        except ValueError as err:
            return {"damaged": f"{len(text)} bytes that are not JSON: {err}"}
        if not isinstance(lease, dict) or not HOLDER_KEYS <= set(lease):
            return {"damaged": f"not a lease of this program (it needs {', '.join(sorted(HOLDER_KEYS))})"}
        return lease


class GcsStorage(Storage):
    def __init__(self, path):
        from google.cloud import storage

        super().__init__(path)
        bucket, _, name = path[len("gs://"):].partition("/")
        self.blob, self.generation = storage.Client().bucket(bucket).blob(name), None

    def read_text(self):
        from google.api_core.exceptions import NotFound

        try:
            text = self.blob.download_as_text()
        except NotFound:
            return None
        self.generation = self.blob.generation
        return text

    def _upload(self, text, generation):
        from google.api_core.exceptions import PreconditionFailed

        try:
            self.blob.upload_from_string(text, if_generation_match=generation)
        except PreconditionFailed:
            return False
        self.generation = self.blob.generation
        return True

    def create(self, text):
        return self._upload(text, 0)

    def replace(self, text):
        return self._upload(text, self.generation)

    def delete(self):
        from google.api_core.exceptions import NotFound, PreconditionFailed

        try:
            self.blob.delete(if_generation_match=self.generation)
        except (NotFound, PreconditionFailed):
            pass


class LocalStorage(Storage):
    def make_folder(self, folder):
        os.makedirs(folder, exist_ok=True)

    def read_text(self):
        try:
            with open(self.path, "rb") as f:
                return f.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return None

    def create(self, text):
        whole = self._written_aside(text)
        try:
            os.link(whole, self.path)  # fails if the name exists: the exclusive create, of a whole file
        except FileExistsError:
            return False
        finally:
            os.remove(whole)
        return True

    def replace(self, text):
        os.replace(self._written_aside(text), self.path)
        return True

    def delete(self):
        if os.path.lexists(self.path):
            os.remove(self.path)

    def _written_aside(self, text):
        """A local temporary file beside the lease holding `text` whole; removed again if that fails."""
        whole = f"{self.path}.{uuid.uuid4().hex}{PARTIAL}"
        try:
            with open(whole, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            if os.path.lexists(whole):
                os.remove(whole)
            raise
        return whole


def storage_for(path, other=None):
    """The Storage kind of `path`; `other` (a Storage class) for a filesystem neither local nor gs://."""
    if path.startswith("gs://"):
        return GcsStorage(path)
    if "://" not in path:
        return LocalStorage(path)
    if other is None:
        raise UsageError(f"{path}: a lease is kept on a local disk or gs:// only")
    return other(path)


def encoded(lease):
    return json.dumps(lease, indent=1) + "\n"


def describe(lease):
    if "damaged" in lease:
        return f"an unreadable {LEASE} ({lease['damaged']})"
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


HELD = set()  # the leases this process holds: a job that exits at once on a stop request lets go of them first


def release_held():
    for held in list(HELD):
        held.release()


class Lease:
    """A job's hold on its folder (`flag` names it: --model_dir, --output); `take()` it before writing,
    `release()` at the end. `clash` says what two jobs in the folder would do to each other."""

    def __init__(self, folder, timeout_s, flag="--model_dir", what="model directory",
                 clash="two runs would save over each other's checkpoints", other_storage=None):
        self.folder, self.timeout_s, self.flag, self.what, self.clash = folder, timeout_s, flag, what, clash
        self.storage = storage_for(f"{folder.rstrip('/')}/{LEASE}", other_storage)
        self.mine = {**this_start(), "since": now().isoformat(timespec="seconds")}
        self.lost = None
        self._stop = threading.Event()
        self._thread = None

    def take(self, say=print):
        """Hold the folder, or raise UsageError naming its holder (or why it cannot be written), or
        LeaseUnwritable on a full disk."""
        try:
            self._take(say)
        except UsageError:
            raise
        except Exception as err:
            if not isinstance(err, OSError) and type(err).__module__.split(".")[0] not in ("tensorflow", "google"):
                raise  # not the storage's answer (OSError, TensorFlow's OpError, a bucket's refusal): a bug to see
            reason = (getattr(err, "strerror", None) or str(err).strip().splitlines()[0])[:200]
            if getattr(err, "errno", None) == errno.ENOSPC or "No space left" in reason:
                raise LeaseUnwritable(f"{self.flag} {self.folder}: no space left to write its {LEASE}; nothing "
                                      "was done. Free some space and start again") from None
            raise UsageError(f"{self.flag} {self.folder}: cannot write there ({reason}); choose a folder this "
                             "job may write to") from None
        self._thread = threading.Thread(target=self._renew, name="lease", daemon=True)
        self._thread.start()
        HELD.add(self)

    def _take(self, say):
        self.storage.make_folder(self.folder)
        self.mine["heartbeat"] = now().isoformat(timespec="seconds")
        held = self.storage.read()
        if held is None:
            if not self.storage.create(encoded(self.mine)):  # another start created it since the read: look again
                return self._take(say)
            return
        why = self.stale_because(held)
        if not why:
            raise UsageError(f"{self.flag} {self.folder} is in use by another run ({describe(held)}): "
                             f"{self.clash}. Wait for it to end, stop it, or use another {self.flag} (a lease whose "
                             f"heartbeat stops is free after --lease_timeout {self.timeout_s} s)")
        if not self.storage.replace(encoded(self.mine)):
            raise UsageError(f"{self.flag} {self.folder}: another start took the lease over at the same "
                             "moment; this one stops")
        say(f"took over the {self.what}'s lease from {describe(held)}: {why}")

    def stale_because(self, held):
        """Why the lease `held` may be taken over, or ''."""
        if "damaged" in held:
            return "it cannot be read, so nobody holds it"
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
                if not self.storage.replace(encoded(self.mine)):
                    self.lost = "another start, at the same moment"
                    return
            except Exception as err:  # storage unreachable for a while: the next renewal tries again
                print(f"warning: could not renew the {self.what}'s lease ({type(err).__name__}: {err})",
                      flush=True)

    def ensure_held(self, step):
        """LeaseLost if another start took the directory over; before a save, so nothing of theirs is overwritten."""
        if self.lost:
            raise LeaseLost(f"step {step}: {self.flag} {self.folder} was taken over by {self.lost} (this run's "
                            f"heartbeat was not renewed within --lease_timeout {self.timeout_s} s); this run stops "
                            "without saving")

    def release(self):
        HELD.discard(self)
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
