"""Fixtures for the host helper tests: real QEMU processes on this machine's /dev/kvm.

``qemu_domains`` starts real ``qemu-system-x86_64`` processes, paused (``-S``) because the
paravirtual /dev/kvm here creates VMs and vCPUs but cannot run guests, with ``-accel kvm``
(they hold a real ``anon_inode:kvm-vm`` fd) or ``-accel tcg``. libvirt itself is the one
thing replaced: the fixture writes the pid file and status XML that libvirtd would write
into its run directory (``/run/libvirt/qemu``), so the helper runs with ``use_libvirt=False``.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid as uuidlib
from xml.sax.saxutils import escape, quoteattr

import pytest

COLLECTIONS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))), "build", "collections")
QEMU = shutil.which("qemu-system-x86_64")


def kvm_usable():
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR))
        return True
    except OSError:
        return False


@pytest.fixture
def require_kvm():
    if not kvm_usable() or QEMU is None:
        pytest.skip("needs a usable /dev/kvm (run as root) and qemu-system-x86_64")


def _wait_for_fd(pid, link, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            for name in os.listdir("/proc/%d/fd" % pid):
                try:
                    if os.readlink("/proc/%d/fd/%s" % (pid, name)).startswith(link):
                        return
                except OSError:
                    pass
        except OSError:
            raise AssertionError("QEMU pid %d exited during start-up" % pid)
        time.sleep(0.05)
    raise AssertionError("QEMU pid %d never opened %s" % (pid, link))


class QemuDomains:
    """Starts paused QEMU processes and registers them like libvirt does."""

    def __init__(self, run_dir):
        self.run_dir = str(run_dir)
        os.makedirs(self.run_dir, exist_ok=True)
        self.procs = []

    def start(self, name, accel="kvm", memory_mib=64, domain_uuid=None, hugepages=False):
        domain_uuid = domain_uuid or str(uuidlib.uuid4())
        proc = subprocess.Popen(
            [QEMU, "-accel", accel, "-S", "-nodefaults", "-display", "none", "-m", str(memory_mib),
             "-uuid", domain_uuid, "-name", "guest=%s" % name.replace(",", ",,"),
             "-monitor", "none", "-serial", "none"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        # a TCG QEMU has no VM fd; its vCPU thread's eventfds show it finished start-up
        _wait_for_fd(proc.pid, "anon_inode:kvm-vm" if accel == "kvm" else "anon_inode:[eventfd]")
        self.register(name, domain_uuid, proc.pid, "kvm" if accel == "kvm" else "qemu", memory_mib, hugepages)
        return {"name": name, "uuid": domain_uuid, "pid": proc.pid, "proc": proc}

    def register(self, name, domain_uuid, pid, virt_type="kvm", memory_mib=64, hugepages=False):
        backing = "<memoryBacking><hugepages><page size='2048' unit='KiB'/></hugepages></memoryBacking>" \
            if hugepages else ""
        with open(os.path.join(self.run_dir, name + ".pid"), "w") as handle:
            handle.write("%d\n" % pid)
        with open(os.path.join(self.run_dir, name + ".xml"), "w") as handle:
            handle.write("<domstatus state='running' reason='booted' pid=%s>\n"
                         "  <domain type=%s id='1'><name>%s</name><uuid>%s</uuid>"
                         "<memory unit='KiB'>%d</memory>%s</domain>\n</domstatus>\n"
                         % (quoteattr(str(pid)), quoteattr(virt_type), escape(name), domain_uuid,
                            memory_mib * 1024, backing))

    def stop_all(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait()


@pytest.fixture
def qemu_domains(tmp_path, require_kvm):  # pylint: disable=unused-argument,redefined-outer-name
    domains = QemuDomains(tmp_path / "run")
    yield domains
    domains.stop_all()


@pytest.fixture
def kvm_holder(require_kvm):  # pylint: disable=unused-argument,redefined-outer-name
    """A child process that creates a VM and waits: (pid, vm fd number in the child)."""
    code = ("import os, sys, fcntl\n"
            "kvm = os.open('/dev/kvm', os.O_RDWR)\n"
            "vm = fcntl.ioctl(kvm, 0xAE01, 0)\n"
            "sys.stdout.write('%d\\n' % vm); sys.stdout.flush()\n"
            "sys.stdin.read()\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    vm_fd = int(proc.stdout.readline())
    yield proc.pid, vm_fd
    proc.stdin.close()
    proc.wait()


def _run_python(code, *args, **kwargs):
    env = dict(os.environ, PYTHONPATH=COLLECTIONS)
    env.update(kwargs.pop("env", {}))
    return subprocess.run([sys.executable, "-c", code] + list(args), env=env, capture_output=True,
                          text=True, timeout=120, check=False, **kwargs)


@pytest.fixture
def collections_path():
    """The collections root that makes ansible_collections.presplit.kvm importable."""
    return COLLECTIONS


@pytest.fixture
def run_python():
    """Run code in a fresh interpreter that can import the collection: run(code, *argv, **popen_kw)."""
    return _run_python


@pytest.fixture
def run_module(tmp_path):
    """Run a presplit.kvm module as Ansible does (a subprocess reading an args file):
    run(name, check_mode=False, **args) -> the module's JSON result."""
    def run(name, check_mode=False, **args):
        args["_ansible_check_mode"] = check_mode
        path = tmp_path / ("args-%s.json" % name)
        path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
        result = subprocess.run([sys.executable, "-m", "ansible_collections.presplit.kvm.plugins.modules." + name,
                                 str(path)], env=dict(os.environ, PYTHONPATH=COLLECTIONS),
                                capture_output=True, text=True, timeout=120, check=False)
        assert result.stdout, result.stderr
        return json.loads(result.stdout)
    return run
