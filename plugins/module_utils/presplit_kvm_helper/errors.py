# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Errors of the host helper: one class per situation an operator must tell apart.

Each error has a stable ``code`` (used in JSON output and module results) and a CLI
exit status, so scripts can react without parsing messages.
"""


class PresplitError(Exception):
    code = "error"
    exit_status = 1

    def as_dict(self):
        return {"code": self.code, "message": str(self)}


class InvalidArgument(PresplitError):
    code = "invalid_argument"
    exit_status = 2


class Unsupported(PresplitError):
    """The host kernel cannot do what was asked (no capability, foreign-caller -EIO, ...)."""
    code = "unsupported"
    exit_status = 3


class DomainNotFound(PresplitError):
    code = "domain_not_found"
    exit_status = 4


class DomainNotRunning(PresplitError):
    code = "domain_not_running"
    exit_status = 4


class NotKvmAccelerated(PresplitError):
    code = "not_kvm_accelerated"
    exit_status = 5


class PermissionDenied(PresplitError):
    code = "permission_denied"
    exit_status = 6


class ProcessMismatch(PresplitError):
    """The pid is gone, reused, or not provably this domain's QEMU."""
    code = "process_mismatch"
    exit_status = 7


class MalformedState(PresplitError):
    """libvirt's description of a domain (its XML, a status file) is not what libvirt writes."""
    code = "malformed_state"
    exit_status = 9


class KvmIoctlFailed(PresplitError):
    code = "ioctl_failed"
    exit_status = 8

    def __init__(self, message, errno_value=None, progress=None):
        super(KvmIoctlFailed, self).__init__(message)
        self.errno = errno_value
        self.progress = progress


def exit_status_for_code(code):
    """CLI exit status of an error ``code`` (also for codes carried in result dicts)."""
    for cls in (InvalidArgument, Unsupported, DomainNotFound, DomainNotRunning, NotKvmAccelerated,
                PermissionDenied, ProcessMismatch, KvmIoctlFailed, MalformedState):
        if cls.code == code:
            return cls.exit_status
    return PresplitError.exit_status


EXIT_STATUS_DOC = """exit status:
  0  success (or nothing to do)
  1  internal error
  2  invalid argument
  3  unsupported: kernel lacks KVM_SPLIT_HUGE_PAGES / foreign-caller ioctls (-EIO)
  4  domain not found or not running
  5  domain is not KVM-accelerated (TCG)
  6  permission denied (needs root or CAP_SYS_PTRACE)
  7  QEMU process vanished, was reused, or does not match the domain
  8  a KVM ioctl failed part-way (see the reported range)
  9  libvirt's description of the domain is malformed (domain XML, status file)
 10  several domains failed differently (see per-domain results)
130  interrupted (SIGINT)"""
