#!/usr/bin/env bash
# Installs (if missing) and starts throwaway PostgreSQL and Redis servers for the test suite, on
# their own ports and data directories, and prints the two URLs as shell exports.
# Usage: eval "$(bash .ci/services.sh)"
set -euo pipefail
PG_PORT=${TINGYIN_TEST_PG_PORT:-55432}
REDIS_PORT=${TINGYIN_TEST_REDIS_PORT:-56379}
STATE=${TINGYIN_TEST_SERVICES_DIR:-/tmp/tingyin-test-services}

need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
# The music development data (tingyin/music/devset.py): General MIDI renders of real pieces.
command -v fluidsynth >/dev/null 2>&1 || need+=(fluidsynth)
[ -e /usr/share/sounds/sf2/FluidR3_GM.sf2 ] || need+=(fluid-soundfont-gm)
# The web console's browser tests: Debian's Chromium (Playwright drives it; its own browser download
# does not work offline) and a CJK font so the Chinese UI renders in the screenshots.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
ls /usr/share/fonts/truetype/wqy/wqy-microhei.ttc >/dev/null 2>&1 || need+=(fonts-wqy-microhei)
# The sound dev tasks (tingyin/eval/sound_tasks.py): spoken words (the instruments share fluidsynth above).
command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq "${need[@]}" >&2
fi
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)

mkdir -p "$STATE"
if ! "$PGBIN/pg_isready" -h 127.0.0.1 -p "$PG_PORT" -q 2>/dev/null; then
  rm -rf "$STATE/pg"
  mkdir -p "$STATE/pg"
  chown postgres "$STATE/pg" 2>/dev/null || true
  as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
  as_pg "$PGBIN/initdb" -D "$STATE/pg/data" -A trust -U postgres >/dev/null
  as_pg "$PGBIN/pg_ctl" -D "$STATE/pg/data" -l "$STATE/pg/log" -w \
    -o "-p $PG_PORT -k $STATE/pg -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >&2
fi
if ! redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes --save '' --appendonly no \
    --dir "$STATE" --logfile "$STATE/redis.log" >&2
  for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
echo "export TINGYIN_TEST_POSTGRES_URL=postgresql+psycopg2://postgres@127.0.0.1:$PG_PORT/postgres"
echo "export TINGYIN_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0"
