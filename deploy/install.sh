#!/usr/bin/env bash
# Install ollabot as a systemd service: its own virtual environment under /opt/ollabot, the
# unit and drop-ins, host tuning, an env file (never overwritten) and a credentials directory.
# Idempotent: run it again after `git pull` to upgrade. See deploy/README.md.
set -euo pipefail
umask 022

usage() {
    cat <<'EOF'
usage: deploy/install.sh [--prefix DIR] [--dry-run] [--uninstall] [--harden-ollama] [--gpu-probe]
                         [--python PYTHON] [--wheelhouse DIR] [--pip-args "ARGS"]

  --prefix DIR      install under DIR instead of / (a scratch root for testing; no systemctl
                    start, reload or sysctl there, only `systemctl --root` enable/disable)
  --dry-run         print the actions, change nothing
  --uninstall       remove what install put there; keep the env file, credentials and data
  --harden-ollama   also install the optional hardening drop-in for ollama.service
  --gpu-probe       let ollabot see the GPUs (for OLLABOT_OLLAMA__MODEL=auto)
  --python PYTHON   interpreter for the virtual environment (default: python3, >= 3.11)
  --wheelhouse DIR  install offline from wheels in DIR (`pip wheel -w DIR .` on a connected
                    machine) instead of building the source tree
  --pip-args ARGS   extra arguments for `pip install`
EOF
}

SOURCE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEPLOY="$SOURCE/deploy"
PREFIX=""
DRY_RUN=0
UNINSTALL=0
HARDEN_OLLAMA=0
GPU_PROBE=0
PYTHON=python3
PIP_ARGS=""
WHEELHOUSE=""

while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) PREFIX="$(realpath -m "$2")"; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        --uninstall) UNINSTALL=1; shift ;;
        --harden-ollama) HARDEN_OLLAMA=1; shift ;;
        --gpu-probe) GPU_PROBE=1; shift ;;
        --python) PYTHON="$2"; shift 2 ;;
        --pip-args) PIP_ARGS="$2"; shift 2 ;;
        --wheelhouse) WHEELHOUSE="$(realpath "$2")"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done
[ "$PREFIX" = "/" ] && PREFIX=""

OPT="$PREFIX/opt/ollabot"
VENV="$OPT/venv"
ETC="$PREFIX/etc/ollabot"
UNITS="$PREFIX/etc/systemd/system"
SYSCTL="$PREFIX/etc/sysctl.d/90-ollabot.conf"
ENV_FILE="$ETC/ollabot.env"
CREDENTIALS="$ETC/credentials"
OLLAMA_DROPIN="$UNITS/ollama.service.d/10-ollabot.conf"
OLLAMA_HARDENING="$UNITS/ollama.service.d/20-hardening.conf"
GPU_PROBE_DROPIN="$UNITS/ollabot.service.d/20-gpu-probe.conf"
REDIS_DROPIN="$UNITS/redis-server.service.d/50-ollabot-durability.conf"
SECRET_NAMES="TELEGRAM__TOKEN|TELEGRAM__WEBHOOK_SECRET|SLACK__BOT_TOKEN|SLACK__APP_TOKEN|SLACK__SIGNING_SECRET"

say() { echo "install.sh: $*"; }

# Print a command, and run it unless --dry-run.
run() {
    echo "+ $*"
    [ "$DRY_RUN" = 1 ] || "$@"
}

# Copy a file (from a path, or stdin when SRC is -) unless DEST already has that content.
put() {
    local mode="$1" src="$2" dest="$3" staged
    staged="$(mktemp)"
    if [ "$src" = - ]; then cat >"$staged"; src="(generated)"; else cat "$src" >"$staged"; fi
    if [ -f "$dest" ] && cmp -s "$staged" "$dest"; then
        echo "= $dest (unchanged)"
    else
        echo "+ install -D -m $mode $src $dest"
        [ "$DRY_RUN" = 1 ] || install -D -m "$mode" "$staged" "$dest"
    fi
    rm -f "$staged"
}

remove() {
    if [ -e "$1" ] || [ -L "$1" ]; then run rm -rf "$1"; fi
}

remove_empty_dir() {
    if [ -d "$1" ] && [ -z "$(ls -A "$1")" ]; then run rmdir "$1"; fi
}

systemctl_() {
    if [ -n "$PREFIX" ]; then
        case "$1" in
            enable|disable) run systemctl --root="$PREFIX" "$@" ;;
            *) echo "- systemctl $* (skipped under --prefix)" ;;
        esac
    elif [ "$1" != enable ] && [ "$1" != disable ] && [ ! -d /run/systemd/system ]; then
        echo "- systemctl $* (skipped: systemd is not running)"
    else
        run systemctl "$@"
    fi
}

# The value of NAME in the env file, or DEFAULT.
env_value() {
    local name="$1" default="$2" value=""
    if [ -f "$ENV_FILE" ]; then
        value="$(sed -n "s/^[[:space:]]*$name=[\"']\\{0,1\\}\\([^\"'#]*\\).*/\\1/p" "$ENV_FILE" |
            tail -n 1 | tr -d '[:space:]')"
    fi
    echo "${value:-$default}"
}

