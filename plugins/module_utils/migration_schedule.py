# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the live_migration and rolling_maintenance roles compute, in plain Python.

The roles only orchestrate (loops, delegation, async, block/rescue); these functions,
reached through the collection's filters (plugins/filter/migration_schedule.py), decide:

  host_migrations    one source host's share of an evacuation plan, as live_migration
                     domain entries (the planner already says each migration's options
                     and what it waits for)
  place_domains      where each listed domain goes: its own destination, else round-robin
  live_migrate_args  the options shared by a run's live_migrate calls, by the module's
                     own option names
  evacuation_limits  the planner's limits with their defaults (the parallel migrations
                     a run allows per source and destination when no plan says more)
  pack_waves         the waves the pending migrations run in: planned waves as planned,
                     the others packed under the per-source and per-destination limits
  migration_results  one result per domain from the pre-checks, the async migrations'
                     outcomes, the post-checks and the waves' clocks
  guest_hosts        after a failure, which of the hosts that answered run each guest
  host_problems      what keeps a host's maintenance from starting: its libvirt, or a
                     destination that cannot be read or whose libvirt does not answer
"""

from collections.abc import Mapping

from ansible_collections.presplit.kvm.plugins.module_utils.migration_options import MigrationOptionError, canonical_options
from ansible_collections.presplit.kvm.plugins.module_utils.planner_model import KERNEL_MODES, PlanningError, resolve_limits

# Keys of a domain entry (a live_migration_domains item) carried to its placement.
PLAN_KEYS = ('wave', 'after', 'options')


class ScheduleError(ValueError):
    """Input the roles' computations cannot use; the message names the entry."""


def host_migrations(plan, host):
    """``host``'s planned migrations (evacuation_plan's result) as live_migration domain
    entries: {name, destination, wave, after, options}, in wave order."""
    if not isinstance(plan, Mapping) or not isinstance(plan.get('waves'), list):
        raise ScheduleError('host_migrations needs an evacuation plan with waves (evacuation_plan with detail: full), got %s'
                            % type(plan).__name__)
    entries = []
    for wave in plan['waves']:
        for migration in wave.get('migrations', []):
            if migration.get('source') != host:
                continue
            missing = [key for key in ('domain', 'destination', 'after', 'options') if key not in migration]
            if missing:
                raise ScheduleError('plan migration %r lacks %s (a plan from an older evacuation_plan?)'
                                    % (migration.get('domain'), ', '.join(missing)))
            entries.append({'name': migration['domain'], 'destination': migration['destination'],
                            'wave': wave['wave'], 'after': list(migration['after']),
                            'options': _options(migration['options'], migration['domain'])})
    return entries


def place_domains(domains, destinations):
    """[{domain, destination[, wave, after, options]}] per entry of ``domains`` (names, or
    mappings with ``name`` and optionally ``destination``, ``wave``, ``after``,
    ``options``): its own destination, else the next of ``destinations`` round-robin by
    its position in the list."""
    if not isinstance(domains, list):
        raise ScheduleError('domains must be a list, got %s' % type(domains).__name__)
    destinations = list(destinations or [])
    placement = []
    for index, entry in enumerate(domains):
        fields = entry if isinstance(entry, Mapping) else {'name': entry}
        name = fields.get('name')
        if name is None or not str(name):
            raise ScheduleError('domain entry %d has no name: %r' % (index + 1, entry))
        destination = fields.get('destination') or (destinations[index % len(destinations)] if destinations else None)
        if not destination:
            raise ScheduleError('domain %s has no destination: give it one, or give destinations' % name)
        place = {'domain': str(name), 'destination': destination}
        place.update((key, fields[key]) for key in PLAN_KEYS if key in fields)
        if 'options' in place:
            place['options'] = _options(place['options'], name)
        placement.append(place)
    return placement


def _options(options, domain):
    """A domain's own live_migrate options by the module's option names (old names are
    aliases), so that they replace the shared ones of the same name."""
    try:
        return canonical_options(options, 'options of domain %s' % domain)
    except MigrationOptionError as error:
        raise ScheduleError(str(error))


def evacuation_limits(limits):
    """``limits`` (evacuation_plan's option, a mapping that may leave any out) with the
    planner's defaults for the ones it leaves out."""
    if not isinstance(limits, Mapping):
        raise ScheduleError('limits must be a mapping, got %s' % type(limits).__name__)
    try:
        return resolve_limits(limits)
    except PlanningError as error:
        raise ScheduleError(error.message)


