#!/usr/bin/env bash
# The execution environment for AWX / AAP, checked as far as this machine can
# (no container engine, no registry): ansible-builder writes the build context
# of execution-environment.yml with the collection tarball just built, and
# ansible-builder's own introspection, run over the installed tarball, finds the
# system packages that meta/execution-environment.yml declares (bindep.txt).
# Usage: check-ee.sh TARBALL INSTALLED_COLLECTIONS_DIR  (from tests/run-sanity.sh)
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
tarball=$1
installed=$2
work=$(mktemp -d --tmpdir presplit-kvm-ee.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "execution environment: $*" >&2; exit 1; }

# The definition pins what the checkout pins: ansible-core as requirements.txt,
# the collection at galaxy.yml's version.
read -r ee_core ee_collection galaxy_version < <(python - "$repo" <<'PY'
import sys, yaml
repo = sys.argv[1]
ee = yaml.safe_load(open(f"{repo}/execution-environment.yml"))
galaxy = yaml.safe_load(open(f"{repo}/galaxy.yml"))
print(ee["dependencies"]["ansible_core"]["package_pip"],
      ee["dependencies"]["galaxy"]["collections"][0]["name"], galaxy["version"])
PY
)
core_pin=$(grep -E '^ansible-core==' "$repo/requirements.txt")
[ "$ee_core" = "$core_pin" ] || fail "ansible_core is $ee_core, requirements.txt pins $core_pin"
[ "$ee_collection" = "collections/presplit-kvm-$galaxy_version.tar.gz" ] ||
	fail "installs $ee_collection, galaxy.yml builds presplit-kvm-$galaxy_version.tar.gz"

ansible-builder create -f "$repo/execution-environment.yml" -c "$work/context" --output-filename Containerfile \
	>"$work/create.log" 2>&1 || { cat "$work/create.log" >&2; fail "ansible-builder create failed"; }
cmp -s "$tarball" "$work/context/_build/$ee_collection" || fail "the build context lacks the tarball just built"
grep -q '^ARG EE_BASE_IMAGE="registry.access.redhat.com/ubi9/ubi:latest"$' "$work/context/Containerfile" ||
	fail "Containerfile: not on the UBI 9 base"
grep -q "^ARG ANSIBLE_INSTALL_REFS=\"$core_pin ansible-runner\"$" "$work/context/Containerfile" ||
	fail "Containerfile: does not install $core_pin and ansible-runner"

# The same introspection the image build runs in its builder stage.
python "$work/context/_build/scripts/introspect.py" introspect "$installed" \
	--write-bindep="$work/bindep.txt" --write-pip="$work/requirements.txt" >/dev/null
grep -qx 'openssh-clients \[platform:rpm\]  # from collection presplit.kvm' "$work/bindep.txt" ||
	fail "introspection did not find the collection's bindep.txt (meta/execution-environment.yml)"
[ ! -s "$work/requirements.txt" ] || fail "introspection found Python requirements: $(tr '\n' ' ' <"$work/requirements.txt")"
echo "  execution environment: context for $core_pin + presplit-kvm-$galaxy_version on UBI 9; bindep: $(grep -c . "$work/bindep.txt") packages"
