"""The host helper stays a standard-library package that runs without Ansible, from a checkout too.

Hosts get plugins/module_utils/presplit_kvm_helper copied as it is (roles/presplit) and run it
with their own python3; nothing else is installed there. The optional libvirt binding is the
one exception, and only inside functions, where its absence is handled.
"""
import ast
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
PACKAGE_DIR = os.path.join(REPO, "plugins", "module_utils", "presplit_kvm_helper")
LAUNCHER = os.path.join(REPO, "scripts", "kvm-presplit")
# python3-libvirt: used when present, never needed.
OPTIONAL_BINDINGS = {"libvirt", "libvirt_qemu"}


def package_files():
    return sorted(name for name in os.listdir(PACKAGE_DIR) if name.endswith(".py"))


def foreign_imports(source, filename):
    """(line, module, why) of every import that a host without Ansible could not satisfy."""
    tree = ast.parse(source, filename)
    in_function = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function.update(id(child) for child in ast.walk(node) if child is not node)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:          # relative: inside the package
                continue
            modules = [node.module]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        else:
            continue
        for module in modules:
            top = module.split(".")[0]
            if top in sys.stdlib_module_names or top == "__future__":
                continue
            if top in OPTIONAL_BINDINGS and id(node) in in_function:
                continue
            why = ("optional binding imported at module level" if top in OPTIONAL_BINDINGS
                   else "not in the standard library")
            found.append((node.lineno, module, why))
    return found


def test_the_package_is_what_the_role_copies():
    assert "__init__.py" in package_files() and "cli.py" in package_files()
    with open(os.path.join(PACKAGE_DIR, "__init__.py"), encoding="utf-8") as init:
        assert init.read() == ""    # ansible-test's empty-init rule for module_utils


@pytest.mark.parametrize("name", package_files())
def test_every_import_is_standard_library_or_relative(name):
    path = os.path.join(PACKAGE_DIR, name)
    with open(path, encoding="utf-8") as source:
        assert foreign_imports(source.read(), path) == []


@pytest.mark.parametrize("source, expected", [
    ("import yaml\n", [(1, "yaml", "not in the standard library")]),
    ("from ansible.module_utils.basic import AnsibleModule\n",
     [(1, "ansible.module_utils.basic", "not in the standard library")]),
    ("import libvirt\n", [(1, "libvirt", "optional binding imported at module level")]),
    ("def f():\n    import libvirt\n    return libvirt\n", []),
    ("from . import uapi\nimport os, json\nfrom __future__ import annotations\n", []),
])
def test_the_import_check_catches_what_it_must(source, expected):
    assert foreign_imports(source, "<test>") == expected


def isolated_python(*args):
    """This Python with no site-packages (-S) and no environment or user site (-I): no Ansible,
    no libvirt binding, no pytest, as on a bare host."""
    return subprocess.run([sys.executable, "-I", "-S"] + list(args), capture_output=True, text=True,
                          timeout=60, check=False)


def test_every_module_imports_without_site_packages():
    script = ("import importlib, sys\n"
              "sys.path.insert(0, sys.argv[1])\n"
              "for name in sys.argv[2:]:\n"
              "    importlib.import_module('presplit_kvm_helper.' + name)\n"
              "assert not [m for m in sys.modules if m.split('.')[0] in ('ansible', 'ansible_collections')]\n")
    # __main__ runs the CLI: the launcher test below runs it.
    modules = [name[:-3] for name in package_files() if name not in ("__init__.py", "__main__.py")]
    result = isolated_python("-c", script, os.path.dirname(PACKAGE_DIR), *modules)
    assert result.returncode == 0, result.stderr


def test_the_checkout_launcher_runs_the_cli():
    def launch(*args):
        env = dict(os.environ, PYTHON=sys.executable)
        return subprocess.run([LAUNCHER] + list(args), capture_output=True, text=True, timeout=60, check=False,
                              env=env, cwd="/")
    result = launch("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: kvm-presplit")
    for command in ("status", "split", "release"):
        assert command in result.stdout
    bad = launch("split", "guest", "--rate", "-3")
    assert bad.returncode == 2 and "rate" in bad.stderr
