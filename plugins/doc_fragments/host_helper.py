# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

class ModuleDocFragment(object):
    """Options and notes shared by the modules that reach into a host's QEMU processes."""

    DOCUMENTATION = r"""
options:
  run_dir:
    description: libvirt's QEMU run directory, holding C(<name>.pid) and the status XML C(<name>.xml).
    type: path
    default: /run/libvirt/qemu
  state_dir:
    description:
      - Directory where the presplit helper records the holds it placed (tmpfs, like the holds
        themselves, which do not survive a reboot either).
    type: path
    default: /run/presplit-kvm/holds
  use_libvirt:
    description: Connect to libvirt. When false, running domains are read from O(run_dir) only.
    type: bool
    default: true
notes:
  - The permission model is that of C(pidfd_getfd(2)) - root, or C(CAP_SYS_PTRACE) with ptrace
    access to QEMU. The module never lowers it.
"""
