# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prove a pid is a given domain's QEMU and take its ``anon_inode:kvm-vm`` fd.

Order of checks, so that nothing is touched unless every one passes:
  1. the caller has CAP_SYS_PTRACE (root has it); pidfd_getfd needs ptrace rights
     and we refuse to probe what we could not finish;
  2. /proc/PID/exe is a qemu-system-* (or qemu-kvm) binary and /proc/PID/cmdline
     carries ``-uuid <domain uuid>``; /proc/PID/stat's starttime is recorded;
  3. exactly one fd of the process reads back as ``anon_inode:kvm-vm``
     (none -> the domain is not KVM-accelerated, i.e. TCG);
  4. pidfd_open(pid), then starttime is read again: equal means the pidfd pins the
     very process checked in 2 (a reused pid would have a later starttime);
  5. pidfd_getfd through that pidfd, which cannot hit another process.
"""

import errno
import os
import select

from .errors import NotKvmAccelerated, PermissionDenied, ProcessMismatch
from .pidfd import pidfd_getfd, pidfd_open


CAP_SYS_PTRACE = 19
KVM_VM_FD_LINK = "anon_inode:kvm-vm"
QEMU_EXE_PREFIXES = ("qemu-system-",)
QEMU_EXE_NAMES = ("qemu-kvm",)


def has_cap_sys_ptrace(status_path="/proc/self/status"):
    with open(status_path) as status:
        for line in status:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) & (1 << CAP_SYS_PTRACE))
    return False


def require_ptrace_capability():
    if not has_cap_sys_ptrace():
        raise PermissionDenied(
            "taking a VM fd out of QEMU needs ptrace rights: run as root or with "
            "CAP_SYS_PTRACE (uid %d lacks it); nothing was touched" % os.geteuid())


def _proc_error(pid, exc, what):
    if isinstance(exc, PermissionError):
        return PermissionDenied("cannot read %s of pid %d: %s" % (what, pid, exc.strerror))
    return ProcessMismatch("pid %d vanished while reading %s (%s)" % (pid, what, exc.strerror))


def read_starttime(pid):
    """Field 22 of /proc/PID/stat (clock ticks since boot); parsed after the last ')'."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as stat:
            data = stat.read()
    except OSError as exc:
        raise _proc_error(pid, exc, "/proc/PID/stat")
    fields = data[data.rindex(b")") + 2:].split()
    return int(fields[19])


def read_exe(pid):
    try:
        exe = os.readlink("/proc/%d/exe" % pid)
    except OSError as exc:
        raise _proc_error(pid, exc, "/proc/PID/exe")
    # An upgraded-but-still-running QEMU shows "<path> (deleted)"; it is still QEMU.
    suffix = " (deleted)"
    return exe[:-len(suffix)] if exe.endswith(suffix) else exe


def read_cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as cmdline:
            raw = cmdline.read()
    except OSError as exc:
        raise _proc_error(pid, exc, "/proc/PID/cmdline")
    return [arg.decode("utf-8", "surrogateescape") for arg in raw.split(b"\0") if arg]


def cmdline_uuid(argv):
    for index, arg in enumerate(argv[:-1]):
        if arg == "-uuid":
            return argv[index + 1].lower()
    return None


def is_qemu_exe(exe):
    base = os.path.basename(exe)
    return base in QEMU_EXE_NAMES or base.startswith(QEMU_EXE_PREFIXES)


def find_kvm_vm_fds(pid):
    """Numbers of the process's fds that read back as anon_inode:kvm-vm."""
    fd_dir = "/proc/%d/fd" % pid
    try:
        names = os.listdir(fd_dir)
    except OSError as exc:
        raise _proc_error(pid, exc, "/proc/PID/fd")
    found = []
    for name in names:
        try:
            if os.readlink(os.path.join(fd_dir, name)) == KVM_VM_FD_LINK:
                found.append(int(name))
        except OSError as exc:
            if exc.errno != errno.ENOENT:   # fd closed meanwhile: not ours to report
                raise _proc_error(pid, exc, "/proc/PID/fd")
    return sorted(found)


