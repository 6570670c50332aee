"""Podman for the tests that run the images: the settings `make images` builds with (k8s/podman/*.conf), and
the images, built once per session by k8s/images.sh (podman's layer cache makes an unchanged rebuild quick)."""
import os
import shutil
import subprocess

from tests.conftest import REPO

TAG = "test"
ENV = {**os.environ, "CONTAINERS_STORAGE_CONF": os.path.join(REPO, "k8s", "podman", "storage.conf"),
       "CONTAINERS_CONF": os.path.join(REPO, "k8s", "podman", "containers.conf")}


def image(role):
    return f"localhost/cyclegan-{role}:{TAG}"


def missing():
    """Why the images cannot be built and run here, or None."""
    if os.geteuid() != 0:
        return "not root: podman here needs root (CI runs as root)"
    absent = [tool for tool in ("podman", "runc", "fuse-overlayfs", "debootstrap") if not shutil.which(tool)]
    if absent:
        return f"{', '.join(absent)} not installed: apt-get install -y podman runc fuse-overlayfs debootstrap"
    return None


def build():
    """k8s/images.sh TAG; its output (each image's size and build time)."""
    done = subprocess.run([os.path.join(REPO, "k8s", "images.sh"), TAG], cwd=REPO, capture_output=True, text=True,
                          timeout=3300, env=ENV)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout
