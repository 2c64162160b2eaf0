#!/usr/bin/env bash
# Sets up, builds and runs ferryd in the foreground with config/server.toml
# and the bundled example plugins. Stop it with Ctrl-C.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
"$root/scripts/build.sh" "$root/build" -DCMAKE_BUILD_TYPE=Release
exec "$root/build/ferryd" --config "$root/config/server.toml" "$@"