def live_migrate_args(options, **fixed):
    """``options`` (live_migration_options: live_migrate options, by name or alias) with
    ``fixed`` (the role's own: uri, transport) over them, by the module's option names: the
    module_defaults every live_migrate call of a run shares. A domain's own options, named the
    same way (place_domains), then replace them option by option."""
    try:
        args = canonical_options(options, 'live_migrate options')
        args.update(canonical_options(fixed, 'live_migrate options'))
    except MigrationOptionError as error:
        raise ScheduleError(str(error))
    return args


def _wave_number(place):
    try:
        return int(place['wave'])
    except (TypeError, ValueError):
        raise ScheduleError('domain %s: wave must be an integer, got %r' % (place['domain'], place['wave']))


def pack_waves(pending, max_per_source, max_per_destination):
    """The pending placements in waves. Placements that name their wave (as
    evacuation_plan planned them) keep it, in wave order, however many it holds: the plan's
    own limits decided it. The others are packed greedily after them, first fit, no wave
    holding more than ``max_per_source`` migrations nor more than ``max_per_destination``
    for one destination."""
    if max_per_source < 1 or max_per_destination < 1:
        raise ScheduleError('parallel limits must be at least 1, got per source %r, per destination %r'
                            % (max_per_source, max_per_destination))
    planned = {}
    for place in pending:
        if 'wave' in place:
            planned.setdefault(_wave_number(place), []).append(place)
    waves = [planned[number] for number in sorted(planned)]
    packed_from = len(waves)
    for place in pending:
        if 'wave' in place:
            continue
        for wave in waves[packed_from:]:
            to_destination = sum(1 for other in wave if other['destination'] == place['destination'])
            if len(wave) < max_per_source and to_destination < max_per_destination:
                wave.append(place)
                break
        else:
            waves.append([place])
    return waves


def _domain_of(launch):
    return launch.get('live_migration_item', {}).get('domain')


def kernel_modes(host_facts):
    """{host: its kernel mode} from ``presplit.kvm.host_info`` results registered over a loop of
    host names; None for a host whose facts could not be read or whose mode is not one the
    collection knows (facts read from a host are not trusted to be well formed)."""
    modes = {}
    for entry in host_facts or []:
        if not isinstance(entry, dict) or not isinstance(entry.get('item'), str):
            continue
        facts = entry.get('host')
        mode = facts.get('mode') if isinstance(facts, dict) and not entry.get('failed') else None
        modes[entry['item']] = mode if mode in KERNEL_MODES else None
    return modes


