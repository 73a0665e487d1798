# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The progress line the migration_progress callback prints, from a migration_progress result."""


MIB = 1024 * 1024


def describe(entry):
    """One domain's part of the line, e.g. 'w1 45.0% pass 2, 70 MiB left, 3.0 MiB/s, 12 s'."""
    state = entry.get('state')
    name = entry.get('domain', '?')
    if state == 'gone':
        return '%s gone' % name
    if state != 'migrating':
        return '%s not migrating' % name
    parts = ['%s %s%%' % (name, entry['percent']) if 'percent' in entry else name]
    if 'iteration' in entry:
        parts[0] += ' pass %d' % entry['iteration']
    if 'memory_remaining_bytes' in entry:
        parts.append('%d MiB left' % (entry['memory_remaining_bytes'] // MIB))
    if 'bandwidth_mib_per_s' in entry:
        parts.append('%.1f MiB/s' % entry['bandwidth_mib_per_s'])
    parts.append('%.0f s' % entry.get('elapsed_s', 0))
    return ', '.join(parts)


def progress_line(host, result):
    """The line for one poll result of migration_progress on host, or None if it has none."""
    migrations = result.get('migrations')
    if not migrations:
        return None
    return '%s: %d migrating | %s' % (host, result.get('migrating', 0), ' | '.join(describe(m) for m in migrations))
