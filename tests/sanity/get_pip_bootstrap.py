"""Stand-in for ansible-test's pip bootstrap script (get-pip.py).

ansible-test bootstraps pip into each of its sanity venvs with a get-pip script
it downloads from its own file host, which our build machines cannot reach.
run-sanity.sh places this file where ansible-test caches that script.  Like
get-pip.py it is run as ``python get_pip.py [pip options] pip==X [...]
[--no-setuptools] [--no-wheel]``; it installs the requested packages from the
package index, running pip from the wheel Debian's python3-pip-whl ships.
"""
import glob
import os
import subprocess
import sys

GET_PIP_ONLY_OPTIONS = ("--no-setuptools", "--no-wheel")

wheels = sorted(glob.glob("/usr/share/python-wheels/pip-*.whl"))
if not wheels:
    sys.exit("get_pip_bootstrap: no pip wheel in /usr/share/python-wheels (install python3-pip-whl)")
args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY_OPTIONS]
subprocess.check_call([sys.executable, os.path.join(wheels[-1], "pip"), "install", "--quiet"] + args)
