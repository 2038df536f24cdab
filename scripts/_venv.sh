# Sourced by scripts/test.sh and scripts/demo.sh: make .venv at the repository root and
# install zgit into it (editable), once.
#
#   zgit_venv '.[test]'     # cd to the repository root; .venv/bin/python is then ready
#
# Needs only python3 (3.10+), pip and git.  The install is skipped when the stamp file
# .venv/.zgit-installed is newer than setup.cfg, setup.py, pyproject.toml and _zgit_startup.py
# (an editable install copies it into site-packages) and records the same target;
# delete .venv (or the stamp) to force a fresh install.  PYTHON picks the interpreter.

zgit_venv() {
    local target="${1:-.}"
    local root
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    cd "$root"

    local python="${PYTHON:-python3}"
    local venv=.venv
    local stamp="$venv/.zgit-installed"
    local pip=("$venv/bin/python" -m pip)

    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c '' 2>/dev/null; then
        command -v "$python" >/dev/null 2>&1 || { echo "error: $python not found (zgit needs Python 3.10+)" >&2; return 1; }
        "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
            || { echo "error: zgit needs Python 3.10+, $python is $("$python" -V 2>&1)" >&2; return 1; }
        rm -rf "$venv" "$stamp"
        echo "Creating $root/$venv ..." >&2
        if ! "$python" -m venv "$venv" >/dev/null 2>&1; then
            # e.g. Debian without python3-venv: no ensurepip.  Make the venv without pip and
            # let the interpreter's own pip install into it.
            rm -rf "$venv"
            "$python" -m venv --without-pip "$venv"
        fi
    fi
    if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
        pip=("$python" -m pip --python "$venv/bin/python")
    fi

    local fresh=1 f
    for f in setup.cfg setup.py pyproject.toml _zgit_startup.py; do
        if [ -e "$f" ] && ! [ "$stamp" -nt "$f" ]; then fresh=0; fi
    done
    if [ "$fresh" = 1 ] && [ -e "$stamp" ]; then
        # '.' is satisfied by any install of the project ('.[test]' included)
        if grep -qxF -- "$target" "$stamp" || { [ "$target" = . ] && grep -q '^\.' "$stamp"; }; then
            return 0
        fi
    fi
    echo "Installing zgit ($target) into $venv ..." >&2
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 "${pip[@]}" install -q -e "$target"
    # record what is installed; an older stamp only counts if setup files did not change
    if [ "$fresh" = 1 ] && [ -e "$stamp" ]; then
        { cat "$stamp"; echo "$target"; } | sort -u > "$stamp.tmp"
    else
        echo "$target" > "$stamp.tmp"
    fi
    mv "$stamp.tmp" "$stamp"
}
