# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""checked_entries gives what Ansible's own validation of the entries gives, fast path or not."""

import json

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from hypothesis import given, settings, strategies as st

from ansible_collections.presplit.kvm.plugins.module_utils.entry_checks import checked_entries
from ansible_collections.presplit.kvm.plugins.modules.evacuation_plan import DOMAIN_SPEC, HOST_SPEC

VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False, width=16), st.text(max_size=3),
                   st.sampled_from(['4096', '1.5', 'yes', 'thp', 'hugetlb-2M', 'patched', 'none']),
                   st.lists(st.one_of(st.text(max_size=2), st.integers(0, 2)), max_size=2))


TYPED = {'int': st.integers(-3, 3), 'float': st.one_of(st.floats(allow_nan=False), st.integers(-3, 3)), 'bool': st.booleans(),
         'str': st.text(max_size=3), 'list': st.lists(st.text(max_size=2), max_size=2)}


def entries(spec):
    """Any keys with any values, or the spec's keys (not always all) with values of their types."""
    typed = st.fixed_dictionaries({}, optional=dict(
        (name, st.sampled_from(item['choices']) if 'choices' in item else TYPED[item.get('type', 'str')])
        for name, item in spec.items()))
    return st.one_of(st.dictionaries(st.sampled_from(sorted(spec) + ['bogus']), VALUES, max_size=len(spec) + 1), typed)


def ansible_validation(entry, spec):
    result = ArgumentSpecValidator(spec).validate(entry)
    return result.validated_parameters, result.error_messages


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.sampled_from([HOST_SPEC, DOMAIN_SPEC]).flatmap(lambda spec: st.tuples(st.just(spec), entries(spec))))
def test_same_as_ansible(spec_and_entry):
    spec, entry = spec_and_entry
    checked, problem = checked_entries('domains', [entry], spec)
    try:
        validated, errors = ansible_validation(entry, spec)
    except OverflowError:
        # An infinite float for an int: Ansible's check raises, checked_entries says so in one line.
        assert checked is None and problem.startswith('domains[0]: cannot convert')
        return
    if errors:
        assert checked is None and problem.startswith('domains[0]: ') and errors[0] in problem
    else:
        assert problem is None
        # JSON tells 1 from 1.0 and True from 1.
        assert json.dumps(checked, sort_keys=True) == json.dumps([validated], sort_keys=True)


def test_defaults_are_filled_in_and_the_first_bad_entry_named():
    spec = {'name': {'type': 'str', 'required': True}, 'rate': {'type': 'float', 'default': 0},
            'tags': {'type': 'list', 'elements': 'str', 'default': []}, 'size': {'type': 'int'}}
    assert checked_entries('things', [{'name': 'a'}, {'name': 'b', 'rate': 2}], spec) == (
        [{'name': 'a', 'rate': 0, 'tags': [], 'size': None}, {'name': 'b', 'rate': 2.0, 'tags': [], 'size': None}], None)
    checked, problem = checked_entries('things', [{'name': 'a'}, {'rate': 1.5}, {'size': 'big'}], spec)
    assert checked is None and problem == 'things[1]: missing required arguments: name'


def test_a_spec_it_cannot_check_is_a_mistake():
    with pytest.raises(ValueError, match='cannot check things.name'):
        checked_entries('things', [], {'name': {'type': 'str', 'aliases': ['n']}})
