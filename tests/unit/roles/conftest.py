"""Roles run by ansible-playbook itself on localhost: a test writes a play (over a role's vars
files, or including its tasks) and runs it with its cases as extra vars."""

import json
import os

import pytest

REPO = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


@pytest.fixture(scope="module")
def run_local_play(tmp_path_factory, run_playbook):
    """run_local_play(play, role_files, extra_vars) -> the directory the play may write to
    (extra var ``output_dir``). ``play`` is YAML with ``%(vars_files)s`` where the role
    files go, each given as "<role>/<path>"; a failing play fails the test with its output."""
    def run(play, role_files, extra_vars):
        tmp = tmp_path_factory.mktemp("play")
        paths = [os.path.join(REPO, "roles", name) for name in role_files]
        (tmp / "play.yml").write_text(play % {"vars_files": json.dumps(paths)})
        (tmp / "vars.json").write_text(json.dumps(dict(extra_vars, output_dir=str(tmp))))
        proc = run_playbook(tmp / "play.yml", "-e", "@%s" % (tmp / "vars.json"))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return tmp
    return run
