#!/usr/bin/env bash
# The test command: formatting, lint, types, the layer contract, then every test.
# Uses ./.venv (created and installed with the dev extras when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet -e '.[dev]'
fi
bin=.venv/bin

echo "== ruff format --check";  "$bin/ruff" format --check src tests alembic bench
echo "== ruff check";           "$bin/ruff" check src tests alembic bench
echo "== mypy src";             "$bin/mypy" src
echo "== lint-imports";         "$bin/lint-imports"
echo "== pytest"
exec "$bin/pytest" "$@"
