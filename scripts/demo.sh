#!/usr/bin/env bash
# `make demo`: bring up the built-in lab (3 hosts), start a few tiny guests on
# h1 (one of them rewriting memory while it migrates), live-migrate them
# across h2 and h3 with the collection's role, print a summary table, and
# tear the lab down.  KEEP_LAB=1 leaves it up for exploring (see README).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
export PATH=$repo/.venv/bin:$PATH
export ANSIBLE_CONFIG=$repo/ansible.cfg

lab=${LAB_NAME:-demo}
keep=${KEEP_LAB:-0}
inventory=/run/presplit-lab/$lab/inventory.yml
# Outside the lab's state directory, so the report outlives the lab.
report_dir=/run/presplit-lab-report/$lab
guests='[{"name": "vm1", "host": "h1"},
         {"name": "vm2", "host": "h1"},
         {"name": "vm3", "host": "h1", "dirty_rate_mib_s": 4}]'

lab_down() {
	ansible-playbook presplit.kvm.lab_down -e "lab_name=$lab" >/dev/null
}

if [ "$keep" != 1 ]; then
	trap 'echo "demo: tearing the lab down"; lab_down' EXIT
fi

start=$SECONDS
echo "demo: bringing up lab '$lab' with 3 hosts and guests vm1-vm3 on h1"
ansible-playbook presplit.kvm.lab_up -e "lab_name=$lab" -e "{\"lab_guests\": $guests}"
echo "demo: lab up in $((SECONDS - start)) s; migrating"
rm -f "$report_dir"/live-migration-h1.*
rc=0
ansible-playbook -i "$inventory" presplit.kvm.demo -e '{"demo_domains": ["vm1", "vm2", "vm3"]}' \
	-e "demo_report_dir=$report_dir" || rc=$?
if [ -e "$report_dir/live-migration-h1.html" ]; then
	echo "demo: run report: $report_dir/live-migration-h1.html (record: live-migration-h1.json)"
fi

if [ "$keep" = 1 ]; then
	cat <<EOT

demo: the lab '$lab' stays up. Try:
  roles/lab/files/lab-exec.sh $lab h2 virsh list --all
  .venv/bin/ansible -i $inventory lab_hosts -m ansible.builtin.command -a 'virsh list'
  roles/lab/files/lab-guest-status.sh $lab h2 vm1
Tear it down with: make lab-down LAB_NAME=$lab
EOT
fi
[ "$rc" -eq 0 ] || exit "$rc"
