# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The evacuation_plan module: arguments in, plan or clear failure out, nothing changed."""

import json

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args

from ansible_collections.presplit.kvm.plugins.modules import evacuation_plan


def run_module(capsys, args, check_mode=False):
    if check_mode:
        args = dict(args, _ansible_check_mode=True)
    with patch_module_args(args):
        with pytest.raises(SystemExit) as leaving:
            evacuation_plan.main()
    result = json.loads(capsys.readouterr().out)
    return leaving.value.code, result


FLEET = {
    'hosts': [
        {'name': 'hv01', 'memory_free_mib': 2048, 'kernel_mode': 'eager-split-only'},
        {'name': 'hv02', 'memory_free_mib': 65536, 'hugepages_1g_free': 32, 'vcpus_free': 48, 'kernel_mode': 'patched'},
        {'name': 'hv03', 'memory_free_mib': 98304, 'vcpus_free': 64, 'kernel_mode': 'patched'},
    ],
    'domains': [
        {'name': 'db1', 'host': 'hv01', 'memory_mib': 16384, 'vcpus': 8, 'backing': 'hugetlb-1G',
         'anti_affinity': ['db'], 'dirty_rate_mib_per_s': 120},
        {'name': 'db2', 'host': 'hv03', 'memory_mib': 16384, 'anti_affinity': ['db']},
        {'name': 'web1', 'host': 'hv01', 'memory_mib': 4096, 'backing': 'thp'},
    ],
    'drain': ['hv01'],
}


@pytest.mark.parametrize('check_mode', [False, True])
def test_plan_is_returned_and_nothing_changes(capsys, check_mode):
    code, result = run_module(capsys, dict(FLEET, detail='full'), check_mode)
    assert code == 0
    assert result['changed'] is False
    assert result['placement'] == {'db1': 'hv02', 'web1': 'hv03'}
    assert [len(w['migrations']) for w in result['waves']] == [1, 1]
    assert result['summary']['migrations'] == 2
    assert [entry['domain'] for entry in result['without_presplit']] == ['db1', 'web1']
    # Warnings are structured since ansible-core 2.19; their text is what an operator reads.
    assert 'cannot pre-split (db1, web1)' in json.dumps(result['warnings'])


def test_summary_by_default(capsys):
    code, result = run_module(capsys, FLEET)
    assert code == 0
    assert sorted(result) == ['changed', 'invocation', 'shutdown', 'skipped_hosts', 'summary', 'warnings']
    assert (result['summary']['migrations'], result['summary']['without_presplit']) == (2, 2)
    assert '2 huge-page-backed domain(s) leave hosts whose kernel cannot pre-split: ' in json.dumps(result['warnings'])
    # The fleet's facts are counted in the echoed arguments, not repeated.
    args = result['invocation']['module_args']
    assert (args['hosts'], args['domains'], args['drain'], args['detail']) == ('3 entries', '3 entries', ['hv01'], 'summary')


def test_limit_defaults_come_from_the_argument_spec(capsys):
    code, result = run_module(capsys, dict(FLEET, limits={'max_outgoing_per_host': 1}, detail='full'))
    assert code == 0
    # hv01's link (1192 MiB/s by default) carries db1 then web1, one at a time.
    assert result['waves'][0]['migrations'][0]['bandwidth_mib_per_s'] == 1192.0
    assert result['waves'][1]['wait_for'] == ['db1']


@pytest.mark.parametrize('detail', ['summary', 'full'])
def test_fit_nowhere_fails_with_reasons(capsys, detail):
    fleet = dict(FLEET, domains=FLEET['domains'][:1] + [dict(FLEET['domains'][1], host='hv02')] + FLEET['domains'][2:],
                 detail=detail)
    code, result = run_module(capsys, fleet)
    assert code == 1 and result['failed'] is True
    assert result['msg'].startswith('1 domain(s) fit nowhere. db1 (from hv01, 16384 MiB hugetlb-1G, 8 vCPUs)')
    assert result['unplaced_count'] == 1
    assert result['unplaced'] == [{'domain': 'db1', 'source': 'hv01', 'cpu_group': 'default', 'memory_mib': 16384,
                                   'backing': 'hugetlb-1G', 'vcpus': 8, 'reasons': {
                                       'anti_affinity': {'hosts': 1, 'examples': {'hv02': 'anti-affinity group db already has db2 there'}},
                                       'hugetlb-1G': {'hosts': 1, 'examples': {'hv03': 'needs 16 hugetlb-1G pages, 0 left'}}}}]
    assert result['unplaced_by_cpu_group']['default']['needs']['hugepages_1g'] == 16
    if detail == 'full':
        assert result['placed'] == {'web1': 'hv03'}
    else:
        assert 'placed' not in result


