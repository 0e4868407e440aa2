#!/usr/bin/env bash
# Runs the README's two commands, exactly as the README writes them, on a
# fresh Debian 12 root (debootstrap --variant=minbase bookworm), so that a
# package the build needs but the machine happens to have cannot hide.
#
#   scripts/fresh-root.sh                 command 1, command 2, examples/check.sh
#   scripts/fresh-root.sh --no-tests      command 1 only
#   RUNNEL_FRESH_ROOT_DROP="pkg ..."      drop packages from install-deps.sh in
#                                         the copy (shows that a missing
#                                         package fails this check)
#
# Needs root (debootstrap, chroot, mount) and the Debian registry.  The root
# gets what any real machine has from its owner: the host's resolver, CA
# certificates, pip configuration and apt sources; nothing else of the host's.
# The working tree (tracked and untracked, not ignored files) is copied in, with
# ../shared beside it when it exists.  Everything lives under one temporary
# folder, removed at the end (RUNNEL_FRESH_ROOT_KEEP=1 keeps it).
set -euo pipefail
src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
run_tests=1
for a in "$@"; do
  case "$a" in
    --no-tests) run_tests=0 ;;
    *) echo "fresh-root: unknown argument '$a' (takes --no-tests)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "fresh-root: must run as root (debootstrap, chroot, mount)" >&2; exit 2; }
for tool in debootstrap chroot mount git tar; do
  command -v "$tool" >/dev/null || { echo "fresh-root: '$tool' not found (apt-get install debootstrap)" >&2; exit 2; }
done
mirror="${RUNNEL_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

# The README's commands: the first line after the "# 1." and "# 2." comments
# of its first sh block.
readme_command() {  # readme_command N
  awk -v n="$1" '
    /^```sh/ { inblock = 1; next }
    /^```/ && inblock { exit }
    inblock && want { print; exit }
    inblock && $0 ~ "^# " n "\\." { want = 1 }
  ' "$src/README.md"
}
cmd1="$(readme_command 1)"
cmd2="$(readme_command 2)"
[ -n "$cmd1" ] && [ -n "$cmd2" ] || { echo "fresh-root: README.md has no '# 1.' / '# 2.' commands in its first sh block" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/var/tmp}/runnel-fresh-root.XXXXXX")"
root="$work/root"
cleanup() {
  local m
  for m in "$root/sys" "$root/proc" "$root/dev/pts"; do
    if mountpoint -q "$m" 2>/dev/null; then umount -l "$m" || true; fi
  done
  if [ "${RUNNEL_FRESH_ROOT_KEEP:-0}" = 1 ]; then
    echo "fresh-root: kept $work" >&2
  else
    rm -rf --one-file-system "$work"
  fi
}
trap cleanup EXIT

t0=$SECONDS
echo "fresh-root: debootstrap --variant=minbase bookworm ($mirror)"
if ! debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1; then
  tail -n 30 "$work/debootstrap.log" >&2
  echo "fresh-root: debootstrap failed" >&2
  exit 1
fi
echo "fresh-root: bare root in $((SECONDS - t0)) s"

# What a real machine has from its owner.
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  mkdir -p "$root/etc/ssl/certs"
  cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
fi
if [ -d /usr/local/share/ca-certificates ]; then
  mkdir -p "$root/usr/local/share"
  cp -rL /usr/local/share/ca-certificates "$root/usr/local/share/"
fi
for f in /etc/pip.conf /etc/xdg/pip/pip.conf /root/.config/pip/pip.conf /root/.pip/pip.conf; do
  if [ -f "$f" ]; then mkdir -p "$root$(dirname "$f")"; cp -L "$f" "$root$f"; fi
done
if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
  cp -L /etc/apt/sources.list.d/*.sources "$root/etc/apt/sources.list.d/"
  rm -f "$root/etc/apt/sources.list"
fi

# The project, as a user's checkout, and shared/ beside it.
mkdir -p "$root/src/runnel"
(cd "$src" && git ls-files -z --cached --others --exclude-standard |
   tar --null -T - --ignore-failed-read -cf - 2>/dev/null) | tar -xf - -C "$root/src/runnel"
if [ -d "$src/../shared" ]; then cp -r "$src/../shared" "$root/src/shared"; fi
if [ -n "${RUNNEL_FRESH_ROOT_DROP:-}" ]; then
  for p in $RUNNEL_FRESH_ROOT_DROP; do
    sed -i "s/\\(^\\|[[:space:]]\\)$p\\([[:space:]]\\|\$\\)/\\1\\2/" "$root/src/runnel/scripts/install-deps.sh"
    echo "fresh-root: dropped $p from install-deps.sh (RUNNEL_FRESH_ROOT_DROP)"
  done
fi

mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
mount --make-rslave "$root/sys"
mkdir -p "$root/dev/pts"
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$root/dev/pts" 2>/dev/null || true

in_root() {  # in_root COMMAND: a login-like shell in the checkout, nothing of the host's environment
  chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    /bin/bash -c "cd /src/runnel && $1"
}

step() {  # step NAME COMMAND
  local name="$1" t=$SECONDS
  echo "fresh-root: $name: $2"
  if ! in_root "$2"; then
    echo "fresh-root: FAILED: $name ($2)" >&2
    exit 1
  fi
  echo "fresh-root: $name: $((SECONDS - t)) s"
}

step "README command 1" "$cmd1"
if [ "$run_tests" = 1 ]; then
  step "README command 2" "$cmd2"
  step "examples" "examples/check.sh build/release models/SmolLM2-135M-Instruct.Q4_1.gguf"
fi
echo "fresh-root: all passed in $((SECONDS - t0)) s"
