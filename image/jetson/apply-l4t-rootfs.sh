#!/bin/bash
# The CultivAI appliance layer on an NVIDIA Jetson L4T root file system (JetPack 6).
#   sudo image/jetson/apply-l4t-rootfs.sh Linux_for_Tegra/rootfs WHEEL WHEELHOUSE
# Run after NVIDIA's apply_binaries.sh and before flash.sh / l4t_initrd_flash.sh. On an
# x86 host the rootfs's programs run through qemu-user-static and binfmt
# (`make binfmt`). WHEELHOUSE: the agent's dependencies for linux_aarch64 and the
# rootfs's Python (3.10 on JetPack 6), e.g.
#   pip download --only-binary=:all: --platform manylinux2014_aarch64 \
#     --python-version 3.10 -d wheelhouse 'cultivai_edge-*.whl[edge]'
# cultivai.yaml goes into rootfs/boot/firmware/ (Jetsons have no FAT partition for
# it); first boot reads it there and deletes it, as on the other images.
set -euo pipefail
ROOTFS=$(realpath "$1")
WHEEL=$(realpath "$2")
HOUSE=$(realpath "$3")
HERE=$(dirname "$(realpath "$0")")
[ -d "$ROOTFS/etc" ] || { echo "not a root file system: $ROOTFS" >&2; exit 2; }
cleanup() { for m in dev/pts dev sys proc; do umount -l "$ROOTFS/$m" 2>/dev/null || true; done; }
trap cleanup EXIT
mount -t proc proc "$ROOTFS/proc"; mount -t sysfs sys "$ROOTFS/sys"
mount --bind /dev "$ROOTFS/dev"; mount --bind /dev/pts "$ROOTFS/dev/pts"
install -m 0644 "$WHEEL" "$ROOTFS/tmp/"
rm -rf "$ROOTFS/tmp/wheelhouse"; cp -r "$HOUSE" "$ROOTFS/tmp/wheelhouse"
# JetPack's Python packages (e.g. jetson-utils) stay visible to the agent.
CULTIVAI_SYSTEM_SITE_PACKAGES=1 "$HERE/../appliance/apply.sh" "$ROOTFS" "/tmp/$(basename "$WHEEL")" /tmp/wheelhouse
rm -rf "$ROOTFS/tmp/wheelhouse" "$ROOTFS/tmp/$(basename "$WHEEL")"
# L4T's first-boot wizard (oem-config) would ask for a user and password.
chroot "$ROOTFS" systemctl disable nv-oem-config.target 2>/dev/null || true
install -d -m 0755 "$ROOTFS/boot/firmware"
echo "Jetson rootfs ready: put cultivai.yaml in $ROOTFS/boot/firmware/ and flash"
