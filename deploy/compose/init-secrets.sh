#!/bin/sh
# Make what the one-server stack needs and git must never hold, in ./secrets:
# a CA and the broker's TLS certificate, the broker's password file (both bridges and
# every device listed in devices.txt, one device id a line), the database password,
# the API token, the agents' metrics token, Grafana's admin password and the password
# of Grafana's read-only database role.
# Run once from deploy/compose; run again to add devices (existing secrets are kept).
#   BROKER_NAMES="mqtt.example.net,192.0.2.10" ./init-secrets.sh
set -eu
cd "$(dirname "$0")"
umask 077
mkdir -p secrets
cd secrets

random() { openssl rand -hex 24; }
keep() { [ -s "$1" ] || random > "$1"; }

for name in db-password api-token agent-token grafana-admin-password \
            grafana-db-password mqtt-bridge-1 mqtt-bridge-2; do
    keep "$name"
done

if [ ! -s ca.crt ]; then
    openssl req -x509 -newkey rsa:3072 -nodes -days 3650 -subj "/CN=CultivAI fleet CA" \
        -keyout ca.key -out ca.crt 2>/dev/null
fi
if [ ! -s broker.crt ]; then
    san="DNS:broker,DNS:localhost,IP:127.0.0.1"
    for n in $(echo "${BROKER_NAMES:-}" | tr ',' ' '); do
        case "$n" in
            *:*) san="$san,IP:$n" ;;            # IPv6 address
            *[!0-9.]*) san="$san,DNS:$n" ;;     # host name
            *) san="$san,IP:$n" ;;              # IPv4 address
        esac
    done
    openssl req -newkey rsa:3072 -nodes -subj "/CN=broker" -keyout broker.key \
        -out broker.csr 2>/dev/null
    printf 'subjectAltName=%s\n' "$san" > broker.ext
    openssl x509 -req -in broker.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 \
        -extfile broker.ext -out broker.crt 2>/dev/null
    rm -f broker.csr broker.ext
fi

# The broker's password file: bridges first, then the devices (devices.txt holds the
# device ids; each device's password goes to device-<id>).
list=$(mktemp)
printf 'cultivai-bridge-1 %s\ncultivai-bridge-2 %s\n' \
    "$(cat mqtt-bridge-1)" "$(cat mqtt-bridge-2)" > "$list"
if [ -f ../devices.txt ]; then
    grep -v '^#' ../devices.txt | while read -r id; do
        [ -n "$id" ] || continue
        keep "device-$id"
        printf '%s %s\n' "$id" "$(cat "device-$id")" >> "$list"
    done
fi
: > mosquitto.passwd.new
while read -r user password; do
    if command -v mosquitto_passwd >/dev/null 2>&1; then
        mosquitto_passwd -b mosquitto.passwd.new "$user" "$password"
    else
        docker run --rm --user root -v "$PWD:/s" --entrypoint mosquitto_passwd \
            "${CULTIVAI_MOSQUITTO_IMAGE:-cultivai-mosquitto:local}" \
            -b /s/mosquitto.passwd.new "$user" "$password"
    fi
done < "$list"
rm -f "$list"
mv mosquitto.passwd.new mosquitto.passwd

# The containers run as their own users (the bridge as uid 10001): they must be able
# to read the files mounted into them; the folder itself stays closed. Everything else
# (the CA key, the devices' passwords) stays readable by this user only.
chmod 0600 ./*
chmod 0644 db-password api-token agent-token grafana-admin-password grafana-db-password \
    mqtt-bridge-1 mqtt-bridge-2 ca.crt broker.crt broker.key mosquitto.passwd
chmod 0700 .
echo "secrets in $(pwd)"
