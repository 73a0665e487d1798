# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the modules check of their options beyond what an argument spec can say: each
number within its documented range (NaN and infinities refused: a NaN compares false with
every bound and ends as invalid JSON), and no control characters in text that ends up in a
libvirt lookup, a URI, a file name or a message (a newline splits one error into two
lines, a NUL byte fails deep inside a system call). Each check gives a one-line message
that names the option, or None."""

from ansible_collections.presplit.kvm.plugins.module_utils.presplit_kvm_helper.domain import has_control_characters


def number_problem(name, value, lowest, highest):
    """The message for a number outside lowest..highest, NaN or infinite; None if fine."""
    # "not lowest <= value <= highest" is also true for NaN.
    if value is not None and not lowest <= value <= highest:
        return "%s must be from %s to %s, got %s" % (name, _bound(lowest), _bound(highest), value)
    return None


def _bound(number):
    """A bound as its documentation writes it: 4096, not 4096.0."""
    return int(number) if isinstance(number, float) and number.is_integer() else number


def text_problem(name, value):
    """The message for a text (or a list of texts) with a control character; None if fine."""
    for text in value if isinstance(value, list) else [value]:
        if isinstance(text, str) and has_control_characters(text):
            return "%s must not contain control characters, got %r" % (name, text)
    return None


def option_problem(params, ranges=None, texts=()):
    """The first problem of params: a text of ``texts`` with a control character, else a
    number outside its (lowest, highest) of ``ranges``. None if there is none."""
    for name in texts:
        problem = text_problem(name, params.get(name))
        if problem:
            return problem
    for name, (lowest, highest) in sorted((ranges or {}).items()):
        problem = number_problem(name, params.get(name), lowest, highest)
        if problem:
            return problem
    return None
