# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``python3 -m presplit_kvm_helper``: the kvm-presplit CLI (scripts/kvm-presplit runs it from a checkout)."""

from .cli import main


if __name__ == "__main__":
    raise SystemExit(main())
