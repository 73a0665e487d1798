# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
---
name: migration_progress
type: aggregate
short_description: Print how far running live migrations have got, at every poll
version_added: 0.1.0
description:
  - While a task of M(presplit.kvm.migration_progress) is retried with C(until) (the C(presplit.kvm.live_migration)
    role does so while its migrations run in the background), prints one line per poll and host with each domain's
    state, the share of its memory sent, the pass, what is left, the bandwidth and the time so far.
  - Works next to any stdout callback. Enable it with C(callbacks_enabled = presplit.kvm.migration_progress) in the
    C([defaults]) section of C(ansible.cfg), or C(ANSIBLE_CALLBACKS_ENABLED).
author:
  - presplit.kvm developers (@presplit)
requirements:
  - enabled in C(callbacks_enabled)
'''

from ansible.plugins.callback import CallbackBase

from ansible_collections.presplit.kvm.plugins.plugin_utils.migration_progress_line import progress_line

ACTIONS = ('presplit.kvm.migration_progress', 'migration_progress')


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'presplit.kvm.migration_progress'
    CALLBACK_NEEDS_ENABLED = True

    def _show(self, result):
        task = result._task
        if getattr(task, 'resolved_action', None) not in ACTIONS and task.action not in ACTIONS:
            return
        line = progress_line(result._host.get_name(), result._result)
        if line:
            self._display.display(line)

    def v2_runner_retry(self, result):
        self._show(result)

    def v2_runner_on_ok(self, result):
        self._show(result)