def test_non_migratable_with_fail_policy(capsys):
    fleet = dict(FLEET, domains=FLEET['domains'] + [{'name': 'gpu1', 'host': 'hv01', 'memory_mib': 1024, 'pinned': True}])
    code, result = run_module(capsys, fleet)
    assert code == 1
    assert result['not_migratable'] == [{'domain': 'gpu1', 'reason': 'pinned to host hv01'}]


def test_bad_choice_is_rejected_by_the_argument_spec(capsys):
    code, result = run_module(capsys, dict(FLEET, non_migratable_policy='pray'))
    assert code == 1
    assert 'non_migratable_policy' in result['msg'] and 'pray' in result['msg']


@pytest.mark.parametrize('entry, value', [
    # Ansible's conversions, as for any option: a number given as text, a float given as an int.
    ({'memory_free_mib': '65536'}, {'memory_free_mib': 65536}),
    ({'vcpus_free': 48.0}, {'vcpus_free': 48}),
])
def test_entries_are_converted_as_ansible_does(capsys, entry, value):
    hosts = [FLEET['hosts'][0], dict(FLEET['hosts'][1], **entry), FLEET['hosts'][2]]
    code, result = run_module(capsys, dict(FLEET, hosts=hosts, detail='full'))
    assert code == 0, result['msg']
    assert result['placement'] == {'db1': 'hv02', 'web1': 'hv03'}


@pytest.mark.parametrize('option, entry, words', [
    ('hosts', {'memory_free_mib': 'lots'}, ['hosts[1]', 'memory_free_mib', 'int']),
    ('hosts', {'speed': 10}, ['hosts[1]: unsupported parameters: speed']),
    ('hosts', {'kernel_mode': 'shiny'}, ['hosts[1]', 'kernel_mode', 'shiny']),
    ('domains', {'memory_mib': None}, ['domains[1]', 'memory_mib']),
    ('domains', {'anti_affinity': 'db'}, []),
    ('domains', {'pinned': 'maybe'}, ['domains[1]', 'pinned', 'bool']),
])
def test_bad_entries_are_refused_naming_them(capsys, option, entry, words):
    entries = list(FLEET[option])
    entries[1] = dict(entries[1], **entry)
    code, result = run_module(capsys, dict(FLEET, **{option: entries}))
    if not words:
        # A string for a list of strings is a one-element list to Ansible.
        assert code == 0, result['msg']
        return
    assert code == 1 and '\n' not in result['msg']
    for word in words:
        assert word in result['msg']


def test_documented_suboptions_are_the_checked_ones():
    """The entries are not suboptions of the argument spec (checked_entries checks them), so
    validate-modules cannot compare them with the documentation: this does."""
    options = yaml.safe_load(evacuation_plan.DOCUMENTATION)['options']
    for option, spec in evacuation_plan.ENTRY_SPECS:
        documented = options[option]['suboptions']
        assert sorted(documented) == sorted(spec)
        for name, item in spec.items():
            doc = documented[name]
            assert (doc.get('type', 'str'), doc.get('required', False), doc.get('default'), doc.get('choices'), doc.get('elements')) == (
                item.get('type', 'str'), item.get('required', False), item.get('default'), item.get('choices'), item.get('elements')), (option, name)


@pytest.mark.parametrize('section, index, field, value, message', [
    ('domains', 0, 'vcpus', 0, 'domains[0].vcpus must be from 1 to 4096, got 0'),
    ('domains', 0, 'hugepages', 0, 'domains[0].hugepages must be from 1 to 549755813888, got 0'),
    ('domains', 2, 'dirty_rate_mib_per_s', 'nan', 'domains[2].dirty_rate_mib_per_s must be from 0 to 1048576, got nan'),
    ('domains', 1, 'name', 'db\n2', "domains[1].name must not contain control characters, got 'db\\n2'"),
    ('hosts', 1, 'memory_free_mib', -1, 'hosts[1].memory_free_mib must be from 0 to 1099511627776, got -1'),
    ('hosts', 0, 'cpu_group', 'a\x00b', "hosts[0].cpu_group must not contain control characters, got 'a\\x00b'"),
])
def test_out_of_range_and_control_characters_are_refused_by_position(capsys, section, index, field, value, message):
    """Nothing silently becomes something else (0 vCPUs as 1, NaN as a dirty rate the planner
    computes with): the entry is named by its position, since its name may be the problem."""
    args = json.loads(json.dumps(FLEET))
    args[section][index][field] = value
    code, result = run_module(capsys, args)
    assert code == 1 and result['msg'] == message and not result.get('changed')
