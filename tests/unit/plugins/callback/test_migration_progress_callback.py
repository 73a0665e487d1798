"""The presplit.kvm.migration_progress callback: its line from migration_progress results,
and the plugin loaded by ansible-playbook (this checkout's ansible.cfg enables it) printing
a line at every poll of the module against libvirt's test driver. The plugin itself is
only imported by ansible-playbook: controller code imported into this process would change
how the in-process module tests see warnings."""

import os
import re
import subprocess
import sys

import pytest

from ansible_collections.presplit.kvm.plugins.plugin_utils.migration_progress_line import progress_line

MIB = 1 << 20
REPO = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))

PLAY = """
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Poll a domain that does not migrate three times
      presplit.kvm.migration_progress:
        uri: test:///default
        domains: [test, gone-domain]
      register: progress
      until: progress.attempts >= 3
      retries: 3
      delay: 0
"""


def test_line_names_each_domain_with_its_progress():
    result = {"migrating": 1, "migrations": [
        {"domain": "w1", "state": "migrating", "elapsed_s": 12.3, "iteration": 2, "percent": 75.0,
         "memory_remaining_bytes": 32 * MIB, "bandwidth_mib_per_s": 3.0},
        {"domain": "w2", "state": "gone"},
        {"domain": "w3", "state": "running"}]}
    assert progress_line("h1", result) == (
        "h1: 1 migrating | w1 75.0% pass 2, 32 MiB left, 3.0 MiB/s, 12 s | w2 gone | w3 not migrating")


def test_job_without_memory_figures_yet():
    result = {"migrating": 1, "migrations": [{"domain": "w1", "state": "migrating", "elapsed_s": 0.2}]}
    assert progress_line("h1", result) == "h1: 1 migrating | w1, 0 s"


def test_no_line_for_a_failed_poll():
    assert progress_line("h1", {"failed": True, "msg": "cannot connect"}) is None


def test_ansible_playbook_prints_a_line_per_poll(tmp_path):
    pytest.importorskip("libvirt")
    (tmp_path / "play.yml").write_text(PLAY)
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"))
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,",
                           str(tmp_path / "play.yml")],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = re.findall(r"^localhost: 0 migrating \| test not migrating \| gone-domain gone$", proc.stdout, re.M)
    # Two retries and the final result.
    assert len(lines) == 3, proc.stdout
