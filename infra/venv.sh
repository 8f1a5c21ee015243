#!/usr/bin/env bash
# Creates the project's .venv (repo root) and installs a requirements file into it.
# Idempotent and cheap when nothing changed: a stamp per requirements file records
# the hash of what was installed, so `make` targets can call this every time.
# Usage: infra/venv.sh [requirements-file]   (default: infra/requirements.txt)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
requirements="${1:-infra/requirements.txt}"
case "$requirements" in
  /*) ;;
  *) requirements="$repo_root/$requirements" ;;
esac
if [[ ! -f "$requirements" ]]; then
  echo "venv.sh: requirements file not found: $requirements" >&2
  exit 1
fi

venv="$repo_root/.venv"
python="${PYTHON:-python3}"

# A venv whose interpreter vanished (python upgraded, half-created) is rebuilt.
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
  rm -rf "$venv"
  "$python" -m venv "$venv"
fi

stamp="$venv/.stamp-$(basename "$requirements")"
wanted="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
  exit 0
fi

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
"$venv/bin/python" -m pip install --quiet --requirement "$requirements" </dev/null
echo "$wanted" >"$stamp"