def migration_results(placement, prechecks, postchecks, outcomes, wave_clocks, ended_at, source, presplit,
                      host_facts=None, stopped_by=None):
    """One result per placement, in its order: status ``already_migrated`` (the pre-check
    found it on its destination), ``migrated`` (its migration succeeded and the post-check
    finds it on the destination only) or ``failed`` (with the reason), and its figures.

    ``prechecks``/``postchecks`` are the check-mode live_migrate results, one per placement
    in its order; ``outcomes`` the async_status results of the migrations that ran (each
    carries its launch's ``live_migration_item``); ``wave_clocks`` one entry per wave
    ({domains, presplit_started, launched, presplit}); ``ended_at`` {domain: when the wait
    that collected it ended}; ``presplit`` whether the waves pre-split; ``host_facts`` the
    ``presplit.kvm.host_info`` results of the source and the destinations (a loop over their
    names), whose kernel modes each result carries; ``stopped_by`` the stop file that kept
    the later waves from starting, if one did: a domain never launched failed for that.
    """
    modes = kernel_modes(host_facts)
    if not (len(placement) == len(prechecks) == len(postchecks)):
        raise ScheduleError('%d placements but %d pre-checks and %d post-checks'
                            % (len(placement), len(prechecks), len(postchecks)))
    runs = {}
    for outcome in outcomes:
        runs.setdefault(_domain_of(outcome.get('item', {})), outcome)
    results = []
    for place, pre, post in zip(placement, prechecks, postchecks):
        domain = place['domain']
        run = runs.get(domain, {})
        stats = run.get('migration') or {}
        clock = next((entry for entry in wave_clocks if domain in entry.get('domains', [])), {})
        # The module says when its migration call started (started_at) and how long it ran
        # (elapsed_s); without them (it failed before starting) the wave's launch and the
        # end of the wait that collected it bound the job.
        if 'started_at' in run:
            started = run['started_at']
            ended = run['started_at'] + run['elapsed_s'] if 'elapsed_s' in run else ended_at.get(domain)
        else:
            started = clock.get('launched')
            ended = ended_at.get(domain)
        presplit_timed = bool(clock) and presplit
        if pre.get('already_migrated'):
            status, msg = 'already_migrated', 'already running on %s' % place['destination']
        elif run and not run.get('failed') and post.get('already_migrated'):
            status, msg = 'migrated', 'running on %s only' % place['destination']
        elif not run and stopped_by:
            status, msg = 'failed', 'not started: the stop file %s appeared; still on %s' % (stopped_by, source)
        elif run and not run.get('failed') and not run.get('msg') and post.get('msg'):
            # The migration succeeded (registered with failed_when: false, a failure is
            # told by its message) and the post-check itself failed, e.g. the destination
            # stopped answering after the migration: nothing confirms where it runs now.
            status = 'failed'
            msg = ('migrated (the migration completed), but the post-check cannot confirm it runs on %s: %s'
                   % (place['destination'], post['msg']))
        else:
            status = 'failed'
            msg = run.get('msg') or post.get('msg') or 'post-check: domain is not running on the destination only'
        results.append({
            'domain': domain,
            'source': source,
            'destination': place['destination'],
            'status': status,
            'changed': bool(run.get('changed', False)),
            'total_time_ms': stats.get('total_time_ms'),
            'downtime_ms': stats.get('downtime_ms'),
            'iterations': stats.get('iterations'),
            'data_transferred': stats.get('data_transferred_bytes'),
            'presplit_started': clock.get('presplit_started') if presplit_timed else None,
            'presplit_ended': clock.get('launched') if presplit_timed else None,
            'migration_started': started,
            'migration_ended': ended,
            'presplit': next((entry for entry in clock.get('presplit', []) if entry.get('domain') == domain), None),
            'source_mappings': run.get('source_mappings'),
            'source_kernel_mode': modes.get(source),
            'destination_kernel_mode': modes.get(place['destination']),
            'msg': msg,
        })
    return results


def migration_stats(results, report=None):
    """The summary of one live_migration run that the role exports with set_stats (AWX and
    AAP keep it as the job's artifacts): counts by status, the failed domains and, when
    ``report`` (the migration_report result; skipped or absent when no report was
    written) has them, the paths of the JSON and HTML reports on the controller."""
    if not isinstance(results, list) or not all(isinstance(result, Mapping) for result in results):
        raise ScheduleError('results must be a list of live_migration results')
    statuses = [result.get('status') for result in results]
    report = report if isinstance(report, Mapping) else {}
    return {
        'domains': len(results),
        'migrated': statuses.count('migrated'),
        'already_migrated': statuses.count('already_migrated'),
        'failed': statuses.count('failed'),
        'failed_domains': [result.get('domain') for result in results if result.get('status') == 'failed'],
        'report_json': report.get('json_path'),
        'report_html': report.get('html_path'),
    }


def guest_hosts(listings, names):
    """{guest: [hosts running it]} for each of ``names``, sorted, from the results of a
    per-host ``virsh list --name`` loop (each with ``item``, the host, and ``rc`` and
    ``stdout_lines`` when it answered); a host that did not answer counts for no guest."""
    running = [(result['item'], set(result.get('stdout_lines', []))) for result in listings
               if result.get('rc') == 0]
    return dict((name, [host for host, guests in running if name in guests]) for name in sorted(set(names)))


def host_problems(this_host, host_name, peers):
    """What keeps ``host_name``'s maintenance from starting, one sentence each: its own
    host_info result ``this_host`` says libvirt does not answer, or one of ``peers`` (the
    results of a host_info loop delegated to each destination, ``item`` the host) could not
    be read or says its libvirt does not answer. [] when nothing does."""
    problems = []
    if (this_host.get('host') or {}).get('libvirt_error') is not None:
        problems.append('libvirt on %s does not answer: %s' % (host_name, this_host['host']['libvirt_error']))
    for result in peers:
        if result.get('unreachable') or result.get('failed'):
            problems.append('destination %s cannot be read: %s' % (result.get('item'), str(result.get('msg', '')).strip()))
        elif (result.get('host') or {}).get('libvirt_error') is not None:
            problems.append('destination %s: libvirt does not answer: %s' % (result['item'], result['host']['libvirt_error']))
    return problems
