"""Podman for the tests that run the images: the settings `make images` builds with (k8s/podman/*.conf), and
the images, built once per session by k8s/images.sh (podman's layer cache makes an unchanged rebuild quick)."""
import os
import re
import subprocess

from tests.conftest import REPO

IMAGES_SH = os.path.join(REPO, "k8s", "images.sh")
ENV = {**os.environ, "CONTAINERS_STORAGE_CONF": os.path.join(REPO, "k8s", "podman", "storage.conf"),
       "CONTAINERS_CONF": os.path.join(REPO, "k8s", "podman", "containers.conf")}


def missing():
    """Why the images cannot be built and run here, or None."""
    if os.geteuid() != 0:
        return "not root: podman here needs root (CI runs as root)"
    check = subprocess.run([IMAGES_SH, "--check"], capture_output=True, text=True)
    return (check.stderr.strip() or f"k8s/images.sh --check exited {check.returncode}") if check.returncode else None


def build():
    """Both images, tagged `test`: ({role: image name}, k8s/images.sh's output: each image's size and build time)."""
    done = subprocess.run([IMAGES_SH, "test"], cwd=REPO, capture_output=True, text=True, timeout=3300, env=ENV)
    assert done.returncode == 0, done.stdout + done.stderr
    names = {role: name for name, role in re.findall(r"^images\.sh: (localhost/cyclegan-(\w+):test): ", done.stdout,
                                                     re.MULTILINE)}
    assert set(names) == {"trainer", "beam"}, done.stdout
    return names, done.stdout
