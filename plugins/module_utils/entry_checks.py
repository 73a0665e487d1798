# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The entries of a list-of-dicts option checked against their argument spec
(``checked_entries``) for a fraction of what AnsibleModule spends on each: given as
suboptions, 100,000 entries took it about 10 s.

An entry whose values already are what Ansible would make of them (strings, ints, floats,
booleans and lists of strings, as facts gathered by a module have them) only gets its
defaults filled in here; any other entry goes through Ansible's own ArgumentSpecValidator,
so it is converted or refused as AnsibleModule would.  Covers the suboption specs the
collection uses: ``type`` str, int, float, bool or list with ``elements: str``,
``required``, ``default`` and ``choices``.
"""

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.errors import UnsupportedError

SPEC_KEYS = frozenset(('type', 'required', 'default', 'choices', 'elements'))
# The Python types each option type keeps as they are (Ansible turns an int given for a float into a float).
KEPT = {'str': (str,), 'int': (int,), 'float': (float, int), 'bool': (bool,), 'list': (list,)}


def checked_entries(option, entries, spec):
    """(``entries`` with every key of ``spec`` set, None), or (None, a one-line message that
    names ``option``, the entry's position and the problem).  The entries are dicts, as an
    argument spec with ``elements: dict`` leaves them."""
    for name, item in spec.items():
        kind = item.get('type', 'str')
        if not SPEC_KEYS.issuperset(item) or kind not in KEPT or (kind == 'list') != (item.get('elements') == 'str'):
            raise ValueError('checked_entries cannot check %s.%s: %r' % (option, name, item))
    kinds = dict((name, item.get('type', 'str')) for name, item in spec.items())
    choices = dict((name, item['choices']) for name, item in spec.items() if 'choices' in item)
    required = frozenset(name for name, item in spec.items() if item.get('required'))
    defaults = dict((name, item.get('default')) for name, item in spec.items() if not item.get('required'))
    floats = [name for name, kind in kinds.items() if kind == 'float']
    validator = ArgumentSpecValidator(spec)
    checked = []
    for index, entry in enumerate(entries):
        if _kept_as_given(entry, kinds, choices, required):
            entry = dict(defaults, **entry)
            for name in floats:
                if isinstance(entry[name], int):
                    entry[name] = float(entry[name])
            checked.append(entry)
            continue
        try:
            result = validator.validate(entry)
        except OverflowError as error:
            # Ansible's own int check lets int(inf) raise.
            return None, '%s[%d]: %s' % (option, index, error)
        if result.error_messages:
            # As AnsibleModule says it: an unsupported parameter's error gives only its name.
            what = 'unsupported parameters: ' if isinstance(result.errors.errors[0], UnsupportedError) else ''
            return None, '%s[%d]: %s%s' % (option, index, what, result.error_messages[0])
        checked.append(result.validated_parameters)
    return checked, None


def _kept_as_given(entry, kinds, choices, required):
    """Whether Ansible would keep every value of ``entry`` as it is: a known key, a value
    of a type its option type keeps (not None, not a bool for a number), one of its
    choices; and no required key missing."""
    for name, value in entry.items():
        kind = kinds.get(name)
        if kind is None or not isinstance(value, KEPT[kind]) or isinstance(value, bool) and kind != 'bool':
            return False
        if kind == 'list' and not all(isinstance(item, str) for item in value):
            return False
        if name in choices and value not in choices[name]:
            return False
    return required.issubset(entry)
