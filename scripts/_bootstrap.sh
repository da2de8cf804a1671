# Sourced by the other scripts: a virtual environment in .venv with the project installed
# (editable) and the extras named in $EXTRAS. Reinstalls only when pyproject.toml changes.
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.installed-$(cksum < pyproject.toml | cut -d' ' -f1)-${EXTRAS:-none}"
if [ ! -f "$stamp" ]; then
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -e ".${EXTRAS:+[$EXTRAS]}"
  touch "$stamp"
fi
