"""The presplit role installs the host helper by copying the package (roles/presplit/tasks/install.yml),
run by ansible-playbook on localhost into a temporary directory: the launcher runs the CLI, what an
older layout left is removed, and a second run changes nothing."""

import os
import subprocess
import sys

import pytest

PACKAGE_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "..", "plugins", "module_utils", "presplit_kvm_helper")

PLAYBOOK = """
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - ansible.builtin.include_role:
        name: presplit.kvm.presplit
        tasks_from: install
"""

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the role installs files owned by root")


def install(run_playbook, tmp_path):
    """Runs the install tasks into tmp_path; the play recap's line."""
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    proc = run_playbook(tmp_path / "play.yml",
                        "-e", "presplit_cli_lib_dir=%s" % (tmp_path / "lib"),
                        "-e", "presplit_cli_path=%s" % (tmp_path / "kvm-presplit"),
                        "-e", "presplit_cli_python=%s" % sys.executable)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [line for line in proc.stdout.splitlines() if line.startswith("localhost")][-1]


def test_the_role_copies_the_package_and_its_launcher_runs(run_playbook, tmp_path):
    installed = tmp_path / "lib" / "presplit_kvm_helper"
    installed.mkdir(parents=True)
    (installed / "kvm_split.py").write_text("# the flat layout of an older release\n")
    (installed / "NOTES").write_text("an operator's file: not Python, not ours to remove\n")

    first = install(run_playbook, tmp_path)
    assert "failed=0" in first and "changed=0" not in first

    package = sorted(name for name in os.listdir(PACKAGE_DIR) if name.endswith(".py"))
    assert sorted(name for name in os.listdir(installed) if name.endswith(".py")) == package
    for name in package:
        assert (installed / name).read_bytes() == open(os.path.join(PACKAGE_DIR, name), "rb").read()
    assert (installed / "NOTES").exists()

    launched = subprocess.run([str(tmp_path / "kvm-presplit"), "--help"], capture_output=True, text=True,
                              timeout=60, check=False)
    assert launched.returncode == 0, launched.stderr
    assert launched.stdout.startswith("usage: kvm-presplit")

    again = install(run_playbook, tmp_path)
    assert "changed=0" in again and "failed=0" in again
