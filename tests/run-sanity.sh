#!/usr/bin/env bash
# ansible-test only accepts a collection that sits under
# .../ansible_collections/<namespace>/<name>, so sanity runs on a copy of the
# checkout placed there (only the files git knows about, as a release would).
# The copy lives outside the checkout: inside it, ansible-test would ask this
# repository's git for the file list and find the ignored build/ tree empty.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d --tmpdir presplit-kvm-sanity.XXXXXX)
trap 'rm -rf "$work"' EXIT
dest=$work/ansible_collections/presplit/kvm
export PATH=$repo/.venv/bin:$PATH

mkdir -p "$dest"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard |
	rsync -a --from0 --files-from=- ./ "$dest/")

# Put our pip bootstrap where ansible-test looks for its cached get-pip script
# (tests/sanity/get_pip_bootstrap.py says why), for the pip it pins.
pip_version=$(python -c 'import types
from ansible_test._internal.python_requirements import get_venv_packages
print(get_venv_packages(types.SimpleNamespace(version="3.11"))["pip"])')
mkdir -p ~/.ansible/test/cache
cp "$repo/tests/sanity/get_pip_bootstrap.py" ~/.ansible/test/cache/"get_pip_${pip_version//./_}.py"

cd "$dest"
# --requirements installs each test's pinned tools into the venv on first run.
ansible-test sanity --python 3.11 --requirements --color no "$@"
echo "ansible-galaxy build + ansible-doc on the built collection"
ansible-galaxy collection build --force --output-path "$repo/build/dist" >/dev/null
# The tarball holds the collection and its licenses, not the checkout's tests and tooling.
contents=$(tar tzf "$repo"/build/dist/presplit-kvm-*.tar.gz)
for wanted in LICENSE LICENSES/GPL-2.0-only.txt requirements.txt bindep.txt meta/execution-environment.yml docs/inventory-example.yml kernel-patch/series plugins/modules/live_migrate.py \
	roles/kernel_stage/tasks/main.yml changelogs/changelog.yaml; do
	grep -qx "$wanted" <<<"$contents" || { echo "tarball: $wanted is missing" >&2; exit 1; }
done
unwanted=$(grep -E '^(tests|bench|extensions|\.ci|\.venv|\.hypothesis|build|changelogs/fragments)/|^(Makefile|ansible\.cfg|test-requirements\.txt)$' <<<"$contents" || true)
[ -z "$unwanted" ] || { echo "tarball: holds what is not the collection: $(head -3 <<<"$unwanted" | tr '\n' ' ')" >&2; exit 1; }
echo "  tarball: $(wc -l <<<"$contents") entries, the collection only"
# Install the tarball where nothing else is configured, so that Ansible sees
# only it (not this checkout's build/collections link).
inst=$repo/build/installed
rm -rf "$inst"
export ANSIBLE_COLLECTIONS_PATH=$inst
ansible-galaxy collection install --force -p "$inst" "$repo"/build/dist/presplit-kvm-*.tar.gz >/dev/null
"$repo/tests/sanity/check-ee.sh" "$repo"/build/dist/presplit-kvm-*.tar.gz "$inst"
# The inventory example parses, and the host variable it documents is the one the role reads.
ansible-inventory -i "$repo/docs/inventory-example.yml" --host hv02 2>/dev/null |
	grep -q '"presplit_kvm_migration_address": "198.51.100.12"' || { echo "docs/inventory-example.yml: hv02 has no migration address" >&2; exit 1; }
grep -q 'hostvars\[live_migration_item.destination\].presplit_kvm_migration_address' "$repo/roles/live_migration/tasks/wave.yml" ||
	{ echo "roles/live_migration no longer reads presplit_kvm_migration_address, which docs/inventory-example.yml sets" >&2; exit 1; }
echo "  docs/inventory-example.yml: parses; its presplit_kvm_migration_address is what live_migration reads"
modules=$(ansible-doc -t module -l presplit.kvm | awk '{print $1}')
[ -n "$modules" ] || { echo "no modules listed by ansible-doc" >&2; exit 1; }
for m in $modules; do
	ansible-doc "$m" >/dev/null
	echo "  ansible-doc $m: ok"
done
callbacks=$(ansible-doc -t callback -l presplit.kvm | awk '{print $1}')
[ -n "$callbacks" ] || { echo "no callback plugins listed by ansible-doc" >&2; exit 1; }
for c in $callbacks; do
	ansible-doc -t callback "$c" >/dev/null
	echo "  ansible-doc -t callback $c: ok"
done
# Every filter the roles use has its documentation (plugins/filter/<name>.yml) and it parses.
filters=$(ansible-doc -t filter -l presplit.kvm | awk '{print $1}')
documented=$(find "$repo/plugins/filter" -name '*.yml' | wc -l)
[ "$(wc -w <<<"$filters")" = "$documented" ] ||
	{ echo "ansible-doc lists $(wc -w <<<"$filters") filters for $documented documentation files" >&2; exit 1; }
for f in $filters; do
	ansible-doc -t filter "$f" >/dev/null
	echo "  ansible-doc -t filter $f: ok"
done
