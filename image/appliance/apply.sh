#!/bin/bash
# The appliance layer, applied to a root file system from the build host:
#   apply.sh ROOTFS WHEEL [WHEELHOUSE]
# WHEEL and WHEELHOUSE are paths inside ROOTFS (copy them there first); without a
# wheelhouse pip uses its index. The Debian image (image/build.py), the pi-gen stage
# (image/pi-gen/stage-cultivai) and the Jetson script (image/jetson/) all run this.
# ROOTFS must have /proc, /sys and /dev mounted when its arch differs from the host's
# only through binfmt (qemu-user-static); chroot runs its programs.
# Environment: CULTIVAI_SYSTEM_SITE_PACKAGES=1 lets the venv see apt's Python packages
# (python3-picamera2 on Raspberry Pi OS); PYTHON names a host Python with Jinja2 and PyYAML.
set -euo pipefail
ROOTFS=$(realpath "$1")
WHEEL=$2
WHEELHOUSE=${3:-}
HERE=$(dirname "$(realpath "$0")")
PYTHON=${PYTHON:-python3}

in_root() { chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }

[ -f "$ROOTFS$WHEEL" ] || { echo "apply.sh: no wheel at $ROOTFS$WHEEL" >&2; exit 2; }

# The agent's user: it opens the camera (video), GPIO chips (gpio) and I2C sensors (i2c).
for g in gpio i2c; do in_root getent group "$g" >/dev/null || in_root groupadd --system "$g"; done
if ! in_root getent passwd cultivai >/dev/null; then
  in_root useradd --system --home-dir /var/lib/cultivai --no-create-home \
    --shell /usr/sbin/nologin --groups video,gpio,i2c cultivai
fi

# The agent in a versioned venv: releases/<version>-<sha12>/, `current` points at it
# (the layout the Ansible role and the firmware updater use).
name=$(basename "$WHEEL")
version=$(echo "$name" | cut -d- -f2)
sha=$(sha256sum "$ROOTFS$WHEEL" | cut -c1-12)
rel=/opt/cultivai/edge/releases/$version-$sha
venv_args=()
[ "${CULTIVAI_SYSTEM_SITE_PACKAGES:-0}" = 1 ] && venv_args+=(--system-site-packages)
in_root python3 -m venv "${venv_args[@]}" "$rel/venv"
pip_args=(--no-cache-dir --disable-pip-version-check --quiet)
[ -n "$WHEELHOUSE" ] && pip_args+=(--no-index --find-links "$WHEELHOUSE")
in_root "$rel/venv/bin/pip" install "${pip_args[@]}" "$WHEEL[edge]"
install -d "$ROOTFS$rel/dist"
cp "$ROOTFS$WHEEL" "$ROOTFS$rel/dist/"
touch "$ROOTFS$rel/.installed"
ln -sfn "releases/$version-$sha" "$ROOTFS/opt/cultivai/edge/current"
for cmd in cultivai-edge cultivai-firstboot; do
  ln -sfn "/opt/cultivai/edge/current/venv/bin/$cmd" "$ROOTFS/usr/local/bin/$cmd"
done
# Compile once at build time: a read-only /opt would otherwise cost it on every start.
in_root "$rel/venv/bin/python" -m compileall -q "$rel/venv/lib" >/dev/null || true

# Folders: config readable by the agent, data and logs its own.
in_root install -d -m 0750 -o root -g cultivai /etc/cultivai /etc/cultivai/secrets
in_root install -d -m 0750 -o cultivai -g cultivai /var/lib/cultivai /var/log/cultivai
in_root install -d -m 0755 -o root -g root /var/lib/cultivai/firstboot /boot/firmware
# The set-up page (run as the agent's user) reads the problems first boot records.
in_root chown cultivai:cultivai /var/lib/cultivai/firstboot

# Units, first boot, journald, sshd; the agent's unit and log rotation come from the
# Ansible role's templates.
cp -a "$HERE/files/." "$ROOTFS/"
"$PYTHON" "$HERE/render_units.py" "$ROOTFS"
# Every rendered unit with an [Install] section: the agent, the boot-time firmware
# check, timers.
units=$(cd "$ROOTFS/etc/systemd/system" && grep -l '^\[Install\]' cultivai-edge*.service cultivai-edge*.timer 2>/dev/null || true)
# shellcheck disable=SC2086
in_root systemctl enable $units \
  cultivai-firstboot.service cultivai-provision-status.service cultivai-sshkeys.service ssh.service

# e2scrub needs LVM snapshots, which the appliance has none of; it only costs boot time.
in_root systemctl mask e2scrub_reap.service e2scrub_all.timer >/dev/null

# No password anywhere: root is locked, SSH takes keys only (cultivai.yaml), and every
# device makes its own machine id and SSH host keys at first boot.
in_root passwd --lock root >/dev/null
rm -f "$ROOTFS"/etc/ssh/ssh_host_*
: > "$ROOTFS/etc/machine-id"
rm -f "$ROOTFS/var/lib/dbus/machine-id"
echo "apply.sh: appliance layer applied ($rel)"
