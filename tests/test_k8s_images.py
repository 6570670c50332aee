"""Both images, built for real with podman (`make images`) on a local Debian base, and run as the pods run them:
user 10001, a read-only root filesystem, no network. Root only (podman needs it here); CI runs as root."""
import json
import os
import re
import subprocess

import pytest

from k8s.config import UID
from tests import containers
from tests.helpers import REPO

# Run inside each image: who it runs as, what it imports, what pip installed.
PROBE = """
import importlib.util, json, os, subprocess, sys
found = {name: importlib.util.find_spec(name) is not None for name in sys.argv[1:]}
frozen = subprocess.run([sys.executable, "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True)
print(json.dumps({"uid": os.getuid(), "modules": found, "installed": frozen.stdout.split()}))
"""
ROLES = {  # image -> (modules it must hold, modules it must not, a command of another role, that role's extra)
    "trainer": (["tensorflow", "keras", "tensorboard", "tqdm", "trainer", "google.cloud.storage"], ["apache_beam"],
                ["preprocess", "--help"], "preprocess"),
    "beam": (["tensorflow", "keras", "apache_beam", "tensorflow_datasets", "pipeline"], ["kubernetes"],
             ["submit", "--help"], "k8s"),
}


def run(image, *command, memory=None):
    """`command` in `image` as a pod runs it: its own user, read-only root, a tmpfs /tmp, no network."""
    limit = ["--memory", memory, "--memory-swap", memory] if memory else []
    return subprocess.run(["podman", "run", "--rm", "--read-only", "--tmpfs", "/tmp", "--network", "none", *limit,
                           "--entrypoint", "/usr/bin/env", image, *command],
                          capture_output=True, text=True, timeout=600, env=containers.ENV)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_both_images_run_their_role_as_user_10001_read_only_at_the_tested_versions(images):
    with open(os.path.join(REPO, "constraints.txt")) as f:
        pins = dict(line.strip().lower().replace("_", "-").split("==") for line in f if "==" in line)
    for role, (present, absent, other_role, extra) in ROLES.items():
        probe = run(images[role], "python3", "-c", PROBE, *present, *absent)
        assert probe.returncode == 0, probe.stderr
        found = json.loads(probe.stdout)
        assert found["uid"] == UID, role
        assert [name for name in present if not found["modules"][name]] == [], role
        assert [name for name in absent if found["modules"][name]] == [], role  # the other role's dependencies
        installed = dict(entry.lower().replace("_", "-").split("==") for entry in found["installed"] if "==" in entry)
        differ = {name: (version, pins[name]) for name, version in installed.items()
                  if name in pins and version != pins[name]}
        assert differ == {} and installed["tensorflow"] == pins["tensorflow"], f"{role}: installed, pinned {differ}"
        help_ = run(images[role], "cyclegan", "--help")
        assert help_.returncode == 0 and "subcommands:" in help_.stdout, help_.stderr
        other = run(images[role], "cyclegan", *other_role)
        assert other.returncode == 2 and re.search(rf"needs the {extra} extra", other.stderr), other.stderr
    # the memory limit is the container's: past it the kernel kills it, as the kubelet reports an OOM kill
    hog = run(images["trainer"], "python3", "-c", "b = bytearray(400 << 20); print(len(b))", memory="128m")
    assert hog.returncode == 137, (hog.returncode, hog.stdout, hog.stderr)
