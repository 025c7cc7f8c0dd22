#!/bin/sh
# A real Docker engine for the tests of internal/dockertest, made from what
# these machines can reach: Debian's packages and the Go module proxy. No
# image registry is reachable, so every image the generated docker-compose.yml
# and Dockerfile pin is made here, locally, under the same name and tag.
#
# THE IMAGES ARE STAND-INS. postgres, redis, haproxy and nginx come from
# Debian packages (PostgreSQL 15, Redis 7.0 and haproxy 2.6 from bookworm,
# nginx from sid because "server ... resolve;" needs nginx >= 1.27.3), MinIO
# is the binary install-servers.sh builds, `mc` is a small stand-in that
# answers `mc ready local` (internal/dockertest/mcstandin), golang holds this
# machine's Go, distroless is a scratch image with nonroot in /etc/passwd and
# the CA certificates. They check the compose file, the Dockerfile, the
# healthchecks, the DNS names and depends_on - what Docker itself does with
# them - not the upstream images themselves.
#
# Usage (as root; every step is idempotent and quiet when there is nothing to
# do; builds are cached under ~/.cache/scaffold/<tool>/<version>):
#
#   docker-engine.sh install   apt-get install docker.io and debootstrap when
#                              missing, build docker compose, make the Debian
#                              root filesystems the stand-ins are made from
#   docker-engine.sh start     start dockerd when none answers; prints
#                              "started PID" when it started one
#   docker-engine.sh images    make the stand-in images that are missing
#   docker-engine.sh up        install, start, images
#   docker-engine.sh stop PID  stop a dockerd that "start" started (and only
#                              such a one), and undo what it changed on the
#                              host: docker0, its iptables rules, ip_forward
#   docker-engine.sh compose   print the path of the docker compose binary
set -eu

# Pinned versions. The apt versions are bookworm's; when the mirror moves on,
# change them here (apt-cache policy docker.io debootstrap).
DOCKER_IO_VERSION=20.10.24+dfsg1-1+deb12u1+b6
DEBOOTSTRAP_VERSION=1.0.128+nmu2+deb12u2
COMPOSE_VERSION=v2.40.3
# Must equal testsupport.MinIOVersion (reference-app/scripts/install-servers.sh).
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
# The root filesystems are a Debian suite at the time they were made; their
# package lists are saved beside them (packages.txt). Bump ROOTFS_RECIPE when
# the lists below change, and STANDIN_RECIPE when an image recipe changes:
# both are part of the cache paths and image labels, so old ones are not
# reused.
ROOTFS_RECIPE=1
STANDIN_RECIPE=1
MIRROR=http://deb.debian.org/debian
SERVERS_PACKAGES=postgresql-15,redis-server,haproxy,ca-certificates
NGINX_PACKAGES=nginx,ca-certificates

# The image references the generated project pins (docker-compose.yml and
# Dockerfile of every load balancer; internal/dockertest checks that they
# still match).
IMG_POSTGRES=postgres:17.6-alpine
IMG_REDIS=redis:7.4.5-alpine
IMG_MINIO=quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z
IMG_HAPROXY=haproxy:3.0.11-alpine
IMG_NGINX=nginx:1.28.0-alpine
IMG_GOLANG=golang:1.26.0-alpine3.23
IMG_DISTROLESS=gcr.io/distroless/static-debian12:nonroot
LABEL=org.scaffold.standin

cache=${XDG_CACHE_HOME:-$HOME/.cache}/scaffold
compose_bin=$cache/docker-compose/$COMPOSE_VERSION/docker-compose
servers_rootfs=$cache/rootfs/bookworm-servers-$ROOTFS_RECIPE
nginx_rootfs=$cache/rootfs/sid-nginx-$ROOTFS_RECIPE
minio_bin=$cache/minio/$MINIO_VERSION/minio
# Where "start" leaves what "stop" needs to undo; one file per dockerd it
# started, so a dockerd started by anyone else is never stopped.
state_dir=/run/scaffold-docker-engine
repo=$(cd "$(dirname "$0")/.." && pwd)

say() { echo "docker-engine: $*" >&2; }
die() {
	say "$*"
	exit 1
}