class QemuIdentity:
    """A pid proven to run QEMU for ``uuid``, with the starttime seen at proof time."""

    def __init__(self, pid, uuid, exe, starttime):
        self.pid = pid
        self.uuid = uuid
        self.exe = exe
        self.starttime = starttime


def prove_qemu_process(pid, uuid):
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 1:
        raise ProcessMismatch("invalid QEMU pid %r" % (pid,))
    uuid = uuid.lower()
    starttime = read_starttime(pid)
    exe = read_exe(pid)
    if not is_qemu_exe(exe):
        raise ProcessMismatch("pid %d runs %s, not a qemu-system binary (stale pid file or reused pid)" % (pid, exe))
    found_uuid = cmdline_uuid(read_cmdline(pid))
    if found_uuid != uuid:
        raise ProcessMismatch("pid %d is QEMU for uuid %s, not %s" % (pid, found_uuid, uuid))
    if read_starttime(pid) != starttime:
        raise ProcessMismatch("pid %d was replaced while being checked" % pid)
    return QemuIdentity(pid, uuid, exe, starttime)


class VmFdHandle:
    """A duplicate of QEMU's VM fd plus the pidfd pinning QEMU; close() releases both."""

    def __init__(self, identity, owner_fd, vm_fd, pidfd):
        self.identity = identity
        self.owner_fd = owner_fd    # the fd number inside QEMU (names the debugfs dir)
        self.vm_fd = vm_fd
        self.pidfd = pidfd

    def owner_alive(self):
        """False once QEMU has exited: a pidfd turns readable when its process exits."""
        poller = select.poll()
        poller.register(self.pidfd, select.POLLIN)
        return not poller.poll(0)

    def close(self):
        for fd in (self.vm_fd, self.pidfd):
            if fd is not None:
                os.close(fd)
        self.vm_fd = self.pidfd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def take_vm_fd(pid, uuid):
    """Return a VmFdHandle for the QEMU of domain ``uuid`` running as ``pid``."""
    require_ptrace_capability()
    identity = prove_qemu_process(pid, uuid)
    vm_fds = find_kvm_vm_fds(pid)
    if not vm_fds:
        raise NotKvmAccelerated(
            "QEMU pid %d of domain %s holds no %s fd: the domain is not KVM-accelerated (TCG)"
            % (pid, uuid, KVM_VM_FD_LINK))
    if len(vm_fds) > 1:
        raise ProcessMismatch("QEMU pid %d holds %d VM fds (%s); refusing to guess"
                              % (pid, len(vm_fds), ", ".join(map(str, vm_fds))))
    try:
        pidfd = pidfd_open(pid)
    except OSError as exc:
        raise ProcessMismatch("QEMU pid %d is gone (%s)" % (pid, exc.strerror))
    try:
        if read_starttime(pid) != identity.starttime:
            raise ProcessMismatch("pid %d was reused by another process before its pidfd was taken" % pid)
        try:
            vm_fd = pidfd_getfd(pidfd, vm_fds[0])
        except OSError as exc:
            if exc.errno == errno.EPERM:
                raise PermissionDenied("pidfd_getfd on QEMU pid %d: not permitted (ptrace rights, "
                                       "Yama ptrace_scope or an LSM refused)" % pid)
            raise ProcessMismatch("pidfd_getfd(pid %d, fd %d) failed: %s (QEMU exited or closed the fd)"
                                  % (pid, vm_fds[0], exc.strerror))
        link = os.readlink("/proc/self/fd/%d" % vm_fd)
        if link != KVM_VM_FD_LINK:
            os.close(vm_fd)
            raise ProcessMismatch("fd %d of pid %d turned into %s while being taken" % (vm_fds[0], pid, link))
    except BaseException:
        os.close(pidfd)
        raise
    return VmFdHandle(identity, vm_fds[0], vm_fd, pidfd)
