#!/usr/bin/env bash
# Builds the two binaries of the Kubernetes control plane that tests/kube_cluster.py starts (the envtest
# pattern: a real kube-apiserver on a real etcd, no kubelet, no scheduler), from the Go module proxy, once, into
# a cache outside the repository:
#
#   $BR_TEST_TOOLS/bin/kube-apiserver   k8s.io/kubernetes/cmd/kube-apiserver at $KUBE_VERSION
#   $BR_TEST_TOOLS/bin/etcd             go.etcd.io/etcd/server/v3 (etcd's main package) at $ETCD_VERSION
#   $BR_TEST_TOOLS/bin/helm             helm.sh/helm/v3/cmd/helm at $HELM_VERSION (the chart's tests)
#   $BR_TEST_TOOLS/bin/minio            github.com/minio/minio at $MINIO_VERSION (a real S3 server: signatures,
#                                       versioning, Object Lock; tests/minio.py starts it)
#   $BR_TEST_TOOLS/bin/fake-gcs-server  github.com/fsouza/fake-gcs-server at $FAKE_GCS_VERSION (the Google Cloud
#                                       Storage emulator; tests/gcs.py starts it)
#   $BR_TEST_TOOLS/bin/mc               github.com/minio/mc at $MC_VERSION, only with --with-mc (MinIO's client:
#                                       the reference of `make bench BENCH_ARGS="--storage s3"`; no test needs it)
#   $BR_TEST_TOOLS/VERSIONS             one "name version" line per binary built
#
# BR_TEST_TOOLS defaults to ~/.cache/backup-repository/test-tools. Idempotent: a binary whose VERSIONS line
# matches the pin is not built again, so with all in place the script exits at once. The Go module and build
# caches live in the same directory (gomod/, gocache/), so that a build cut short resumes where it stopped; once
# all binaries are built the build cache (2.3 GB) is emptied unless BR_TEST_TOOLS_KEEP_GOCACHE=1, and the module
# cache (0.8 GB) is kept: a later pin bump downloads only what changed. What stays is about 0.9 GB; deleting any
# of it, or the whole directory, is always safe.
#
# A cold build takes 8 to 11 minutes on 2 cores (etcd under 1, kube-apiserver 2.5 to 4, helm 1 to 2, MinIO about 2,
# fake-gcs-server under 2: 107 s alone with empty caches, 86 s after MinIO's modules; downloads some 30 s) and up to 1.8 GB of memory; more on a machine busy with other work.
# Needs Go >= 1.26 (the etcd pin requires it) and the Go module proxy; nothing else is downloaded.
set -euo pipefail

KUBE_VERSION=v1.34.4
ETCD_VERSION=v3.6.16  # k8s 1.34 ships with etcd 3.6; a later 3.6 patch release for its fixes
HELM_VERSION=v3.19.5  # helm 3.19 is built on the Kubernetes 1.34 libraries
# MinIO publishes no semantic versions to the module proxy, only its commits: this one is of 2026-02-12
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
FAKE_GCS_VERSION=v1.56.1  # the GCS emulator the Go Cloud and Google client libraries test against
MC_VERSION=v0.0.0-20250313080218-cf909e1063a9  # MinIO's client, its newest on the proxy (2025-03-13); 1 minute to build
WITH_MC=0
if [ "${1:-}" = "--with-mc" ]; then
  WITH_MC=1
elif [ -n "${1:-}" ]; then
  echo "usage: $0 [--with-mc]" >&2
  exit 2
fi

TOOLS=${BR_TEST_TOOLS:-$HOME/.cache/backup-repository/test-tools}
BIN=$TOOLS/bin
mkdir -p "$BIN"
TOOLS=$(cd "$TOOLS" && pwd)
BIN=$TOOLS/bin