tmp=
cleanup() { [ -z "$tmp" ] || rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

need_root() {
	[ "$(id -u)" -eq 0 ] || die "$1 needs root (run it as root, or: sudo sh $0 $1)"
}

# Makes $tmp, a directory for the whole run, removed on exit. (Called
# directly, not in $(...): a subshell's assignment would be lost, and the
# directory with it.)
ensure_tmp() {
	[ -n "$tmp" ] || tmp=$(mktemp -d /tmp/docker-engine.XXXXXX)
}

# Runs a command quietly, showing its output only when it fails. (Its own
# log file: install runs steps in parallel subshells.)
quiet() {
	qlog=$(mktemp /tmp/docker-engine-log.XXXXXX)
	if ! "$@" >"$qlog" 2>&1; then
		cat "$qlog" >&2
		rm -f "$qlog"
		die "failed: $*"
	fi
	rm -f "$qlog"
}

install_packages() {
	pkgs=
	command -v dockerd >/dev/null 2>&1 || pkgs="$pkgs docker.io=$DOCKER_IO_VERSION"
	command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] ||
		pkgs="$pkgs debootstrap=$DEBOOTSTRAP_VERSION"
	[ -n "$pkgs" ] || return 0
	need_root install
	say "installing$pkgs with apt-get"
	# docker.io would start its service; there is no init system here and the
	# tests start dockerd themselves. policy-rc.d exit 101 says: start nothing.
	policy=
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		policy=yes
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
	fi
	quiet apt-get update -q
	quiet env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $pkgs
	[ -z "$policy" ] || rm -f /usr/sbin/policy-rc.d
}

