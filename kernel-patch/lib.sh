# shellcheck shell=bash
# Shared steps of the kernel-patch scripts: sourced, not run.
#
# Everything expensive lives under $KP_CACHE/<Debian version>/, never in the
# repository.  All progress output goes to stderr: the scripts' stdout is
# reserved for the shell assignments they print.

KP_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KP_CACHE=${PRESPLIT_CACHE:-/var/cache/presplit-kvm}/kernel-patch
KP_JOBS=${KP_JOBS:-$(nproc)}

log() {
	echo "kernel-patch: $*" >&2
}

die() {
	log "ERROR: $*"
	exit 1
}

# Sets DEB_VERSION, KERNEL_ABI, DEB_DIR (downloads the debs once).
fetch_debian() {
	eval "$("$KP_DIR/fetch-debian.sh")"
}

# Serializes the scripts on one Debian version's cache: concurrent runs
# (e.g. the test tier and a developer) would build into the same folders.
lock_cache() {
	mkdir -p "$KP_CACHE/$DEB_VERSION"
	exec 9>"$KP_CACHE/$DEB_VERSION/.lock"
	flock 9
}

# The patches, in order, as absolute paths; then KP_EXTRA_PATCHES (absolute
# paths, space-separated), which builds for a purpose other than the series
# apply on top, e.g. the benchmark's bench/kernel/clear-splits-first.patch.
series_patches() {
	local name
	while read -r name; do
		case "$name" in
		'' | '#'*) ;;
		*) echo "$KP_DIR/$name" ;;
		esac
	done <"$KP_DIR/series"
	for name in ${KP_EXTRA_PATCHES:-}; do
		echo "$name"
	done
}

# Identifies the series' content: changes whenever any patch changes.
series_hash() {
	series_patches | xargs cat | sha256sum | cut -c1-16
}

# Extracts the Debian linux-source tarball into $1 (a fresh directory).
extract_source() {
	local dest=$1 tarball
	tarball=$(dpkg-deb --fsys-tarfile "$DEB_DIR"/linux-source-6.12_*.deb |
		tar -t | grep 'linux-source-6.12.tar.xz$')
	mkdir -p "$dest"
	log "extracting linux-source $DEB_VERSION into $dest"
	dpkg-deb --fsys-tarfile "$DEB_DIR"/linux-source-6.12_*.deb |
		tar -xO "$tarball" | tar -xJ -C "$dest" --strip-components=1
}

# Applies the series to the tree in $1; fails loudly on any reject or fuzz,
# which is how a new Debian upload that the series no longer fits shows up.
apply_series() {
	local tree=$1 patch
	while read -r patch; do
		log "applying $(basename "$patch")"
		patch -d "$tree" -p1 --batch --forward --fuzz=0 \
			--no-backup-if-mismatch -s -i "$patch" >&2 ||
			die "$(basename "$patch") does not apply to linux-source $DEB_VERSION"
	done < <(series_patches)
}

# Prints the path of the patched source tree, building it once per
# (Debian version, series hash).  Trees of older series are left alone (the
# test tier may be building in one); delete patched-* by hand to reclaim
# their 1.5 GB each.
patched_source() {
	local hash top tree pristine
	hash=$(series_hash)
	top="$KP_CACHE/$DEB_VERSION/patched-$hash"
	tree="$top/linux-source-6.12"
	if [ ! -e "$top/.applied" ]; then
		pristine=$(pristine_source)
		log "copying the pristine tree to $tree"
		mkdir -p "$top"
		cp -a --reflink=auto "$pristine" "$tree"
		apply_series "$tree"
		touch "$top/.applied"
	fi
	echo "$tree"
}

# Prints the path of a pristine (unpatched) source tree, extracted once.
pristine_source() {
	local top="$KP_CACHE/$DEB_VERSION/pristine"
	if [ ! -e "$top/.extracted" ]; then
		rm -rf "$top"
		extract_source "$top/linux-source-6.12"
		touch "$top/.extracted"
	fi
	echo "$top/linux-source-6.12"
}

# Installs the sanitized uapi headers of the tree $1 into $2 (headers_install),
# building out of tree so that the source tree stays clean.
install_uapi_headers() {
	local tree=$1 dest=$2
	log "installing uapi headers into $dest"
	make -s -C "$tree" O="$dest.build" ARCH=x86 INSTALL_HDR_PATH="$dest" \
		headers_install >&2
	rm -rf "$dest.build"
}

# Builds, in $2, a Debian headers build tree whose common directory carries
# the KVM sources (and the headers they see) of the source tree $1, so that
# the out-of-tree module build compiles exactly those sources against the
# distribution kernel's configuration and symbol versions.
make_build_root() {
	local tree=$1 root=$2 deb common
	rm -rf "$root"
	mkdir -p "$root"
	for deb in "$DEB_DIR"/linux-headers-*.deb "$DEB_DIR"/linux-kbuild-*.deb; do
		dpkg-deb -x "$deb" "$root"
	done
	common=$(echo "$root"/usr/src/linux-headers-*-common)
	# The arch directory includes the common Makefile by absolute path.
	sed -i "s|^include /usr/src/|include $root/usr/src/|" \
		"$root/usr/src/linux-headers-$KERNEL_ABI/Makefile"
	for dir in include arch/x86/include virt arch/x86/kvm; do
		mkdir -p "$common/$dir"
		rsync -a "$tree/$dir/" "$common/$dir/"
	done
}

# Builds kvm.ko, kvm-amd.ko and kvm-intel.ko in the build root $1 with the
# extra make arguments that follow; prints nothing, logs the build to stderr.
build_kvm_modules() {
	local root=$1
	shift
	local common
	common=$(echo "$root"/usr/src/linux-headers-*-common)
	make -C "$root/usr/src/linux-headers-$KERNEL_ABI" \
		M="$common/arch/x86/kvm" -j"$KP_JOBS" "$@" modules >&2
}

# Prints the directory holding the modules built in the build root $1.
kvm_modules_dir() {
	echo "$(echo "$1"/usr/src/linux-headers-*-common)/arch/x86/kvm"
}