is_built() {  # name version
  [ -x "$BIN/$1" ] && grep -qx "$1 $2" "$TOOLS/VERSIONS" 2>/dev/null
}
HELM_BUILD="$HELM_VERSION-k8s$(echo "${KUBE_VERSION#v}" | cut -d. -f1,2)"  # helm, stamped with the API server's version
if is_built kube-apiserver "$KUBE_VERSION" && is_built etcd "$ETCD_VERSION" && is_built helm "$HELM_BUILD" \
    && is_built minio "$MINIO_VERSION" && is_built fake-gcs-server "$FAKE_GCS_VERSION" \
    && { [ "$WITH_MC" = 0 ] || is_built mc "$MC_VERSION"; }; then
  echo "test tools already built in $TOOLS (kube-apiserver $KUBE_VERSION, etcd $ETCD_VERSION, helm $HELM_VERSION," \
    "minio $MINIO_VERSION, fake-gcs-server $FAKE_GCS_VERSION)"
  exit 0
fi

command -v go >/dev/null 2>&1 || { echo "build-test-tools: 'go' is not installed" >&2; exit 1; }

# One build at a time per cache directory; a second caller waits, then finds the binaries built.
exec 9>"$TOOLS/.lock"
flock 9

export GOMODCACHE=$TOOLS/gomod GOCACHE=$TOOLS/gocache
export GOFLAGS="-modcacherw -mod=mod"  # -modcacherw: the cache can be deleted with rm -rf
export GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GO111MODULE=on
export GOPROXY=${GOPROXY:-$(go env GOPROXY)}

work=$(mktemp -d "${TMPDIR:-/tmp}/br-test-tools.XXXXXX")
trap 'rm -rf "$work"' EXIT

step() { echo "[$(date +%H:%M:%S) +${SECONDS}s] $*"; }

go_get() {  # go get, with its line per module counted instead of printed (its whole output when it fails)
  local log=$work/go-get.log
  if ! go get "$@" > "$log" 2>&1; then
    cat "$log" >&2
    return 1
  fi
  step "  $(grep -c '^go: downloading' "$log" || true) modules downloaded"
}

record_version() {  # name version: replace the name's line in VERSIONS
  { grep -v "^$1 " "$TOOLS/VERSIONS" 2>/dev/null || true; echo "$1 $2"; } | sort > "$TOOLS/VERSIONS.new"
  mv "$TOOLS/VERSIONS.new" "$TOOLS/VERSIONS"
}

step "$(go version); GOPROXY=$GOPROXY; cache $TOOLS"

build_kube_apiserver() {
  local mod=$work/kube-apiserver staging_version=v0.${KUBE_VERSION#v1.} k8s_gomod minor
  minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
  mkdir -p "$mod" && cd "$mod"
  step "kube-apiserver $KUBE_VERSION: reading k8s.io/kubernetes's go.mod"
  k8s_gomod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" \
    | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  [ -f "$k8s_gomod" ] || { echo "build-test-tools: no go.mod for k8s.io/kubernetes@$KUBE_VERSION" >&2; exit 1; }
  # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with ./staging/src/k8s.io/NAME,
  # which only holds inside its own repository: point each at its published release v0.MINOR.PATCH instead.
  {
    echo "module br-test-tools/kube-apiserver"
    echo
    grep -E '^(go|godebug|toolchain) ' "$k8s_gomod"  # the same language version and GODEBUG defaults
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    echo "replace ("
    awk '/=>[[:space:]]*\.\/staging\/src\// { for (i = 1; i <= NF; i++) if ($i == "=>") print $(i - 1) }' \
      "$k8s_gomod" | sort -u | sed "s|.*|\t& => & $staging_version|"
    echo ")"
  } > go.mod
  local replaced
  replaced=$(grep -c " => .* $staging_version" go.mod || true)
  [ "$replaced" -gt 0 ] || { echo "build-test-tools: no ./staging replace found in $k8s_gomod" >&2; exit 1; }
  step "kube-apiserver: $replaced staging modules replaced by $staging_version"
  step "kube-apiserver: resolving and downloading the dependencies (go get)"
  go_get "k8s.io/kubernetes/cmd/kube-apiserver@$KUBE_VERSION"
  step "kube-apiserver: compiling (the long part: 2.5 to 4 minutes on 2 cores when cold)"
  # what k8s's own build stamps (hack/lib/version.sh), so that /version and --version tell the release
  local x="" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    x+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    x+=" -X $pkg.gitTreeState=clean"
  done
  go build -p 2 -trimpath -ldflags "-s -w$x" -o "$BIN/.kube-apiserver.new" k8s.io/kubernetes/cmd/kube-apiserver
  mv "$BIN/.kube-apiserver.new" "$BIN/kube-apiserver"
  record_version kube-apiserver "$KUBE_VERSION"
  step "kube-apiserver: built, $("$BIN/kube-apiserver" --version)"
}

build_module() {  # name module-path version ldflags: go get the module's main package in a throwaway module
  local name=$1 package=$2 version=$3 ldflags=$4 mod=$work/$1
  mkdir -p "$mod" && cd "$mod"
  step "$name $version: resolving and downloading the dependencies (go get)"
  go mod init "br-test-tools/$name" >/dev/null 2>&1
  # a module's own replaces of its siblings (etcd's api, client, pkg) are ignored as a dependency; the siblings
  # come at the versions it requires, which are the same release
  go_get "$package@$version"
  step "$name: compiling"
  go build -p 2 -trimpath -ldflags "-s -w $ldflags" -o "$BIN/.$name.new" "$package"
  mv "$BIN/.$name.new" "$BIN/$name"
}

build_etcd() {
  build_module etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" "-X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_VERSION"
  record_version etcd "$ETCD_VERSION"
  step "etcd: built, $("$BIN/etcd" --version | sed -n 1p)"
}

build_helm() {
  # what helm's Makefile stamps: its version, and the Kubernetes version it assumes (.Capabilities.KubeVersion
  # and kubeVersion checks) — that of the API server the tests run, not the library's default of 1.20
  local minor=${KUBE_VERSION#v1.} pkg x="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  minor=${minor%%.*}
  for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    x+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$minor"
  done
  build_module helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION" "$x"
  record_version helm "$HELM_BUILD"
  step "helm: built, $("$BIN/helm" version --short)"
}

build_minio() {
  build_module minio github.com/minio/minio "$MINIO_VERSION" ""
  record_version minio "$MINIO_VERSION"
  step "minio: built, $("$BIN/minio" --version | sed -n 1p)"
}

build_fake_gcs_server() {
  build_module fake-gcs-server github.com/fsouza/fake-gcs-server "$FAKE_GCS_VERSION" ""
  record_version fake-gcs-server "$FAKE_GCS_VERSION"
  step "fake-gcs-server: built, $(du -h "$BIN/fake-gcs-server" | cut -f1)"
}

build_mc() {
  build_module mc github.com/minio/mc "$MC_VERSION" ""
  record_version mc "$MC_VERSION"
  step "mc: built, $("$BIN/mc" --version | sed -n 1p)"
}

is_built etcd "$ETCD_VERSION" || build_etcd
is_built kube-apiserver "$KUBE_VERSION" || build_kube_apiserver
is_built helm "$HELM_BUILD" || build_helm
is_built minio "$MINIO_VERSION" || build_minio
is_built fake-gcs-server "$FAKE_GCS_VERSION" || build_fake_gcs_server
[ "$WITH_MC" = 0 ] || is_built mc "$MC_VERSION" || build_mc

if [ "${BR_TEST_TOOLS_KEEP_GOCACHE:-0}" != 1 ]; then
  go clean -cache
fi
step "done: $BIN/kube-apiserver, $BIN/etcd, $BIN/helm, $BIN/minio, $BIN/fake-gcs-server; $TOOLS holds $(du -sh "$TOOLS" | cut -f1) (bin/ $(du -sh "$BIN" | cut -f1))"