# docker compose v2 from the Go module proxy. `go install ...@version` is
# refused because compose's go.mod has exclude directives; a wrapper module
# that requires compose and repeats the excludes builds its cmd package.
build_compose() {
	[ -x "$compose_bin" ] || {
		command -v go >/dev/null 2>&1 || die "go not found, needed to build docker compose"
		say "building docker compose $COMPOSE_VERSION (about 8 minutes on 2 cores)"
		dir=$(dirname "$compose_bin")
		mkdir -p "$dir"
		# Built in a temporary directory and moved into place: an interrupted
		# build never leaves a broken binary where the cache is looked up.
		w=$(mktemp -d "$dir/.build.XXXXXX")
		cat >"$w/go.mod" <<EOF
module scaffold.local/composebuild

go 1.24

require github.com/docker/compose/v2 $COMPOSE_VERSION

// The excludes of github.com/docker/compose/v2's own go.mod: exclude
// directives apply only in the main module, so they are repeated here.
exclude (
	github.com/davecgh/go-spew v1.1.2-0.20180830191138-d8f796af33cc
	github.com/pmezard/go-difflib v1.0.1-0.20181226105442-5d4384ee4fb2
)
EOF
		printf 'package composebuild\n\nimport _ "github.com/docker/compose/v2/cmd"\n' >"$w/tools.go"
		if ! (cd "$w" && GOWORK=off go mod tidy &&
			GOWORK=off CGO_ENABLED=0 go build -trimpath -o docker-compose \
				-ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$COMPOSE_VERSION" \
				github.com/docker/compose/v2/cmd) >"$w.log" 2>&1; then
			cat "$w.log" >&2
			rm -rf "$w" "$w.log"
			die "building docker compose $COMPOSE_VERSION failed"
		fi
		mv "$w/docker-compose" "$compose_bin"
		rm -rf "$w" "$w.log"
		say "built $compose_bin"
	}
	# Also a CLI plugin, so that `docker compose` works by hand. A plugin
	# someone else put there is left alone (the tests run $compose_bin).
	plugin=$HOME/.docker/cli-plugins/docker-compose
	ours=no
	[ -e "$plugin" ] || [ -L "$plugin" ] || ours=yes
	case $(readlink "$plugin" 2>/dev/null) in "$cache"/docker-compose/*) ours=yes ;; esac
	if [ "$ours" = yes ] && [ "$(readlink "$plugin" 2>/dev/null)" != "$compose_bin" ]; then
		mkdir -p "$(dirname "$plugin")"
		ln -sfn "$compose_bin" "$plugin"
	fi
}

# A Debian root filesystem as a tarball: debootstrap minbase plus packages.
# $1 suite, $2 packages (comma list), $3 cache directory.
make_rootfs() {
	[ -f "$3/rootfs.tar" ] && return 0
	need_root install
	say "making the $1 root filesystem with $2 (debootstrap; cold, 5 to 9 minutes)"
	mkdir -p "$(dirname "$3")"
	# Made beside the cache directory and renamed into place: an interrupted
	# run never leaves a partial tarball where the cache is looked up.
	w=$(mktemp -d "$3.build.XXXXXX")
	if ! { debootstrap --variant=minbase --include="$2" "$1" "$w/root" "$MIRROR" &&
		chroot "$w/root" apt-get clean &&
		rm -rf "$w/root/var/lib/apt/lists/"* &&
		chroot "$w/root" dpkg-query -W >"$w/packages.txt" &&
		tar -C "$w/root" --numeric-owner -cf "$w/rootfs.tar" .; } >"$w.log" 2>&1; then
		tail -n 30 "$w.log" >&2
		rm -rf "$w" "$w.log"
		die "debootstrap of $1 failed"
	fi
	rm -rf "$w/root" "$w.log"
	mv "$w" "$3"
	say "made $3/rootfs.tar"
}

cmd_install() {
	install_packages
	[ -x "$minio_bin" ] || sh "$repo/reference-app/scripts/install-servers.sh"
	[ -x "$minio_bin" ] || die "no MinIO binary at $minio_bin"
	# In parallel: the compose build loads the CPUs, debootstrap mostly waits
	# on the network and the disk (cold, about 8 and 9 minutes).
	build_compose &
	compose_job=$!
	make_rootfs bookworm "$SERVERS_PACKAGES" "$servers_rootfs" &
	bookworm_job=$!
	make_rootfs sid "$NGINX_PACKAGES" "$nginx_rootfs" &
	sid_job=$!
	failed=
	wait "$compose_job" || failed="$failed docker-compose"
	wait "$bookworm_job" || failed="$failed bookworm-rootfs"
	wait "$sid_job" || failed="$failed sid-rootfs"
	[ -z "$failed" ] || die "install failed:$failed"
}

engine_answers() { docker version >/dev/null 2>&1; }

cmd_start() {
	engine_answers && return 0
	need_root start
	command -v dockerd >/dev/null 2>&1 || die "dockerd not found: run $0 install"
	mkdir -p "$state_dir"
	# What the engine changes on the host, as it was before: "stop" restores it.
	ensure_tmp
	state=$tmp/state
	{
		echo "ip_forward=$(cat /proc/sys/net/ipv4/ip_forward)"
		if ip link show docker0 >/dev/null 2>&1; then echo "docker0=yes"; else echo "docker0=no"; fi
		if iptables -S DOCKER >/dev/null 2>&1 || iptables -t nat -S DOCKER >/dev/null 2>&1; then
			echo "iptables=yes"
		else
			echo "iptables=no"
		fi
		echo "forward_policy=$(iptables -S FORWARD 2>/dev/null | sed -n 's/^-P FORWARD //p')"
	} >"$state"
	log=$state_dir/dockerd.log
	# setsid: its own process group, so a Ctrl-C in the calling terminal
	# does not reach it; "stop" ends it by PID.
	setsid dockerd >"$log" 2>&1 </dev/null &
	pid=$!
	cp "$state" "$state_dir/dockerd-$pid.state"
	i=0
	until engine_answers; do
		if ! kill -0 "$pid" 2>/dev/null; then
			tail -n 20 "$log" >&2
			rm -f "$state_dir/dockerd-$pid.state"
			die "dockerd exited; its log: $log"
		fi
		i=$((i + 1))
		[ "$i" -lt 120 ] || die "dockerd (pid $pid) did not answer within 60s; its log: $log"
		sleep 0.5
	done
	echo "started $pid"
}

cmd_stop() {
	pid=${1:-}
	[ -n "$pid" ] || die "usage: $0 stop PID"
	f=$state_dir/dockerd-$pid.state
	[ -f "$f" ] || die "dockerd $pid was not started by $0: not stopping it"
	need_root stop
	ip_forward=$(sed -n 's/^ip_forward=//p' "$f")
	docker0=$(sed -n 's/^docker0=//p' "$f")
	had_iptables=$(sed -n 's/^iptables=//p' "$f")
	forward_policy=$(sed -n 's/^forward_policy=//p' "$f")
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid"
		i=0
		while kill -0 "$pid" 2>/dev/null; do
			i=$((i + 1))
			if [ "$i" -ge 60 ]; then
				say "dockerd $pid still runs after 30s; sending SIGKILL"
				kill -KILL "$pid" 2>/dev/null || true
				break
			fi
			sleep 0.5
		done
	fi
	# dockerd leaves its bridge and iptables rules behind when it stops.
	if [ "$docker0" = no ] && ip link show docker0 >/dev/null 2>&1; then
		ip link delete docker0 || say "could not delete docker0"
	fi
	if [ "$had_iptables" = no ]; then
		remove_docker_iptables
		[ -z "$forward_policy" ] || iptables -P FORWARD "$forward_policy" || true
	fi
	[ -z "$ip_forward" ] || echo "$ip_forward" >/proc/sys/net/ipv4/ip_forward
	rm -f "$f"
	say "stopped dockerd $pid and restored the host's network settings"
}

# Removes the rules that jump to Docker's chains or name docker0 (the
# masquerade rule), then Docker's own chains; nothing else is touched.
remove_docker_iptables() {
	for table in filter nat; do
		iptables -t "$table" -S 2>/dev/null | grep -E '^-A ' |
			grep -E -- '-j DOCKER|docker0' | grep -v -E '^-A DOCKER' |
			while read -r rule; do
				# shellcheck disable=SC2086 # the rule is iptables -S words
				eval "iptables -t $table -D ${rule#-A }" || true
			done
		for chain in $(iptables -t "$table" -S 2>/dev/null | sed -n 's/^-N \(DOCKER[A-Z0-9_-]*\)$/\1/p'); do
			iptables -t "$table" -F "$chain" || true
		done
		for chain in $(iptables -t "$table" -S 2>/dev/null | sed -n 's/^-N \(DOCKER[A-Z0-9_-]*\)$/\1/p'); do
			iptables -t "$table" -X "$chain" || true
		done
	done
}

# True when image $1 exists and was made by this recipe.
have_image() {
	[ "$(docker image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$1" 2>/dev/null)" = "$STANDIN_RECIPE" ]
}

# Builds image $1 from the build context directory $2 (classic builder: no
# buildx here). The stand-in label goes on every image.
build_image() {
	quiet env DOCKER_BUILDKIT=0 docker build --label "$LABEL=$STANDIN_RECIPE" -t "$1" "$2"
	say "made stand-in $1"
}

# Imports a root filesystem tarball as image $2 unless it is there.
import_rootfs() {
	have_image "$2" && return 0
	quiet docker import --change "LABEL $LABEL=$STANDIN_RECIPE" "$1/rootfs.tar" "$2"
}

cmd_images() {
	engine_answers || die "no Docker engine answers: run $0 start"
	servers_base=scaffold-standin/bookworm-servers:$ROOTFS_RECIPE
	nginx_base=scaffold-standin/sid-nginx:$ROOTFS_RECIPE
	import_rootfs "$servers_rootfs" "$servers_base"
	import_rootfs "$nginx_rootfs" "$nginx_base"
	ensure_tmp
	t=$tmp

	have_image "$IMG_POSTGRES" || {
		mkdir -p "$t/postgres"
		pg_bin=/usr/lib/postgresql/15/bin # postgresql-15 in SERVERS_PACKAGES
		cat >"$t/postgres/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
# Stand-in for the postgres image's entrypoint: on first start, initialise
# PGDATA with POSTGRES_USER, POSTGRES_PASSWORD and POSTGRES_DB, allow
# password logins from any host, then run the server as the postgres user.
set -eu
if [ "${1:-}" = postgres ]; then
	: "${POSTGRES_PASSWORD:?the postgres image needs POSTGRES_PASSWORD}"
	user=${POSTGRES_USER:-postgres}
	db=${POSTGRES_DB:-$user}
	mkdir -p "$PGDATA" /run/postgresql
	chown postgres:postgres "$PGDATA" /run/postgresql
	chmod 700 "$PGDATA"
	as_pg() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }
	if [ ! -s "$PGDATA/PG_VERSION" ]; then
		pw=$(mktemp)
		printf '%s\n' "$POSTGRES_PASSWORD" >"$pw"
		chown postgres "$pw"
		as_pg initdb -D "$PGDATA" -U "$user" --pwfile="$pw" --auth-local=trust --auth-host=scram-sha-256 >/dev/null
		rm -f "$pw"
		echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
		if [ "$db" != postgres ]; then
			# A server on the Unix socket only, as the upstream image does, so
			# that nothing counts it as ready (the healthcheck uses TCP).
			as_pg pg_ctl -D "$PGDATA" -w -o "-c listen_addresses=''" start >/dev/null
			as_pg createdb -U "$user" "$db"
			as_pg pg_ctl -D "$PGDATA" -w -m fast stop >/dev/null
		fi
		echo "stand-in postgres: initialised $PGDATA for user $user, database $db"
	fi
	shift
	exec setpriv --reuid=postgres --regid=postgres --init-groups -- postgres -c listen_addresses='*' "$@"
fi
exec "$@"
EOF
		cat >"$t/postgres/Dockerfile" <<EOF
FROM $servers_base
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN chmod 755 /usr/local/bin/docker-entrypoint.sh
ENV PATH=$pg_bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin PGDATA=/var/lib/postgresql/data
VOLUME /var/lib/postgresql/data
STOPSIGNAL SIGINT
EXPOSE 5432
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["postgres"]
EOF
		build_image "$IMG_POSTGRES" "$t/postgres"
	}

	have_image "$IMG_REDIS" || {
		mkdir -p "$t/redis"
		cat >"$t/redis/Dockerfile" <<EOF
FROM $servers_base
RUN mkdir -p /data && chown redis:redis /data
WORKDIR /data
USER redis
EXPOSE 6379
CMD ["redis-server"]
EOF
		build_image "$IMG_REDIS" "$t/redis"
	}

	have_image "$IMG_HAPROXY" || {
		mkdir -p "$t/haproxy"
		cat >"$t/haproxy/Dockerfile" <<EOF
FROM $servers_base
RUN mkdir -p /usr/local/etc/haproxy
USER haproxy
STOPSIGNAL SIGUSR1
CMD ["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
EOF
		build_image "$IMG_HAPROXY" "$t/haproxy"
	}

	have_image "$IMG_NGINX" || {
		mkdir -p "$t/nginx"
		cat >"$t/nginx/Dockerfile" <<EOF
FROM $nginx_base
STOPSIGNAL SIGQUIT
EXPOSE 80
CMD ["nginx", "-g", "daemon off;"]
EOF
		build_image "$IMG_NGINX" "$t/nginx"
	}

	have_image "$IMG_MINIO" || {
		[ -x "$minio_bin" ] || die "no MinIO binary at $minio_bin: run $0 install"
		mkdir -p "$t/minio"
		cp "$minio_bin" "$t/minio/minio"
		(cd "$repo" && CGO_ENABLED=0 GOWORK=off go build -trimpath -o "$t/minio/mc" ./internal/dockertest/mcstandin) ||
			die "building the mc stand-in failed"
		cat >"$t/minio/Dockerfile" <<EOF
FROM $servers_base
COPY minio mc /usr/bin/
VOLUME /data
EXPOSE 9000
ENTRYPOINT ["/usr/bin/minio"]
CMD ["server", "/data"]
EOF
		build_image "$IMG_MINIO" "$t/minio"
	}

	have_image "$IMG_GOLANG" || {
		# This machine's Go, and its CA certificates: builds inside containers
		# reach the module proxy through a TLS-intercepting CA.
		mkdir -p "$t/golang"
		goroot=$(go env GOROOT)
		cp -a "$goroot" "$t/golang/go"
		cp /etc/ssl/certs/ca-certificates.crt "$t/golang/"
		cat >"$t/golang/Dockerfile" <<EOF
FROM $servers_base
COPY go /usr/local/go
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin GOPATH=/go GOTOOLCHAIN=local
WORKDIR /go
EOF
		build_image "$IMG_GOLANG" "$t/golang"
	}

	have_image "$IMG_DISTROLESS" || {
		# What the app's image needs of distroless/static:nonroot: the nonroot
		# user and group (65532), CA certificates, /tmp, and no shell.
		r=$t/distroless
		mkdir -p "$r/etc/ssl/certs" "$r/tmp" "$r/home/nonroot"
		printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$r/etc/passwd"
		printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >"$r/etc/group"
		cp /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/certs/"
		chmod 1777 "$r/tmp"
		chown 65532:65532 "$r/home/nonroot"
		quiet sh -c "tar -C '$r' --numeric-owner -c . | docker import \
			--change 'LABEL $LABEL=$STANDIN_RECIPE' --change 'USER 65532' \
			--change 'WORKDIR /home/nonroot' \
			--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
			- '$IMG_DISTROLESS'"
		say "made stand-in $IMG_DISTROLESS"
	}
}

case ${1:-} in
install) cmd_install ;;
start) cmd_start ;;
images) cmd_images ;;
up)
	cmd_install
	cmd_start
	cmd_images
	;;
stop) cmd_stop "${2:-}" ;;
compose) echo "$compose_bin" ;;
*) die "usage: $0 install|start|images|up|stop PID|compose" ;;
esac
