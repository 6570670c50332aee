"""A real GCS JSON-API emulator (gcp-storage-emulator, in memory) on a loopback port, for the tests and the
benchmarks: google-cloud-storage and Beam's GCS IO reach it through STORAGE_EMULATOR_HOST."""
import os
import socket
import subprocess
import sys
import time

ENV = ("STORAGE_EMULATOR_HOST", "NO_GCE_CHECK", "GOOGLE_CLOUD_PROJECT")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(project="test-project"):
    """The emulator's process, once it answers; the clients' variables are set to reach it (see ENV)."""
    port = free_port()
    proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "gcp-storage-emulator"), "start",
                             "--host", "127.0.0.1", "--port", str(port), "--in-memory"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("the GCS emulator did not start")
            time.sleep(0.2)
    os.environ.update(STORAGE_EMULATOR_HOST=f"http://127.0.0.1:{port}", NO_GCE_CHECK="True",
                      GOOGLE_CLOUD_PROJECT=project)
    return proc
