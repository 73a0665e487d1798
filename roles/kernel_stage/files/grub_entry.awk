# Prints the GRUB menu path (what grub-reboot and grub-set-default take) of the
# normal boot entry of one kernel release, as update-grub writes it on Debian:
#   awk -f grub_entry.awk release=6.12.117-presplit /boot/grub/grub.cfg
# -> gnulinux-advanced-<uuid>>gnulinux-6.12.117-presplit-advanced-<uuid>
# (just the entry's id when GRUB_DISABLE_SUBMENU=y puts it at the top level).
# The release is compared as a string: it contains regex characters (+ .).
BEGIN { FS = "'" }

function entry_id(i) {
	for (i = 1; i < NF; i++)
		if ($i ~ /\$menuentry_id_option[ \t]*$/)
			return $(i + 1)
	return ""
}

/^submenu / { submenu = entry_id() }

/^[ \t]*menuentry / {
	suffix = "with Linux " release
	if (length($2) >= length(suffix) && substr($2, length($2) - length(suffix) + 1) == suffix) {
		print (/^[ \t]/ && submenu != "" ? submenu ">" : "") entry_id()
		found = 1
		exit
	}
}

END { exit !found }
