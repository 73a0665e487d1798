#!/bin/sh
# Download (once) the Debian 6.12 kernel packages the series is built and
# tested against, and print shell assignments describing them:
#
#   eval "$(kernel-patch/fetch-debian.sh)"
#   -> DEB_VERSION, KERNEL_ABI, DEB_DIR (the cache folder holding the .debs)
#
# The version follows apt's current candidate for linux-source-6.12, so a
# new stable upload is picked up (and must still take the series) as soon as
# it reaches the archive.  PRESPLIT_KERNEL_VERSION pins another version.
# Downloads are cached in $PRESPLIT_CACHE (default /var/cache/presplit-kvm),
# keyed by version, and reused across clones and runs.
set -eu

cache=${PRESPLIT_CACHE:-/var/cache/presplit-kvm}

candidate() {
	apt-cache policy "$1" | sed -n 's/^ *Candidate: //p'
}

version=${PRESPLIT_KERNEL_VERSION:-$(candidate linux-source-6.12)}
if [ -z "$version" ] || [ "$version" = "(none)" ]; then
	apt-get update -qq >&2
	version=$(candidate linux-source-6.12)
fi
case "$version" in
6.12.*) ;;
*)
	echo "fetch-debian: no linux-source-6.12 candidate (got '$version')" >&2
	exit 1
	;;
esac

# 6.12.117-1~deb12u1 -> 6.12.117+deb12-amd64
upstream=${version%%-*}
abi="${upstream}+deb12-amd64"
dir="$cache/debian/$version"

packages="linux-source-6.12=$version
linux-headers-$abi=$version
linux-headers-${upstream}+deb12-common=$version
linux-kbuild-${upstream}+deb12=$version
linux-image-$abi-unsigned=$version"

mkdir -p "$dir"
for spec in $packages; do
	name=${spec%%=*}
	if ! ls "$dir/${name}_"*.deb >/dev/null 2>&1; then
		(cd "$dir" && apt-get download -q "$spec" >&2) || {
			echo "fetch-debian: cannot download $spec" >&2
			exit 1
		}
	fi
done

echo "DEB_VERSION='$version'"
echo "KERNEL_ABI='$abi'"
echo "DEB_DIR='$dir'"
