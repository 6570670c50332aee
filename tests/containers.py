"""Podman for the tests that run the images: the settings `make images` builds with (k8s/podman/*.conf), and
the images, built once per session by k8s/images.sh (podman's layer cache makes an unchanged rebuild quick)."""
import os
import re
import subprocess

from tests.helpers import REPO

IMAGES_SH = os.path.join(REPO, "k8s", "images.sh")


def podman_env():
    """The environment with podman's settings as k8s/images.sh sets them (k8s/podman/env)."""
    with open(os.path.join(REPO, "k8s", "podman", "env")) as f:
        pairs = [line.strip().split("=", 1) for line in f if line.strip() and not line.startswith("#")]
    return {**os.environ, **{name: os.path.join(REPO, path) for name, path in pairs}}


ENV = podman_env()


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
