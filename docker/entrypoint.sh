#!/bin/sh
# Runs the console script named by the container's CMD, with its arguments.
set -eu
if [ "$#" -eq 0 ]; then
    set -- pbx-orchestrator
fi
case "$1" in
    pbx-orchestrator|pbx-worker|pbx-admin|pbx-inspect|pbx-tenant|pbx-fssim|pbx-demo)
        exec "$@"
        ;;
    sh|bash)
        exec "$@"  # debugging: docker compose run --rm orchestrator sh
        ;;
    *)
        echo "pbx-entrypoint: unknown command '$1'; use one of pbx-orchestrator pbx-worker" \
             "pbx-admin pbx-inspect pbx-tenant pbx-fssim pbx-demo" >&2
        exit 64
        ;;
esac