install_venv() {
    if [ -x "$VENV/bin/python" ]; then
        echo "= $VENV (exists)"
    else
        run "$PYTHON" -m venv "$VENV"
    fi
    local pip=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade)
    # shellcheck disable=SC2206 # PIP_ARGS holds several arguments on purpose
    pip+=($PIP_ARGS)
    if [ -n "$WHEELHOUSE" ]; then
        run "${pip[@]}" --no-index --find-links "$WHEELHOUSE" ollabot
    elif [ "$DRY_RUN" = 1 ]; then
        echo "+ ${pip[*]} $SOURCE"
    else
        # Build from a copy, so the checkout gets no build/ or *.egg-info.
        local stage
        stage="$(mktemp -d)"
        cp -r "$SOURCE/pyproject.toml" "$SOURCE/bots" "$SOURCE/core" "$SOURCE/adapters" "$stage/"
        if [ -f "$SOURCE/README.md" ]; then cp "$SOURCE/README.md" "$stage/"; fi
        run "${pip[@]}" "$stage"
        rm -rf "$stage"
    fi
}

# .env.example without its secret lines: those belong in the credentials directory.
env_template() {
    if [ -f "$SOURCE/.env.example" ]; then
        local note="is a secret: put it in /etc/ollabot/credentials/ (see deploy/README.md)"
        sed -E "s@^(OLLABOT_($SECRET_NAMES))=.*@# \\1 $note@" "$SOURCE/.env.example"
    else
        printf '# ollabot settings (OLLABOT_*), see .env.example in the source tree.\n'
        printf '# Secrets go to /etc/ollabot/credentials/, never here.\n'
    fi
}

install_config() {
    if [ -e "$ENV_FILE" ]; then
        echo "= $ENV_FILE (kept)"
    else
        env_template | put 0640 - "$ENV_FILE"
    fi
    if [ -d "$CREDENTIALS" ]; then
        echo "= $CREDENTIALS (kept)"
    else
        run install -d -m 0700 "$CREDENTIALS"
    fi
}

# The Ollama drop-in with the values ollabot sends, so that Ollama never reloads the model.
ollama_dropin() {
    local num_ctx parallel keep_alive
    num_ctx="$(env_value OLLABOT_OLLAMA__NUM_CTX 8192)"
    parallel="$(env_value OLLABOT_OLLAMA__NUM_PARALLEL 1)"
    keep_alive="$(env_value OLLABOT_OLLAMA__KEEP_ALIVE 30m)"
    sed -e "s/^Environment=OLLAMA_CONTEXT_LENGTH=.*/Environment=OLLAMA_CONTEXT_LENGTH=$num_ctx/" \
        -e "s/^Environment=OLLAMA_NUM_PARALLEL=.*/Environment=OLLAMA_NUM_PARALLEL=$parallel/" \
        -e "s/^Environment=OLLAMA_KEEP_ALIVE=.*/Environment=OLLAMA_KEEP_ALIVE=$keep_alive/" \
        "$DEPLOY/systemd/ollama.service.d/10-ollabot.conf"
}

install_units() {
    put 0644 "$DEPLOY/systemd/ollabot.service" "$UNITS/ollabot.service"
    if [ "$GPU_PROBE" = 1 ]; then
        put 0644 "$DEPLOY/systemd/optional/ollabot-gpu-probe.conf" "$GPU_PROBE_DROPIN"
    fi
    ollama_dropin | put 0644 - "$OLLAMA_DROPIN"
    if [ "$HARDEN_OLLAMA" = 1 ]; then
        put 0644 "$DEPLOY/systemd/optional/ollama-hardening.conf" "$OLLAMA_HARDENING"
    fi
    put 0644 "$DEPLOY/systemd/redis-server.service.d/50-ollabot-durability.conf" "$REDIS_DROPIN"
    put 0644 "$DEPLOY/sysctl.d/90-ollabot.conf" "$SYSCTL"
}

do_install() {
    install_venv
    install_config
    install_units
    if [ -z "$PREFIX" ] && command -v sysctl >/dev/null; then
        run sysctl -q -p "$SYSCTL" || say "could not apply $SYSCTL now; it applies at boot"
    fi
    systemctl_ daemon-reload
    systemctl_ enable ollabot.service
    say "installed. Next: put the tokens in $CREDENTIALS/ (deploy/README.md), check"
    say "$ENV_FILE, restart ollama and redis-server, then: systemctl start ollabot"
}

do_uninstall() {
    if [ -z "$PREFIX" ]; then systemctl_ stop ollabot.service; fi
    if [ -e "$UNITS/ollabot.service" ]; then systemctl_ disable ollabot.service; fi
    remove "$UNITS/ollabot.service"
    remove "$GPU_PROBE_DROPIN"
    remove "$OLLAMA_DROPIN"
    remove "$OLLAMA_HARDENING"
    remove "$REDIS_DROPIN"
    remove_empty_dir "$UNITS/ollabot.service.d"
    remove_empty_dir "$UNITS/ollama.service.d"
    remove_empty_dir "$UNITS/redis-server.service.d"
    remove "$SYSCTL"
    remove "$OPT"
    systemctl_ daemon-reload
    say "uninstalled; kept $ENV_FILE, $CREDENTIALS and the data in /var/lib/ollabot"
}

if [ -z "$PREFIX" ] && [ "$DRY_RUN" = 0 ] && [ "$(id -u)" != 0 ]; then
    echo "install.sh: run as root (or use --prefix DIR / --dry-run)" >&2
    exit 1
fi
if [ "$UNINSTALL" = 1 ]; then do_uninstall; else do_install; fi
