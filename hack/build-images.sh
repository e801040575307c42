#!/usr/bin/env bash
# Build the Debian images the test hosts and the demo sandbox boot from: debootstrap,
# systemd as PID 1, python3 for Ansible, the machine's CA bundle (so pip and apt inside
# work behind the same TLS setup as this machine), and a cache of the code Python compiles
# from Ansible's zipped modules (hack/image/usercustomize.py says why). No registry is
# needed. An image is rebuilt only when its recipe (this file and that one) changed.
#   hack/build-images.sh [12] [13]
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"
need_root "building system container images"

declare -A suites=([12]=bookworm [13]=trixie)
packages=python3,python3-apt,systemd,systemd-sysv,dbus,sudo,ca-certificates,iproute2,procps,gnupg,locales
customize="$repo_root/hack/image/usercustomize.py"
recipe=$(cat "$0" "$customize" | sha256sum | cut -c1-16)

# The mirror this machine's apt already uses, so the images need nothing else.
debian_mirror() {
  local uri
  uri=$(grep -rhoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
    | awk 'NR == 1 {print $2}')
  printf '%s' "${uri:-http://deb.debian.org/debian}"
}

build() {
  local version=$1 suite=${suites[$1]:-}
  [ -n "$suite" ] || die "unknown Debian version $version (known: ${!suites[*]})"
  local image="$MLOPS_IMAGE_PREFIX:$version"
  if [ "$(podman image inspect --format '{{index .Labels "mlops.platform.recipe"}}' "$image" 2>/dev/null)" = "$recipe" ]; then
    log "image $image up to date"
    return
  fi
  local root
  root=$(mktemp -d "${TMPDIR:-/var/tmp}/mlops-image-XXXXXX")
  trap 'rm -rf "$root"' RETURN
  log "debootstrap $suite into $root (about a minute)"
  debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$(debian_mirror)" >"$root.log" 2>&1 \
    || { tail -n 20 "$root.log" >&2; die "debootstrap $suite failed (log: $root.log)"; }
  rm -f "$root.log"
  cp /etc/ssl/certs/ca-certificates.crt "$root/usr/local/share/ca-certificates/controller-bundle.crt"
  chroot "$root" update-ca-certificates >/dev/null 2>&1 || true
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  # A fresh machine-id per container; units that make no sense in a container off.
  : >"$root/etc/machine-id"
  chroot "$root" systemctl mask getty.target console-getty.service systemd-firstboot.service \
    systemd-udevd.service systemd-modules-load.service sys-kernel-config.mount >/dev/null 2>&1 || true
  echo 'en_US.UTF-8 UTF-8' >"$root/etc/locale.gen"
  chroot "$root" locale-gen >/dev/null
  echo 'LANG=C.UTF-8' >"$root/etc/default/locale"
  rm -rf "$root/var/cache/apt/archives/"*.deb
  local site
  site=$(HOME=/root chroot "$root" python3 -c 'import site; print(site.getusersitepackages())')
  install -D -m 0644 "$customize" "$root$site/usercustomize.py"
  tar -C "$root" -c . | podman import --quiet \
    --change 'CMD ["/sbin/init"]' \
    --change "LABEL mlops.platform.recipe=$recipe" \
    --change "LABEL mlops.platform.debian=$version" \
    - "$image" >/dev/null
  log "image $image built"
}

for v in "${@:-12 13}"; do
  for one in $v; do build "$one"; done
done
