#!/usr/bin/env bash
# Build the binaries of kray's test control plane from the Go module proxy, cached by version.
#
# Why this exists: kray's Kubernetes side must be proven against a real kube-apiserver, but the project's
# machines have no Docker engine and cannot download release binaries (GitHub/GCS); they do reach the Go
# module proxy with Go 1.26.8. So we compile, at the versions pinned in hack/k8s/versions.env:
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl  (k8s.io/kubernetes)
#   etcd                                                      (a 5-line wrapper around etcdmain)
#   kwok                                                      (sigs.k8s.io/kwok/cmd/kwok) + its stage files
#   kuberay-operator                                          (github.com/ray-project/kuberay/ray-operator)
#   helm                                                      (helm.sh/helm/v3/cmd/helm)
#   traefik                                                   (github.com/traefik/traefik/v3/cmd/traefik)
# Background and pitfalls: /work/shared/reference/k8s-testenv.md.
#
# Why Kubernetes v1.37.2 (the newest served minor): it builds with Go 1.26.8 (go.mod says `go 1.26.0`),
# every staging module is published at v0.37.2, and it is what the served KubeRay/operator comparisons will
# be measured against longest. k8s.io/kubernetes cannot be `go install`ed: its go.mod resolves 33 staging
# modules (`k8s.io/X v0.0.0`) through `replace => ./staging/...`, which only applies to the main module.
# So we make a throwaway main module and generate one `replace k8s.io/X => k8s.io/X v0.37.2` per staging
# entry of the *served* go.mod (never typed by hand, so a new staging module cannot be missed).
# etcd: `go install go.etcd.io/etcd/server/v3@...` fails for the same reason (replace directives), hence
# the wrapper. kwok: no replace directives, so plain `go install`; the bare binary has no built-in stages,
# so we copy kustomize/stage from the module into the cache next to the binaries.
# kuberay: KubeRay's own Go operator, a test peer for kray (not part of the control plane). Its module has no
# replace directives, so plain `go install`; the binary `go install` names `ray-operator` is installed as
# `kuberay-operator` (the name KubeRay's images and charts use). It has no --version flag (its version is a
# constant), so the smoke check is that --help lists every flag kray/dev/kuberay.py passes.
# helm: renders and lints charts/kray-operator in the tests (a tool, not part of the control plane). No replace
# directives, so plain `go install`; its version is stamped with -X as helm's Makefile does, else
# `helm version` says only "v3.22" (the smoke check wants the full pinned version).
# traefik: the Gateway API implementation the e2e tests route a RayService's incremental upgrade through (a test
# peer, like kuberay). Its go.mod has replace directives (forks of go-http-auth, mux, minheap) and an exclude, so
# `go install` refuses it: a throwaway main module copies them from the *served* go.mod (generated, as for kube)
# and builds the command as a tool of that module. The version is stamped with -X as Traefik's Makefile does,
# else `traefik version` says "dev" (the smoke check wants the pinned version).
#
# Usage: hack/k8s/build.sh [etcd|kube|kwok|kuberay|helm|traefik]...   (default: all)
#        hack/k8s/build.sh --print-bin-dir
#        hack/k8s/build.sh --check      (exit 0 iff everything is cached; never builds)
# Output: ${XDG_CACHE_HOME:-~/.cache}/kray/k8s/<KUBERNETES_VERSION>/bin/ (+ ../kwok-stages/); override the
# root with KRAY_K8S_CACHE. A binary is rebuilt only if it is missing or its stamp (module@version) differs,
# so a warm run takes well under a second and never calls `go`. Any failure stops with go's exact error.
set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=versions.env
source "$HERE/versions.env"

ROOT=${KRAY_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kray/k8s}/$KUBERNETES_VERSION
BIN=$ROOT/bin
STAMPS=$ROOT/stamps
SRC=$ROOT/src

if [[ "${1:-}" == "--print-bin-dir" ]]; then
    echo "$BIN"
    exit 0
fi

export GOTOOLCHAIN=local CGO_ENABLED=0
export GOFLAGS="-buildvcs=false"
on_error() {
    local rc=$?
    ((BASH_SUBSHELL > 0)) || echo "build.sh: FAILED (exit $rc) at line $1: $2" >&2
    exit "$rc"
}
trap 'on_error "$LINENO" "$BASH_COMMAND"' ERR

