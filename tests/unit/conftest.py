"""Make ``ansible_collections.presplit.kvm`` importable for plain pytest runs, and run plays.

The checkout is exposed as that package through the symlink tree
``build/collections/ansible_collections/presplit/kvm`` (``make
collection-link``); pytest resolves the real path of the checkout, so the tree
root has to be put on ``sys.path`` explicitly.
"""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(REPO, "build", "collections")
LINK = os.path.join(COLLECTIONS, "ansible_collections", "presplit", "kvm")

if not os.path.exists(LINK):
    os.makedirs(os.path.dirname(LINK), exist_ok=True)
    os.symlink(REPO, LINK)
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")


@pytest.fixture(scope="session")
def run_playbook():
    """run_playbook(playbook, *args) -> ansible-playbook's CompletedProcess, run on localhost
    with the checkout's ansible.cfg (the collection through build/collections)."""
    def run(playbook, *args):
        env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"))
        return subprocess.run([ANSIBLE_PLAYBOOK, "-i", "localhost,", str(playbook)] + list(args),
                              capture_output=True, text=True, env=env, cwd=REPO, timeout=300, check=False)
    return run
