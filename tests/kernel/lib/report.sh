# shellcheck shell=bash
# PASS/FAIL lines of the scripts that drive a test host from outside (run-stage.sh,
# run-packages.sh): each check is printed and kept in the file $report, and
# report_totals ends the run with "N passed, N failed".
# shellcheck disable=SC2154 # $report is the sourcing script's

pass() { echo "PASS  $1  ${*:2}" | tee -a "$report"; }
fail() { echo "FAIL  $1  ${*:2}" | tee -a "$report"; }

# check NAME DETAIL COMMAND...: PASS when COMMAND succeeds.
check() {
	local name=$1 detail=$2
	shift 2
	if "$@"; then pass "$name" "$detail"; else fail "$name" "$detail"; fi
}

# The totals line; succeeds only when something passed and nothing failed.
report_totals() {
	local passed failed
	passed=$(grep -c '^PASS ' "$report" || true)
	failed=$(grep -c '^FAIL ' "$report" || true)
	echo "$passed passed, $failed failed"
	[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
}
