#!/bin/sh
# Installs the servers the integration tests start as child processes
# (see testsupport/), those this project uses: PostgreSQL, redis-server, nginx and haproxy from Debian packages, and MinIO built
# with `go install` into a cache directory that is reused across runs. Installs only what is missing and prints nothing when
# everything is there, so `make test` can run it every time.
#
# A server given by URL is not needed locally: TEST_DATABASE_URL (then only
# psql is), TEST_REDIS_URL, TEST_S3_ENDPOINT.
set -eu

# Must equal testsupport.MinIOVersion (a test checks it).
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c

# os.UserCacheDir on Linux.
cache=${XDG_CACHE_HOME:-$HOME/.cache}
minio_dir=$cache/scaffold/minio/$MINIO_VERSION
minio_bin=$minio_dir/minio

# Finds a binary the way testsupport does: PATH, then the sbin directories a
# non-root PATH often lacks (Debian puts nginx and haproxy in /usr/sbin).
find_bin() {
	if command -v "$1" >/dev/null 2>&1; then
		command -v "$1"
		return 0
	fi
	for d in /usr/sbin /usr/local/sbin /sbin; do
		if [ -x "$d/$1" ]; then
			echo "$d/$1"
			return 0
		fi
	done
	return 1
}

# Prints the PostgreSQL bin directory testsupport uses: $PG_BIN, else the
# highest /usr/lib/postgresql/<version>/bin that has every binary it runs.
pg_bin() {
	if [ -n "${PG_BIN:-}" ]; then
		echo "$PG_BIN"
		return 0
	fi
	found=
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5n); do
		if [ -x "$d/initdb" ] && [ -x "$d/postgres" ] && [ -x "$d/psql" ] && [ -x "$d/pg_isready" ]; then
			found=$d
		fi
	done
	[ -n "$found" ] && echo "$found"
}

# Debian packages to install, and what to report for each once installed.
pkgs=
if [ -n "${TEST_DATABASE_URL:-}" ]; then
	find_bin psql >/dev/null || pkgs="$pkgs postgresql-client"
else
	pg_bin >/dev/null || pkgs="$pkgs postgresql"
fi
[ -n "${TEST_REDIS_URL:-}" ] || find_bin redis-server >/dev/null || pkgs="$pkgs redis-server"
find_bin nginx >/dev/null || pkgs="$pkgs nginx"
find_bin haproxy >/dev/null || pkgs="$pkgs haproxy"

need_minio=
if [ -z "${TEST_S3_ENDPOINT:-}" ] && [ ! -x "$minio_bin" ] && ! find_bin minio >/dev/null &&
	! { [ -n "${MINIO_BIN:-}" ] && [ -x "$MINIO_BIN" ]; }; then
	need_minio=yes
fi

[ -n "$pkgs" ] || [ -n "$need_minio" ] || exit 0

# Temporary files, removed however the script ends.
log=$(mktemp)
policy=
minio_tmp=
cleanup() {
	rm -f "$log"
	[ -z "$minio_tmp" ] || rm -rf "$minio_tmp"
	[ -z "$policy" ] || $sudo rm -f /usr/sbin/policy-rc.d
}
trap cleanup EXIT
trap 'exit 130' INT TERM
sudo=

if [ -n "$pkgs" ]; then
	if ! command -v apt-get >/dev/null 2>&1; then
		echo "install-servers: apt-get not found; install these yourself:$pkgs" >&2
		exit 1
	fi
	if [ "$(id -u)" -ne 0 ]; then
		if ! command -v sudo >/dev/null 2>&1; then
			echo "install-servers: not root and no sudo; as root run: apt-get install$pkgs" >&2
			exit 1
		fi
		sudo=sudo
	fi
	# Said before sudo or apt-get runs: a password prompt, or packages
	# installed as root, must not come as a surprise.
	echo "install-servers: the tests need$pkgs; installing with ${sudo:+sudo }apt-get install$pkgs"
	echo "install-servers: to use servers you already run instead, stop now and set TEST_DATABASE_URL, TEST_REDIS_URL, TEST_S3_ENDPOINT (README.md, Tests)"
	# The packages would start system services; the tests run their own
	# servers, and without an init system starting them fails the install.
	# policy-rc.d exit 101 tells invoke-rc.d not to start anything.
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		policy=yes
		printf '#!/bin/sh\n# added by install-servers.sh while it runs\nexit 101\n' |
			$sudo sh -c 'cat >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'
	fi
	if ! { $sudo apt-get update -q && $sudo env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -q --no-install-recommends $pkgs; } >"$log" 2>&1; then
		cat "$log" >&2
		echo "install-servers: apt-get install$pkgs failed" >&2
		exit 1
	fi
	for p in $pkgs; do
		case $p in
		postgresql) echo "installed postgresql: $(pg_bin)" ;;
		postgresql-client) echo "installed psql: $(find_bin psql)" ;;
		*) echo "installed $p: $(find_bin "$p")" ;;
		esac
	done
fi

if [ -n "$need_minio" ]; then
	if ! command -v go >/dev/null 2>&1; then
		echo "install-servers: go not found, needed to build MinIO" >&2
		exit 1
	fi
	echo "install-servers: building MinIO $MINIO_VERSION with go install (takes a few minutes)"
	mkdir -p "$minio_dir"
	# Build into a temporary directory and move the binary into place, so an
	# interrupted build never leaves a broken binary where tests look for it.
	minio_tmp=$(mktemp -d "$minio_dir/.build.XXXXXX")
	if ! (cd "$minio_tmp" && GOBIN="$minio_tmp" GOFLAGS= GOWORK=off \
		go install "github.com/minio/minio@$MINIO_VERSION") >"$log" 2>&1; then
		cat "$log" >&2
		echo "install-servers: go install github.com/minio/minio@$MINIO_VERSION failed" >&2
		exit 1
	fi
	mv "$minio_tmp/minio" "$minio_bin"
	echo "installed minio $MINIO_VERSION: $minio_bin"
fi
