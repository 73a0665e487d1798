# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cyclic garbage collector paused while a large structure without reference cycles
is built (``cycle_collection_paused``).

The collector runs each time allocations outnumber deallocations by a threshold, and
then walks every container object of the generations it collects: building 100,000
entries runs it again and again over the same ever growing set of objects (a fifth of
the evacuation planner's time).  Reference counting frees objects without cycles all the
same; any with cycles wait for the collector's next run.
"""

import contextlib
import gc


@contextlib.contextmanager
def cycle_collection_paused():
    """Pause the cyclic garbage collector for the block, if it runs."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
