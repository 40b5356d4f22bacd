#!/usr/bin/env bash
# Usage: tools/ensure_venv.sh VENV REQUIREMENTS_FILE
#
# Make VENV a virtual environment with REQUIREMENTS_FILE installed, doing
# nothing when it already is: a stamp file in VENV records the hash of the
# requirements it was installed from (REQUIREMENTS_FILE plus requirements.txt,
# which requirements-dev.txt includes), so a second call returns at once and a
# changed requirements file triggers a new `pip install`. PYTHON (default
# python3, 3.11) creates the environment.
set -euo pipefail
venv=$1
req=$2
py=${PYTHON:-python3}

hash_of() { cat "$1" requirements.txt | sha256sum | cut -d' ' -f1; }
stamp_of() { echo "$venv/.installed-$(basename "$1" .txt)"; }

stamp=$(stamp_of "$req")
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(hash_of "$req")" ]; then
    exit 0
fi
if [ ! -x "$venv/bin/python" ]; then
    echo "creating $venv with $("$py" --version)"
    "$py" -m venv "$venv"
fi
echo "installing $req into $venv (a few minutes the first time)"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -r "$req"
# Stamp REQUIREMENTS_FILE and the files it includes with -r (installed with it).
for f in "$req" $(sed -n 's/^-r[[:space:]]*//p' "$req"); do
    hash_of "$f" > "$(stamp_of "$f")"
done
