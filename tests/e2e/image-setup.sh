#!/bin/sh
# Run inside the e2e hypervisor image's chroot at build time (vm.sh's
# VM_IMAGE_SETUP, after libvirt and QEMU are installed): libvirt configured
# as the lab configures its hosts (roles/lab/templates), and a boot-time unit
# giving each host its identity (below), so that every host boots the same
# image.
set -eu

# QEMU as root: as another user libvirt re-probes QEMU on every call
# (/dev/kvm is 0600 in the emulated host too).  No AppArmor/SELinux label,
# no cgroup or per-guest /dev namespace: none is what this test is about.
cat >>/etc/libvirt/qemu.conf <<'CONF'
# presplit e2e (tests/e2e/image-setup.sh)
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "logd"
CONF

# qemu+tcp:// between the hosts, unauthenticated: the link exists only
# between the two QEMU processes of this test (-netdev socket on loopback).
# host_uuid is set at boot (presplit-e2e-host), one per host: libvirt
# refuses to migrate between daemons sharing one ("the same host").
cat >>/etc/libvirt/libvirtd.conf <<'CONF'
# presplit e2e (tests/e2e/image-setup.sh)
listen_tls = 0
listen_tcp = 1
auth_tcp = "none"
CONF
# Debian's libvirtd is socket-activated: listen_tcp alone opens nothing.
systemctl enable libvirtd-tcp.socket
# The default NAT network would want dnsmasq and iptables rules: unused.
rm -f /etc/libvirt/qemu/networks/autostart/default.xml

cat >/etc/hosts <<'HOSTS'
127.0.0.1 localhost
192.0.2.11 h1
192.0.2.12 h2
HOSTS

# Identity at boot, from what QEMU's command line gives each host (all boot
# the same image, through its GRUB like a real host): the SMBIOS serial
# (-smbios type=1,serial=NAME) is the host name, the SMBIOS UUID (-uuid)
# becomes libvirtd's host_uuid, and the host's address on the link NIC is
# its name's in /etc/hosts.  The link NIC sits at PCI slot 0x10 (enp0s16).
cat >/usr/local/sbin/presplit-e2e-host <<'SCRIPT'
#!/bin/sh
set -eu
host=$(cat /sys/class/dmi/id/product_serial)
uuid=$(cat /sys/class/dmi/id/product_uuid)
addr=$(awk -v h="$host" '$2 == h { print $1 }' /etc/hosts)
[ -n "$addr" ] || { echo "presplit-e2e-host: no address for '$host' in /etc/hosts" >&2; exit 1; }
echo "$host" >/etc/hostname
hostname "$host"
sed -i '/^host_uuid = /d' /etc/libvirt/libvirtd.conf
echo "host_uuid = \"$uuid\"" >>/etc/libvirt/libvirtd.conf
# Before 50-dhcp.network (en*): the first matching file wins.
cat >/etc/systemd/network/10-e2e-link.network <<NET
[Match]
Name=enp0s16
[Network]
Address=$addr/24
LinkLocalAddressing=no
NET
SCRIPT
chmod 0755 /usr/local/sbin/presplit-e2e-host
cat >/etc/systemd/system/presplit-e2e-host.service <<'UNIT'
[Unit]
Description=presplit e2e: host name, link address and libvirt host_uuid from SMBIOS
DefaultDependencies=no
After=local-fs.target
Before=systemd-networkd.service libvirtd.service virtlogd.service sysinit.target
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/presplit-e2e-host
[Install]
WantedBy=sysinit.target
UNIT
systemctl enable presplit-e2e-host.service
# (KVM's per-VM counters of a stock kernel, which host_info and
# split_huge_pages read, are in debugfs: systemd mounts it at boot.)
