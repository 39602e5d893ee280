#!/bin/sh
# Container entrypoint: turn mounted secret files into QFLEET_* variables, then run the command.
# A file /run/secrets/qfleet_redis_password becomes QFLEET_REDIS_PASSWORD, so secrets reach
# Settings without appearing in the image, the compose file, or any process's command line.
set -eu
if [ -d /run/secrets ]; then
    for file in /run/secrets/qfleet_*; do
        [ -f "$file" ] || continue
        name=$(basename "$file" | tr '[:lower:]' '[:upper:]')
        value=$(cat "$file")
        export "$name=$value"
    done
fi
exec "$@"
