# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters the live_migration and rolling_maintenance roles compute with
(plugins/module_utils/migration_schedule.py holds the logic and its documentation)."""

import functools

from ansible.errors import AnsibleFilterError

from ansible_collections.presplit.kvm.plugins.module_utils.migration_schedule import (
    ScheduleError, evacuation_limits, guest_hosts, host_migrations, host_problems, live_migrate_args, migration_results,
    migration_stats, pack_waves, place_domains)
from ansible_collections.presplit.kvm.plugins.plugin_utils.rolling_control import host_start_blocker


def _reported(function):
    """function, with its ScheduleError as the AnsibleFilterError Ansible shows."""
    @functools.wraps(function)
    def run(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except ScheduleError as error:
            raise AnsibleFilterError('presplit.kvm.%s: %s' % (function.__name__, error))
    return run


class FilterModule(object):
    """presplit.kvm.host_migrations, place_domains, live_migrate_args, evacuation_limits, pack_waves,
    migration_results, migration_stats, guest_hosts, host_problems, host_start_blocker."""

    def filters(self):
        return dict((function.__name__, _reported(function))
                    for function in (host_migrations, place_domains, live_migrate_args, evacuation_limits, pack_waves,
                                     migration_results, migration_stats, guest_hosts, host_problems,
                                     host_start_blocker))
