#!/usr/bin/env bash
# Usage: tools/ensure_venv.sh VENV REQUIREMENTS_FILE
#
# Make VENV a virtual environment with REQUIREMENTS_FILE installed and this
# checkout installed into it (editable, without dependencies: the requirements
# pin them), so that the commands README names (spherical-cnn-predict, ...) are
# in VENV/bin. Does nothing when that is already so: a stamp file in VENV
# records the hash of the requirements it was installed from (REQUIREMENTS_FILE
# plus requirements.txt, which requirements-dev.txt includes), another the hash
# of pyproject.toml and the checkout's path, so a second call returns at once and
# a changed requirements file or pyproject.toml triggers a new `pip install`.
# PYTHON (default python3, 3.11) creates the environment.
set -euo pipefail
venv=$1
req=$2
py=${PYTHON:-python3}

hash_of() { cat "$1" requirements.txt | sha256sum | cut -d' ' -f1; }
stamp_of() { echo "$venv/.installed-$(basename "$1" .txt)"; }
package_hash() { { cat pyproject.toml; pwd; } | sha256sum | cut -d' ' -f1; }

stamp=$(stamp_of "$req")
package_stamp="$venv/.installed-package"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(hash_of "$req")" ] \
    && [ -f "$package_stamp" ] && [ "$(cat "$package_stamp")" = "$(package_hash)" ]; then
    exit 0
fi
if [ ! -x "$venv/bin/python" ]; then
    echo "creating $venv with $("$py" --version)"
    "$py" -m venv "$venv"
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$(hash_of "$req")" ]; then
    echo "installing $req into $venv (a few minutes the first time)"
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q -r "$req"
    # Stamp REQUIREMENTS_FILE and the files it includes with -r (installed with it).
    for f in "$req" $(sed -n 's/^-r[[:space:]]*//p' "$req"); do
        hash_of "$f" > "$(stamp_of "$f")"
    done
fi
echo "installing this checkout into $venv (pip install -e ., its commands in $venv/bin)"
"$venv/bin/python" -m pip install -q --no-deps -e .
package_hash > "$package_stamp"
