#!/bin/sh
# Write RabbitMQ's definitions (definitions.json: the vhost, one user per service with
# its own permissions, a read-only "monitor" user and an "admin" for operators) with
# each ${VARIABLE} replaced by that variable's value from the environment, then run the
# given command: the image's own entrypoint, which starts the broker. The broker loads
# the file at every start (30-video2mp3.conf), so a changed password or permission is
# applied by a restart; with definitions to load it creates no default "guest" user.
#
#   sh render-definitions.sh docker-entrypoint.sh rabbitmq-server
#
# A variable that is missing, still a template placeholder, or holds characters other
# than letters, digits and . _ ~ - stops the start (the services put their password in
# a URL, and the value goes into JSON here, unquoted).
#
# Permissions (configure, write, read) are regular expressions over queue and exchange
# names. Every queue is declared by whoever uses it, and RabbitMQ asks whoever creates a
# queue with a dead-letter exchange (all but the .dead ones) for read on that queue and
# write on the exchange, the default one (amq.default). Publishing goes through the
# default exchange too: write on amq.default can reach any queue by name.
set -eu

here=$(dirname "$0")
template=${DEFINITIONS_TEMPLATE:-$here/definitions.json}
target=${DEFINITIONS_FILE:-/run/video2mp3/definitions.json}
# The services refuse the same template values (common/config.py, _PLACEHOLDER).
placeholder='^(|change[-_ ]?me.*|replace[-_ ]?me.*|placeholder.*|example.*|<.*>|x+|secret|password|guest)$'

refuse() {
    echo "render-definitions: $1" >&2
    exit 1
}

rendered=$(cat "$template")
for name in $(grep -o '\${[A-Z0-9_]*}' "$template" | tr -d '${}' | sort -u); do
    eval "value=\${$name:-}"
    [ -n "$value" ] || refuse "$name is not set"
    if printf '%s\n' "$value" | grep -Eiq "$placeholder"; then
        refuse "$name is still a placeholder: set a real password"
    fi
    case $value in
        *[!A-Za-z0-9._~-]*) refuse "$name may hold only letters, digits and . _ ~ -" ;;
    esac
    rendered=$(printf '%s\n' "$rendered" | sed "s|\${$name}|$value|g")
done

umask 077
mkdir -p "$(dirname "$target")"
printf '%s\n' "$rendered" >"$target"
# Started as root (docker compose), the image's entrypoint hands over to this user.
if [ "$(id -u)" = 0 ] && id rabbitmq >/dev/null 2>&1; then
    chown rabbitmq:rabbitmq "$target"
fi

[ "$#" -eq 0 ] || exec "$@"
