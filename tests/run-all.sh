#!/usr/bin/env bash
# Run every test tier, keep going after a failure so one run shows all of
# them, and end with a single pass/fail line.
set -uo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo" || exit 1
tiers=(unit sanity lint integration kernel e2e-ci)
passed=()
failed=()

for tier in "${tiers[@]}"; do
	echo
	echo "=== tier: $tier ($(date -u +%H:%M:%S)) ==="
	start=$SECONDS
	if make --no-print-directory "$tier"; then
		passed+=("$tier")
		echo "=== tier $tier passed in $((SECONDS - start)) s"
	else
		failed+=("$tier")
		echo "=== tier $tier FAILED after $((SECONDS - start)) s"
	fi
done

echo
echo "passed tiers: ${passed[*]:-none}"
echo "failed tiers: ${failed[*]:-none}"
if [ ${#failed[@]} -eq 0 ]; then
	echo "make test: PASS"
else
	echo "make test: FAIL"
fi
echo "tiers: ${#passed[@]} passed, ${#failed[@]} failed"
[ ${#failed[@]} -eq 0 ]
