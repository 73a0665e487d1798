#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
---
module: migration_report
short_description: Write the JSON record and the HTML page of a live migration run
version_added: 0.1.0
description:
  - Turns the per-domain results of the presplit.kvm.live_migration role (its C(live_migration_results) fact) into a
    JSON record and a self-contained HTML page (inline CSS and SVG, no external resources) with a timeline (one lane
    per host, one bar per VM, the pre-split, pre-copy and downtime phases coloured), per-VM statistics, the failures
    listed first, and, when O(plan) is given, the predicted against the measured duration of every migration.
  - Runs on the controller; use C(delegate_to=localhost) and C(run_once=true) (or one report per source host).
  - The files depend on the inputs only, so writing the same run again changes nothing.
author:
  - presplit.kvm developers (@presplit)
extends_documentation_fragment:
  - presplit.kvm.attributes
  - presplit.kvm.attributes.controller
attributes:
  check_mode:
    description: Writes nothing; returns the paths and whether the files would change.
options:
  results:
    description:
      - One dict per domain with C(domain), C(source), C(destination), C(status) (C(migrated), C(already_migrated) or
        C(failed)), C(total_time_ms), C(downtime_ms), C(iterations), C(data_transferred), C(msg), and the wall-clock
        phase times in epoch seconds C(presplit_started), C(presplit_ended), C(migration_started),
        C(migration_ended) (a domain without them gets no bar on the timeline).
      - Optionally C(presplit) (the domain's entry of M(presplit.kvm.split_huge_pages), whose C(before) and C(after)
        mapping counts give the huge mappings before and after the pre-split) and C(source_mappings) (the
        M(presplit.kvm.live_migrate) result of that name, whose C(huge_split) is the huge mappings split inside the
        migration), C(source_kernel_mode) and C(destination_kernel_mode) (the hosts' modes as
        M(presplit.kvm.host_info) gives them, C(patched), C(eager-split-only) or C(none), or null when unknown).
    type: list
    elements: dict
    required: true
  plan:
    description:
      - The output of M(presplit.kvm.evacuation_plan) run with O(presplit.kvm.evacuation_plan#module:detail=full) (its
        C(waves) are read), to compare the predicted with the measured duration, destination and downtime of each
        migration.
    type: dict
  title:
    description: Title of the page and of the record.
    type: str
    default: Live migration run
  dest_dir:
    description: Directory the two files are written to; created when missing.
    type: path
    required: true
  name:
    description:
      - File name of the record and the page, without the C(.json) and C(.html) suffixes; at most 200 bytes.
      - Control characters are refused, here and in O(dest_dir) and O(title).
    type: str
    default: migration-report
seealso:
  - module: presplit.kvm.evacuation_plan
  - module: presplit.kvm.live_migrate
'''

EXAMPLES = r'''
- name: Migrate the guests off hv01
  ansible.builtin.include_role:
    name: presplit.kvm.live_migration
  vars:
    live_migration_domains: [db1, web1]
    live_migration_destinations: [hv02, hv03]
    live_migration_fail_on_error: false

- name: Write the report of the run next to the plan it followed
  presplit.kvm.migration_report:
    results: "{{ live_migration_results }}"
    plan: "{{ evacuation }}"
    title: Evacuation of hv01
    dest_dir: /var/log/presplit/reports
    name: hv01-evacuation
  delegate_to: localhost
  run_once: true
'''

RETURN = r'''
json_path:
  description: Path of the JSON record.
  returned: always
  type: str
  sample: /var/log/presplit/reports/hv01-evacuation.json
html_path:
  description: Path of the HTML page.
  returned: always
  type: str
  sample: /var/log/presplit/reports/hv01-evacuation.html
summary:
  description:
    - Totals of the run. C(wall_time_s) spans the first phase start to the last phase end (null without timestamps);
      C(planned_makespan_s) is there when O(plan) was given.
  returned: always
  type: dict
  sample: {domains: 3, migrated: 2, already_migrated: 0, failed: 1, wall_time_s: 7.412, max_downtime_ms: 164,
           data_transferred: 285212672, planned_makespan_s: 6.9}
failures:
  description: The failed domains with C(domain), C(source), C(destination) and C(msg).
  returned: always
  type: list
  elements: dict
  sample: [{domain: vm3, source: h1, destination: h3, msg: "migration failed: ..."}]
'''

import json
import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes

from ansible_collections.presplit.kvm.plugins.module_utils.migration_report import (
    ReportError, build_record, render_html)
from ansible_collections.presplit.kvm.plugins.module_utils.option_checks import option_problem

MAX_NAME_BYTES = 200

ARGUMENT_SPEC = dict(
    results=dict(type='list', elements='dict', required=True),
    plan=dict(type='dict'),
    title=dict(type='str', default='Live migration run'),
    dest_dir=dict(type='path', required=True),
    name=dict(type='str', default='migration-report'),
)


def file_differs(path, content):
    try:
        with open(path, 'rb') as current:
            return current.read() != content
    except (IOError, OSError):
        return True


def write_file(module, path, content):
    """Replace path atomically, so a reader never sees half a report."""
    handle, temp_path = tempfile.mkstemp(dir=os.path.dirname(path), prefix='.%s.' % os.path.basename(path))
    with os.fdopen(handle, 'wb') as temp:
        temp.write(content)
    os.chmod(temp_path, 0o644)
    module.atomic_move(temp_path, path)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    problem = option_problem(params, texts=('title', 'dest_dir', 'name'))
    if problem:
        module.fail_json(msg=problem)
    # Room for the suffixes and the temporary file's prefix within a file name's 255 bytes.
    if '/' in params['name'] or params['name'] in ('', '.', '..') or len(params['name'].encode('utf-8')) > MAX_NAME_BYTES:
        module.fail_json(msg='name must be a plain file name of at most %d bytes, got %r' % (MAX_NAME_BYTES, params['name']))
    try:
        record = build_record(params['results'], params['plan'], params['title'])
    except ReportError as error:
        module.fail_json(msg=str(error))
    base = os.path.join(params['dest_dir'], params['name'])
    files = {
        base + '.json': to_bytes(json.dumps(record, indent=2, sort_keys=True, ensure_ascii=False) + '\n'),
        base + '.html': to_bytes(render_html(record)),
    }
    to_write = [path for path, content in sorted(files.items()) if file_differs(path, content)]
    if to_write and not module.check_mode:
        if not os.path.isdir(params['dest_dir']):
            os.makedirs(params['dest_dir'])
        for path in to_write:
            write_file(module, path, files[path])
    verb = 'would write' if module.check_mode else 'wrote'
    module.exit_json(changed=bool(to_write), json_path=base + '.json', html_path=base + '.html',
                     summary=record['summary'], failures=record['failures'],
                     msg='%s %s' % (verb, ', '.join(to_write)) if to_write else 'report unchanged')


if __name__ == '__main__':
    main()
