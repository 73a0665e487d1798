# shellcheck shell=bash
# Static test programs, built against the uapi headers given, cached by a
# hash of their sources, the headers and the compiler.

# programs_hash UAPI_INCLUDE SRC_DIR
programs_hash() {
	{
		cat "$2"/*.c "$2"/*.h "$1/linux/kvm.h" "$1/asm/kvm.h"
		gcc --version
	} | sha256sum | cut -c1-16
}

# link_with_ktest UAPI_INCLUDE OUT MAIN_SOURCE: a static program for the
# guest (or a host), linked with the ktest library in $KTEST_DIR/src.
link_with_ktest() {
	gcc -static -O2 -g -Wall -Wextra -Werror -pthread -isystem "$1" \
		-I "$KTEST_DIR/src" -o "$2" "$3" "$KTEST_DIR/src/ktest.c"
}

# build_programs UAPI_INCLUDE SRC_DIR OUT_DIR PROGRAM...
build_programs() {
	local uapi=$1 src=$2 out=$3 prog
	shift 3
	mkdir -p "$out"
	for prog in "$@"; do
		[ -x "$out/$prog" ] && continue
		link_with_ktest "$uapi" "$out/$prog.tmp" "$src/$prog.c" || return 1
		mv "$out/$prog.tmp" "$out/$prog"
	done
}
