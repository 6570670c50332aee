"""XLA's compiled step functions, kept in the model directory so that a restarted run does not compile them again.

A preempted job pays its start-up at every restart, and with XLA on most of the first step is compilation
(benchmarks/RESULTS.md, "Start-up"). TensorFlow can save each compiled executable and load it in a later process
(TF_XLA_FLAGS --tf_xla_persistent_cache_directory), but it writes the files in place and fails the step on a
truncated one, which a preemption during the write would leave behind. So TensorFlow is given a local folder;
entries are copied in from <model_dir>/xla_cache at the start and published back (under a temporary name, then
renamed: never seen half-written) after the first step, by the chief only, and an entry that is not a whole
one (a copy cut short by other means) is skipped with a message rather than loaded. Their names carry a
fingerprint of the TensorFlow version and the device model, since an executable compiled for one GPU or CPU must
not be loaded on another.
"""
import glob
import hashlib
import importlib.metadata
import os
import platform
import shutil
import tempfile

from trainer.run.model_dir import XLA_CACHE, model_path


def device_fingerprint():
    """TensorFlow's version and what the executables are compiled for: the CPU's model and features, and every
    NVIDIA GPU's model. Read without TensorFlow, which reads XLA's flags when it first lists its devices."""
    parts = [importlib.metadata.version("tensorflow"), platform.machine()]
    try:
        with open("/proc/cpuinfo") as f:
            parts += sorted({line.strip() for line in f if line.startswith(("model name", "flags"))})
    except OSError:
        parts.append(platform.processor())
    for path in sorted(glob.glob("/proc/driver/nvidia/gpus/*/information")):
        with open(path) as f:
            parts += [line.strip() for line in f if line.startswith("Model:")]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


ENTRY_FIELDS = {1, 2, 3}  # tensorflow.XlaSerializedCacheEntry: key, hlo_module, executable


def whole_entry(data):
    """Whether `data` is a whole serialized cache entry: a protobuf message whose fields end exactly at its end
    and that has each of the entry's fields (TensorFlow has no Python class for it, so the wire format is walked)."""

    def varint(i):
        value = shift = 0
        while i < len(data):
            value, shift, i = value | (data[i] & 0x7F) << shift, shift + 7, i + 1
            if not data[i - 1] & 0x80:
                return value, i
        raise ValueError("cut short")

    seen, i = set(), 0
    try:
        while i < len(data):
            key, i = varint(i)
            wire_type = key & 7
            if wire_type == 0:
                _, i = varint(i)
            elif wire_type == 2:
                length, i = varint(i)
                i += length
            elif wire_type in (1, 5):
                i += 8 if wire_type == 1 else 4
            else:
                return False
            seen.add(key >> 3)
    except ValueError:
        return False
    return i == len(data) and ENTRY_FIELDS <= seen


class CompileCache:
    def __init__(self, model_dir):
        """Points XLA at this process's local folder; before TensorFlow lists its devices, when it reads its flags
        (a process whose XLA read them earlier keeps its settings, and nothing is kept)."""
        self.folder = model_path(model_dir, XLA_CACHE)
        self.prefix = f"xla_{device_fingerprint()}"
        self.local = os.path.join(tempfile.gettempdir(), f"cyclegan-xla-{os.getpid()}")
        self.damaged = set()
        os.environ["TF_XLA_FLAGS"] = " ".join(filter(None, [
            os.environ.get("TF_XLA_FLAGS", ""), f"--tf_xla_persistent_cache_directory={self.local}",
            f"--tf_xla_persistent_cache_prefix={self.prefix}"]))

    def load(self, say=print):
        """Copy the entries an earlier start kept into the local folder, before the first step compiles."""
        import tensorflow as tf

        shutil.rmtree(self.local, ignore_errors=True)  # an earlier process's with this pid, killed before it closed
        os.makedirs(self.local)
        loaded, self.damaged = 0, set()
        try:
            names = tf.io.gfile.listdir(self.folder) if tf.io.gfile.isdir(self.folder) else []
            for name in sorted(names):
                if not (name.startswith(self.prefix + "__") and name.endswith(".pb")):
                    continue  # another device's or TensorFlow version's, or a copy in progress
                with tf.io.gfile.GFile(f"{self.folder}/{name}", "rb") as f:
                    data = f.read()
                if not whole_entry(data):
                    self.damaged.add(name)
                    say(f"XLA: skipped {self.folder}/{name}: not a whole compiled function (cut short?); "
                           "it is compiled again")
                    continue
                with open(os.path.join(self.local, name), "wb") as f:
                    f.write(data)
                loaded += 1
        except tf.errors.OpError as err:  # the run goes on; it compiles what it could not load
            say(f"XLA: could not read the compiled functions in {self.folder}: {err.message}")
        if loaded:
            say(f"XLA: {loaded} compiled function(s) from {self.folder}, compiled by an earlier start")

    def publish(self, say=print):
        """Copy what this process compiled into the model directory (the chief's job, after a step has run)."""
        import tensorflow as tf

        compiled = sorted(os.listdir(self.local))
        if not compiled:  # XLA off
            return
        try:
            tf.io.gfile.makedirs(self.folder)
            present = set(tf.io.gfile.listdir(self.folder)) - self.damaged  # those are replaced
            new = [name for name in compiled if name not in present]
            for name in new:
                partial = f"{self.folder}/{name}.partial"
                tf.io.gfile.copy(os.path.join(self.local, name), partial, overwrite=True)
                tf.io.gfile.rename(partial, f"{self.folder}/{name}", overwrite=True)
        except tf.errors.OpError as err:  # only the next start's speed depends on it
            say(f"XLA: could not keep the compiled functions in {self.folder}: {err.message}")
            return
        if new:
            say(f"XLA: kept {len(new)} compiled function(s) in {self.folder}")

    def close(self):
        shutil.rmtree(self.local, ignore_errors=True)
