# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""pidfd_open(2) and pidfd_getfd(2) through raw syscall numbers (Python < 3.9 lacks them).

pidfd_getfd needs Linux >= 5.6 and PTRACE_MODE_ATTACH_REALCREDS over the target:
root, or CAP_SYS_PTRACE (plus Yama ptrace_scope permitting it).
"""

import ctypes
import errno
import os
import platform


# pidfd syscalls share one number on every architecture (asm-generic unified table).
SYS_PIDFD_OPEN = 434
SYS_PIDFD_GETFD = 438
SUPPORTED_MACHINES = ("x86_64", "aarch64", "ppc64le", "s390x")

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


def _check_machine():
    machine = platform.machine()
    if machine not in SUPPORTED_MACHINES:
        raise OSError(errno.ENOSYS, "pidfd syscalls not wired for machine %s" % machine)


def pidfd_open(pid):
    """Return a pidfd pinning ``pid``; raises OSError (ESRCH if it is gone)."""
    _check_machine()
    fd = _syscall(ctypes.c_long(SYS_PIDFD_OPEN), ctypes.c_int(pid), ctypes.c_uint(0))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, "pidfd_open(%d): %s" % (pid, os.strerror(err)))
    return fd


def pidfd_getfd(pidfd, target_fd):
    """Duplicate ``target_fd`` of the process behind ``pidfd`` into this process (O_CLOEXEC)."""
    _check_machine()
    fd = _syscall(ctypes.c_long(SYS_PIDFD_GETFD), ctypes.c_int(pidfd),
                  ctypes.c_int(target_fd), ctypes.c_uint(0))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, "pidfd_getfd(fd %d): %s" % (target_fd, os.strerror(err)))
    return fd
