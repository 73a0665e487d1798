# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A host's pre-split mode, as host_info reports it and the planner and the report take it.

Names only, no imports: the controller-side code reads them without loading the helper's
KVM layer."""

MODE_PATCHED = "patched"
MODE_EAGER = "eager-split-only"
MODE_NONE = "none"
KERNEL_MODES = (MODE_PATCHED, MODE_EAGER, MODE_NONE)
