# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

class ModuleDocFragment(object):
    """The attributes every module of the collection shares; a module adds the description
    of what check mode does for it."""

    # Every module: none changes a file or setting an operator would diff.
    DOCUMENTATION = r"""
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
    description: Returns no diff.
"""

    # Modules that only read.
    READ_ONLY = r"""
attributes:
  check_mode:
    description: The module only reads; check mode returns the same result.
"""

    # Modules for the controller (pure computation, no host access).
    CONTROLLER = r"""
attributes:
  platform:
    description: Runs wherever Python runs; meant for the controller.
    support: full
    platforms: posix
"""

    # Modules that run on the KVM host.
    KVM_HOST = r"""
attributes:
  platform:
    description: Runs on the KVM host (Linux).
    support: full
    platforms: posix
"""
