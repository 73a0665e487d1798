"""module_defaults with group/presplit.kvm.libvirt (meta/runtime.yml action_groups) sets the URI
of the modules in the group: run by ansible-playbook against libvirt's test driver, whose
built-in domain "test" exists nowhere else."""
import json

import pytest

pytest.importorskip("libvirt")

PLAY = """
- hosts: localhost
  connection: local
  gather_facts: false
  module_defaults:
    group/presplit.kvm.libvirt:
      uri: test:///default
  tasks:
    - presplit.kvm.migration_progress:
        domains: [test]
      register: progress
    - presplit.kvm.host_info:
      register: facts
    # Its source is the group's URI: "test" runs there and on the destination (the same daemon).
    - presplit.kvm.live_migrate:
        name: test
        destination_uri: test:///default
      check_mode: true
      register: migrate
      failed_when: false
    - ansible.builtin.copy:
        content: "{{ {'progress': progress, 'facts': facts, 'migrate': migrate} | to_json }}"
        dest: "{{ out }}"
        mode: "0600"
"""


def test_group_defaults_reach_the_modules(run_playbook, tmp_path):
    (tmp_path / "play.yml").write_text(PLAY)
    proc = run_playbook(tmp_path / "play.yml", "-e", "out=%s" % (tmp_path / "out.json"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["progress"]["migrations"] == [{"domain": "test", "state": "running"}]
    assert out["facts"]["host"]["inventory_source"] == "libvirt", out["facts"]
    assert [domain["name"] for domain in out["facts"]["domains"]] == ["test"]
    assert "domain test is running on both the source and the destination" in out["migrate"]["msg"], out["migrate"]