log() { printf '[kray k8s build %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# is_cached NAME WANT: the binary exists and was built from WANT (module@version).
is_cached() {
    [[ -x "$BIN/$1" && -f "$STAMPS/$1" && "$(cat "$STAMPS/$1")" == "$2" ]]
}
stamp() { printf '%s' "$2" >"$STAMPS/$1"; }

# gomod_json FILE: a go.mod as JSON (`go mod edit -json`).
gomod_json() { go mod edit -json "$1"; }

# mod_field MODULE@VERSION FIELD: a field of `go mod download -json`; go reports errors inside that JSON
# (not on stderr), so print its .Error verbatim before failing.
mod_field() {
    local json
    if ! json=$(go mod download -json "$1"); then
        echo "build.sh: go mod download $1: $(jq -r '.Error // "unknown error"' <<<"$json")" >&2
        return 1
    fi
    jq -er ".$2" <<<"$json"
}

build_etcd() {
    local want="go.etcd.io/etcd/server/v3@$ETCD_VERSION"
    if is_cached etcd "$want"; then log "etcd $ETCD_VERSION: cached"; return; fi
    local t0=$SECONDS dir=$SRC/etcd
    log "etcd $ETCD_VERSION: building (wrapper around etcdmain) ..."
    rm -rf "$dir" && mkdir -p "$dir" && cd "$dir"
    go mod init local.kray/etcdbin >/dev/null 2>&1
    cat >main.go <<'GO'
// Package main runs etcd; `go install go.etcd.io/etcd/server/v3@v` cannot work (replace directives).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
    go get "$want"
    go mod tidy
    go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" .
    "$BIN/etcd" --version | head -1
    stamp etcd "$want"
    log "etcd $ETCD_VERSION: built in $((SECONDS - t0))s"
}

build_kube() {
    local want="k8s.io/kubernetes@$KUBERNETES_VERSION" names=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
    local missing=() n
    for n in "${names[@]}"; do is_cached "$n" "$want" || missing+=("$n"); done
    if ((${#missing[@]} == 0)); then log "kubernetes $KUBERNETES_VERSION: cached"; return; fi
    local t0=$SECONDS dir=$SRC/kube staging="v0.${KUBERNETES_VERSION#v1.}"
    local minor
    minor=$(cut -d. -f2 <<<"$KUBERNETES_VERSION")
    log "kubernetes $KUBERNETES_VERSION: resolving k8s.io/kubernetes go.mod from the module proxy ..."
    rm -rf "$dir" && mkdir -p "$dir" && cd "$dir"
    go mod init local.kray/k8sbin >/dev/null 2>&1
    local served
    served=$(mod_field "$want" GoMod)
    # One replace per `=> ./staging/...` entry of the served go.mod, at the matching v0.<minor>.<patch>.
    local mods
    mods=$(gomod_json "$served" | jq -er '[.Replace[]? | select(.New.Path | startswith("./staging/")) | .Old.Path] | .[]')
    local count=0 m
    for m in $mods; do go mod edit -replace="$m=$m@$staging"; count=$((count + 1)); done
    ((count > 0)) || { echo "build.sh: no staging replaces found in $served" >&2; exit 1; }
    local goline
    goline=$(gomod_json "$served" | jq -er '.Go')
    go mod edit -go="$goline" -godebug="default=go$(cut -d. -f1,2 <<<"$goline")"
    log "kubernetes $KUBERNETES_VERSION: $count staging modules replaced at $staging; go $goline; fetching modules ..."
    go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@$KUBERNETES_VERSION" \
        "k8s.io/kubernetes/cmd/kube-controller-manager@$KUBERNETES_VERSION" \
        "k8s.io/kubernetes/cmd/kube-scheduler@$KUBERNETES_VERSION" \
        "k8s.io/kubernetes/cmd/kubectl@$KUBERNETES_VERSION"
    # Version stamping, else /version reports v0.0.0-master+$Format:%H$.
    local ld="-s -w" p date
    date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ld+=" -X $p.gitVersion=$KUBERNETES_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
        ld+=" -X $p.gitTreeState=clean -X $p.buildDate=$date"
    done
    for n in "${missing[@]}"; do
        local t1=$SECONDS
        log "kubernetes $KUBERNETES_VERSION: compiling $n (cold: many minutes on 2 cores) ..."
        go build -mod=mod -trimpath -ldflags "$ld" -o "$BIN/$n" "k8s.io/kubernetes/cmd/$n"
        if [[ "$n" == kubectl ]]; then "$BIN/$n" version --client; else "$BIN/$n" --version; fi
        stamp "$n" "$want"
        log "kubernetes $KUBERNETES_VERSION: $n built in $((SECONDS - t1))s"
    done
    log "kubernetes $KUBERNETES_VERSION: done in $((SECONDS - t0))s"
}

build_kwok() {
    local want="sigs.k8s.io/kwok@$KWOK_VERSION"
    if is_cached kwok "$want" && [[ -d "$ROOT/kwok-stages" ]]; then log "kwok $KWOK_VERSION: cached"; return; fi
    local t0=$SECONDS
    log "kwok $KWOK_VERSION: building ..."
    mkdir -p "$SRC" && cd "$SRC"
    GOBIN="$BIN" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
    "$BIN/kwok" --version
    # The bare kwok binary has no stages; ship the upstream stage files next to it.
    local dir
    dir=$(mod_field "$want" Dir)
    rm -rf "$ROOT/kwok-stages"
    cp -r "$dir/kustomize/stage" "$ROOT/kwok-stages"
    chmod -R u+w "$ROOT/kwok-stages"
    stamp kwok "$want"
    log "kwok $KWOK_VERSION: built in $((SECONDS - t0))s"
}

build_kuberay() {
    local want="github.com/ray-project/kuberay/ray-operator@$KUBERAY_VERSION"
    if is_cached kuberay-operator "$want"; then log "kuberay $KUBERAY_VERSION: cached"; return; fi
    local t0=$SECONDS gobin=$SRC/kuberay-gobin
    log "kuberay $KUBERAY_VERSION: building ray-operator (cold: minutes on 2 cores) ..."
    rm -rf "$gobin" && mkdir -p "$gobin" && cd "$SRC"
    GOBIN="$gobin" go install -trimpath -ldflags "-s -w" "$want"
    mv -f "$gobin/ray-operator" "$BIN/kuberay-operator"
    rm -rf "$gobin"
    local usage f
    usage=$("$BIN/kuberay-operator" --help 2>&1 || true)
    for f in kubeconfig watch-namespace enable-leader-election metrics-addr health-probe-bind-address \
        feature-gates reconcile-concurrency log-stdout-encoder; do
        grep -qE -- "^ +-$f( |$)" <<<"$usage" || { printf 'build.sh: kuberay-operator --help lacks -%s:\n%s\n' "$f" "$usage" >&2; exit 1; }
    done
    stamp kuberay-operator "$want"
    log "kuberay $KUBERAY_VERSION: built in $((SECONDS - t0))s"
}

build_helm() {
    local want="helm.sh/helm/v3@$HELM_VERSION"
    if is_cached helm "$want"; then log "helm $HELM_VERSION: cached"; return; fi
    local t0=$SECONDS gobin=$SRC/helm-gobin
    log "helm $HELM_VERSION: building ..."
    rm -rf "$gobin" && mkdir -p "$gobin" && cd "$SRC"
    GOBIN="$gobin" go install -trimpath \
        -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
        "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
    mv -f "$gobin/helm" "$BIN/helm"
    rm -rf "$gobin"
    local got
    got=$("$BIN/helm" version --template '{{.Version}}')
    [[ "$got" == "$HELM_VERSION" ]] || { echo "build.sh: helm version says '$got', want $HELM_VERSION" >&2; exit 1; }
    stamp helm "$want"
    log "helm $HELM_VERSION: built in $((SECONDS - t0))s"
}

build_traefik() {
    local module=github.com/traefik/traefik/v3
    local want="$module@$TRAEFIK_VERSION"
    if is_cached traefik "$want"; then log "traefik $TRAEFIK_VERSION: cached"; return; fi
    local t0=$SECONDS dir=$SRC/traefik
    log "traefik $TRAEFIK_VERSION: resolving its go.mod from the module proxy ..."
    rm -rf "$dir" && mkdir -p "$dir" && cd "$dir"
    go mod init local.kray/traefikbin >/dev/null 2>&1
    local served
    served=$(mod_field "$want" GoMod)
    # Replace directives and excludes apply only in the main module: carry the served ones over verbatim.
    local r count=0
    while IFS= read -r r; do
        [[ -n "$r" ]] || continue
        go mod edit -replace="$r"
        count=$((count + 1))
    done < <(gomod_json "$served" |
        jq -r '.Replace[]? | "\(.Old.Path)\(if .Old.Version then "@" + .Old.Version else "" end)=\(.New.Path)\(if .New.Version then "@" + .New.Version else "" end)"')
    while IFS= read -r r; do
        [[ -n "$r" ]] && go mod edit -exclude="$r"
    done < <(gomod_json "$served" | jq -r '.Exclude[]? | "\(.Path)@\(.Version)"')
    local goline
    goline=$(gomod_json "$served" | jq -er '.Go')
    go mod edit -go="$goline"
    log "traefik $TRAEFIK_VERSION: $count replace directives carried over; go $goline; fetching modules ..."
    go get -tool "$module/cmd/traefik@$TRAEFIK_VERSION"
    local date
    date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    log "traefik $TRAEFIK_VERSION: compiling (cold: about 12 CPU-minutes) ..."
    go build -mod=mod -trimpath \
        -ldflags "-s -w -X $module/pkg/version.Version=$TRAEFIK_VERSION -X $module/pkg/version.BuildDate=$date" \
        -o "$BIN/traefik" "$module/cmd/traefik"
    local got
    got=$("$BIN/traefik" version)
    printf '%s\n' "$got"
    grep -qE "^Version: +$TRAEFIK_VERSION\$" <<<"$got" || {
        printf 'build.sh: traefik version does not say %s:\n%s\n' "$TRAEFIK_VERSION" "$got" >&2
        exit 1
    }
    stamp traefik "$want"
    log "traefik $TRAEFIK_VERSION: built in $((SECONDS - t0))s"
}

check() {
    local k="k8s.io/kubernetes@$KUBERNETES_VERSION"
    is_cached etcd "go.etcd.io/etcd/server/v3@$ETCD_VERSION" && is_cached kube-apiserver "$k" &&
        is_cached kube-controller-manager "$k" && is_cached kube-scheduler "$k" && is_cached kubectl "$k" &&
        is_cached kwok "sigs.k8s.io/kwok@$KWOK_VERSION" && [[ -d "$ROOT/kwok-stages" ]] &&
        is_cached kuberay-operator "github.com/ray-project/kuberay/ray-operator@$KUBERAY_VERSION" &&
        is_cached helm "helm.sh/helm/v3@$HELM_VERSION" &&
        is_cached traefik "github.com/traefik/traefik/v3@$TRAEFIK_VERSION"
}

main() {
    # In an `if`, a "no" from check is an answer, not a failure for the ERR trap (which would print FAILED).
    if [[ "${1:-}" == "--check" ]]; then if check; then exit 0; fi; exit 1; fi
    local what=("$@")
    ((${#what[@]})) || what=(etcd kube kwok kuberay helm traefik)
    mkdir -p "$BIN" "$STAMPS"
    # One build at a time per version (parallel pytest sessions, CI + developer).
    exec 9>"$ROOT/.lock"
    if ! flock -n 9; then
        log "another build holds $ROOT/.lock; waiting ..."
        flock 9
    fi
    local t0=$SECONDS c
    for c in "${what[@]}"; do
        case "$c" in
            etcd) build_etcd ;;
            kube) build_kube ;;
            kwok) build_kwok ;;
            kuberay) build_kuberay ;;
            helm) build_helm ;;
            traefik) build_traefik ;;
            *) echo "build.sh: unknown component '$c' (want etcd, kube, kwok, kuberay, helm, traefik)" >&2; exit 2 ;;
        esac
    done
    log "all requested binaries ready in $BIN ($((SECONDS - t0))s)"
}

main "$@"
