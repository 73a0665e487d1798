"""Make ``ansible_collections.presplit.kvm`` importable for plain pytest runs.

The checkout is exposed as that package through the symlink tree
``build/collections/ansible_collections/presplit/kvm`` (``make
collection-link``); pytest resolves the real path of the checkout, so the tree
root has to be put on ``sys.path`` explicitly.
"""
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(REPO, "build", "collections")
LINK = os.path.join(COLLECTIONS, "ansible_collections", "presplit", "kvm")

if not os.path.exists(LINK):
    os.makedirs(os.path.dirname(LINK), exist_ok=True)
    os.symlink(REPO, LINK)
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)
