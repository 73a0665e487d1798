# shellcheck shell=bash
# Host-side assertions on the guest's results.

# Kernel reports that fail the tier wherever they appear in the guest dmesg.
# The RCU stall reports by their own words ("detected stalls on CPUs/tasks",
# "self-detected stall on CPU", "kthread starved"), not "rcu.*stall", which the
# kernel command line (rcupdate.rcu_cpu_stall_timeout=) and the boot banner
# ("RCU CPU stall warnings timeout set to ...") match.
DMESG_FAILURE_PATTERNS='WARNING: CPU|BUG:|cut here|Oops|general protection|Call Trace|lockdep|possible recursive locking|circular locking|suspicious RCU usage|detected stalls on CPU|self-detected stall on CPU|kthread starved|INFO: task .* blocked|UBSAN|KASAN|kernel BUG'

# check_results RESULTS_LOG CONSOLE_LOG EXPECTED_PROGRAM...
# EXPECTED_PROGRAM is phase/program; each must have run and exited 0.
# Prints one line per check and the totals; returns non-zero on any failure.
check_results() {
	local results=$1 console=$2 passed failed prog
	shift 2
	local report
	report=$(mktemp)

	grep -a '^KTEST ' "$results" | tr -d '\r' >"$report" || true
	for prog in "$@"; do
		if grep -aq "^KPROG $prog exit=0" "$results"; then
			echo "KTEST ok $prog (program exit status)" >>"$report"
		else
			echo "KTEST not ok $prog (did not run or exited non-zero)" >>"$report"
		fi
	done
	if ! grep -aq '^KDMESG end' "$results"; then
		echo "KTEST not ok guest/finished (no dmesg dump: the guest died or hung)" >>"$report"
		grep -aE "$DMESG_FAILURE_PATTERNS|RIP:|panic" "$console" | head -20 | sed 's/^/    console: /' 
	elif dmesg_failures "$results" >"$report.dmesg"; then
		echo "KTEST not ok guest/dmesg-clean" >>"$report"
		sed 's/^/    dmesg: /' "$report.dmesg"
	else
		echo "KTEST ok guest/dmesg-clean" >>"$report"
	fi

	sed -e 's/^KTEST ok /PASS  /' -e 's/^KTEST not ok /FAIL  /' "$report"
	passed=$(grep -c '^KTEST ok' "$report" || true)
	failed=$(grep -c '^KTEST not ok' "$report" || true)
	rm -f "$report" "$report.dmesg"
	echo "$passed passed, $failed failed"
	[ "$failed" -eq 0 ]
}

# Boot banners that the patterns above match but that report nothing: a
# kernel built with PROVE_RCU (run-debug.sh's) says so while it boots.
DMESG_BANNERS='rcu:[[:space:]]+RCU lockdep checking is enabled\.'

# dmesg_failures RESULTS_LOG: print the offending dmesg lines, true if any.
dmesg_failures() {
	sed -n '/^KDMESG begin/,/^KDMESG end/p' "$1" | grep -aE "$DMESG_FAILURE_PATTERNS" |
		grep -avE "$DMESG_BANNERS"
}
