# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

class ModuleDocFragment(object):
    """The connection option of the modules that talk to the local libvirt daemon (the
    presplit.kvm.libvirt action group, so module_defaults can set it once)."""

    DOCUMENTATION = r"""
options:
  uri:
    description:
      - libvirt connection URI of the host's hypervisor.
      - Set it for every module of the group at once with C(module_defaults) and C(group/presplit.kvm.libvirt).
    type: str
    default: qemu:///system
"""
