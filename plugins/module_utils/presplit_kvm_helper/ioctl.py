# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Thin wrappers for the few KVM ioctls the helper issues (system fd and VM fd)."""

import errno
import fcntl
import os

from .uapi import (KVM_API_VERSION, KVM_CHECK_EXTENSION, KVM_CREATE_VM,
                   KVM_GET_API_VERSION, KVM_GET_STATS_FD)


KVM_DEVICE = "/dev/kvm"


def open_kvm(path=KVM_DEVICE):
    """Open /dev/kvm read-write and check the API version (raises OSError)."""
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        version = fcntl.ioctl(fd, KVM_GET_API_VERSION, 0)
        if version != KVM_API_VERSION:
            raise OSError(errno.EPROTO, "KVM API version %d, expected %d" % (version, KVM_API_VERSION))
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_extension(fd, cap):
    """KVM_CHECK_EXTENSION on /dev/kvm or a VM fd: 0 = absent, otherwise cap-specific."""
    return fcntl.ioctl(fd, KVM_CHECK_EXTENSION, cap)


def create_vm(kvm_fd, machine_type=0):
    """KVM_CREATE_VM; returns the VM fd (owned by this process's mm)."""
    return fcntl.ioctl(kvm_fd, KVM_CREATE_VM, machine_type)


def get_stats_fd(vm_fd):
    """KVM_GET_STATS_FD on a VM fd. A foreign caller gets EIO on an unpatched kernel."""
    return fcntl.ioctl(vm_fd, KVM_GET_STATS_FD, 0)
