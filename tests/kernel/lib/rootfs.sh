# shellcheck shell=bash
# Helpers for guest root filesystems built from the host's own binaries.

# copy_with_libs ROOT FILE...: copy each FILE to the same path under ROOT,
# with the shared libraries it needs (and the dynamic loader).
copy_with_libs() {
	local root=$1 lib
	shift
	cp -L --parents "$@" "$root/"
	for lib in $( { ldd "$@" 2>/dev/null || true; } |
		awk '/=> \// { print $3 } /^\t\/lib/ { print $1 }' | sort -u); do
		[ -e "$root$lib" ] || cp -L --parents "$lib" "$root/"
	done
}
