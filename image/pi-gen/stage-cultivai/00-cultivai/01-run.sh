#!/bin/bash -e
# pi-gen stage: the CultivAI appliance layer on Raspberry Pi OS (bookworm).
# Put the agent's wheel (`make dist`) and, optionally, a folder `wheelhouse/` of its
# dependencies for linux_aarch64 / Python 3.11 into files/ before running pi-gen.
# This stage must be a symlink into the CultivAI repository (see image/README.md):
# it runs the repository's image/appliance/apply.sh, the same layer as the Debian image.
STAGE=$(dirname "$(realpath "${BASH_SOURCE[0]}")")
REPO=$(realpath "${STAGE}/../../../..")
APPLY="${REPO}/image/appliance/apply.sh"
[ -x "${APPLY}" ] || { echo "stage-cultivai: ${APPLY} not found (symlink the stage from the repo)" >&2; exit 1; }
wheel=$(ls -t "${STAGE}"/files/cultivai_edge-*.whl 2>/dev/null | head -1)
[ -n "${wheel}" ] || { echo "stage-cultivai: copy the wheel from 'make dist' into ${STAGE}/files/" >&2; exit 1; }

install -m 0644 "${wheel}" "${ROOTFS_DIR}/tmp/"
house=""
if [ -d "${STAGE}/files/wheelhouse" ]; then
	rm -rf "${ROOTFS_DIR}/tmp/wheelhouse"
	cp -r "${STAGE}/files/wheelhouse" "${ROOTFS_DIR}/tmp/wheelhouse"
	house=/tmp/wheelhouse
fi
# on_chroot mounts /proc, /sys and /dev and leaves them for the rest of the stage.
on_chroot true
# picamera2 and libcamera come from apt: the venv sees the system's packages.
CULTIVAI_SYSTEM_SITE_PACKAGES=1 "${APPLY}" "${ROOTFS_DIR}" "/tmp/$(basename "${wheel}")" ${house}
rm -rf "${ROOTFS_DIR}/tmp/wheelhouse" "${ROOTFS_DIR}/tmp/$(basename "${wheel}")"
# Raspberry Pi OS asks for a user at first boot; the appliance has none with a password.
on_chroot systemctl disable userconfig.service 2>/dev/null || true
