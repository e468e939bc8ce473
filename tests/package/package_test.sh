#!/usr/bin/env bash
# CTest package_deb (label package): the Debian package, built and installed for real.
#
#  1. scripts/package --prebuilt <build tree>: dpkg-buildpackage + debhelper over the programs
#     this build tree already has (no second compile; debian/rules says what differs).
#  2. The .deb's file list (tests/package/expected-files), conffiles and Depends; lintian with
#     errors and warnings fatal (overrides in debian/voiceedge.lintian-overrides say why).
#  3. A throwaway Debian root: an overlay over a base root that mmdebstrap --variant=apt made
#     from the mirror of /etc/apt/sources.list.d/debian.sources with the package's Depends
#     (apt-get satisfy), cached in $VE_PACKAGE_CACHE (default /var/cache/voiceedge-package-test)
#     and remade when Depends or the mirror change. In it `apt-get install /tmp/voiceedge_*.deb`
#     (deps already there, so no download); the installed voiceedged runs
#     --check-config on the installed site file and prints the version; the installed unit
#     scores <= 2.6 in systemd-analyze security --offline; `apt-get remove` leaves exactly the
#     conffile and the state directory, `apt-get purge` leaves nothing.
# The overlay lives in a private mount namespace and a temporary directory removed on exit.
#
# usage: package_test.sh SOURCE_DIR BUILD_DIR        (root: mmdebstrap root mode, mounts, chroot)
#        package_test.sh --overlay BASE RUN_DIR DEB  (itself, under unshare --mount)
set -euo pipefail

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# Every path in the root except what apt, dpkg and logs churn on their own.
snapshot() {
  (cd "$1" && find . -xdev \( -path ./proc -o -path ./sys -o -path ./dev -o -path ./run -o -path ./tmp \
    -o -path ./var/cache -o -path ./var/lib/apt -o -path ./var/lib/dpkg -o -path ./var/log \) -prune -o -print |
    sort)
}

inside() {
  local root=$1 deb=$2 name
  name=$(basename "$deb")
  cp "$deb" "$root/tmp/$name"
  export DEBIAN_FRONTEND=noninteractive
  # The root has the dependencies already, so the difference to this snapshot is only what
  # voiceedge itself brings and leaves.
  snapshot "$root" >"$root/tmp/before"

  echo "== apt-get install /tmp/$name"
  chroot "$root" apt-get install -y -q --no-install-recommends "/tmp/$name" | grep -E '^(Setting up|Unpacking) voiceedge'
  chroot "$root" dpkg-query -W -f='${Status}\n' voiceedge | grep -qx 'install ok installed' || fail "not installed"

  echo "== installed voiceedged on the installed site file"
  chroot "$root" /usr/sbin/voiceedged --config /etc/voiceedge/site.yaml --check-config ||
    fail "installed voiceedged rejects the installed /etc/voiceedge/site.yaml"
  local want got
  want=$(dpkg-deb -f "$deb" Version)
  got=$(chroot "$root" /usr/sbin/voiceedged --version)
  [[ "$got" == "voiceedged $want" ]] || fail "voiceedged --version says '$got', the package is $want"
  got=$(chroot "$root" /usr/bin/voiceedgectl --version)
  [[ "$got" == "voiceedgectl $want" ]] || fail "voiceedgectl --version says '$got', the package is $want"
  chroot "$root" /usr/bin/voiceedge-phonesim --version | grep -qx "voiceedge-phonesim $want" ||
    fail "voiceedge-phonesim --version"
  # Kea loads the hook from its own hooks directory: the one the package put it in.
  local hooks
  hooks=$(chroot "$root" sh -c 'ls /usr/lib/*/kea/hooks/libdhcp_voiceedge.so')
  chroot "$root" kea-dhcp4 -V >/dev/null || fail "kea-dhcp4 from the dependency does not run"
  chroot "$root" getent passwd voiceedge >/dev/null || fail "systemd-sysusers did not create user voiceedge"
  # stat inside the root: its user names, not the host's, go with the uids.
  got=$(chroot "$root" stat -c '%U:%G %a' /var/lib/voiceedge)
  [[ "$got" == "voiceedge:voiceedge 750" ]] || fail "/var/lib/voiceedge is $got, want voiceedge:voiceedge 750 (tmpfiles)"
  got=$(chroot "$root" stat -c '%U:%G %a' /etc/voiceedge)
  [[ "$got" == "root:voiceedge 750" ]] || fail "/etc/voiceedge is $got, want root:voiceedge 750 (tmpfiles)"
  echo "hook: $hooks; user voiceedge; /var/lib/voiceedge and /etc/voiceedge as the tmpfiles snippet says"
  # Installed, not enabled: the box does nothing until its site file is written.
  [[ ! -e "$root/etc/systemd/system/multi-user.target.wants/voiceedge.service" ]] ||
    fail "voiceedge.service was enabled on installation"

  echo "== systemd-analyze security --offline=yes on the installed unit"
  local unit=$root/lib/systemd/system/voiceedge.service
  [[ -f "$unit" ]] || fail "no $unit"
  grep -qx 'LimitNOFILE=65536' "$unit" || fail "installed unit lacks LimitNOFILE=65536"
  local score
  score=$(systemd-analyze security --offline=yes --no-pager "$unit" 2>&1 | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
  echo "exposure: $score"
  [[ -n "$score" ]] || fail "systemd-analyze printed no exposure level"
  awk -v s="$score" 'BEGIN { exit !(s <= 2.6) }' || fail "exposure $score > 2.6"

  echo "== apt-get remove: the conffile and the state directory stay"
  chroot "$root" apt-get remove -y -q voiceedge >/dev/null
  snapshot "$root" >"$root/tmp/removed"
  local left
  left=$(comm -13 "$root/tmp/before" "$root/tmp/removed" | tr '\n' ' ')
  # deb-systemd-helper's record of the unit (*.dsh-also) is debhelper's, kept until purge.
  [[ "$left" == "./etc/voiceedge ./etc/voiceedge/site.yaml ./var/lib/systemd/deb-systemd-helper-enabled/voiceedge.service.dsh-also ./var/lib/voiceedge ./var/lib/voiceedge/tftp " ]] ||
    fail "after remove, left behind: '$left' (want the conffile, /var/lib/voiceedge and debhelper's unit record only)"
  local gone
  gone=$(comm -23 "$root/tmp/before" "$root/tmp/removed" | tr '\n' ' ')
  [[ -z "$gone" ]] || fail "remove took away files that were there before: $gone"
  echo "left: $left"

  echo "== apt-get purge: nothing stays"
  chroot "$root" apt-get purge -y -q voiceedge >/dev/null
  snapshot "$root" >"$root/tmp/purged"
  left=$(comm -13 "$root/tmp/before" "$root/tmp/purged" | tr '\n' ' ')
  [[ -z "$left" ]] || fail "after purge, left behind: $left"
  chroot "$root" dpkg-query -W -f='${Status}\n' voiceedge 2>/dev/null | grep -q 'install ok' &&
    fail "still installed after purge"
  echo "purge: nothing left"
}

# In a private mount namespace (unshare): the overlay root, /proc and /dev, then the checks.
overlay() {
  local base=$1 run=$2 deb=$3 root=$2/root
  mount -t overlay overlay -o "lowerdir=$base,upperdir=$run/upper,workdir=$run/work" "$root"
  mount -t proc proc "$root/proc"
  mount --rbind /dev "$root/dev"
  inside "$root" "$deb"
}

if [[ "${1:-}" == "--overlay" ]]; then
  overlay "$2" "$3" "$4"
  exit 0
fi

src=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
[[ $(id -u) -eq 0 ]] || { echo "package_deb: needs root (mmdebstrap root mode, chroot)"; exit 1; }
for tool in dpkg-buildpackage dh lintian mmdebstrap systemd-analyze; do
  command -v "$tool" >/dev/null || fail "$tool missing: run ./scripts/deps"
done
out=$build/package-test
rm -rf "$out"
mkdir -p "$out"
SECONDS=0

echo "== scripts/package --prebuilt $build"
deb=$("$src/scripts/package" --prebuilt "$build" --out "$out" --no-lintian | tail -1)
echo "built $deb in ${SECONDS}s"
version=$(dpkg-deb -f "$deb" Version)
arch=$(dpkg-deb -f "$deb" Architecture)
multiarch=$(dpkg-architecture -a"$arch" -qDEB_HOST_MULTIARCH)
[[ "$(basename "$deb")" == "voiceedge_${version}_${arch}.deb" ]] || fail "file name $(basename "$deb")"

echo "== file list"
dpkg-deb --fsys-tarfile "$deb" | tar -t | grep -v '/$' | sed 's|^\./|/|' | sort >"$out/files"
sed "s/@MULTIARCH@/$multiarch/" "$src/tests/package/expected-files" | grep -v '^#' | sort >"$out/expected"
diff -u "$out/expected" "$out/files" || fail "the package's files differ from tests/package/expected-files (- expected, + found)"
# Programs and the hook are executable / a shared object, owned by root.
dpkg-deb -c "$deb" | awk '$6 ~ /(sbin|bin)\/voiceedge/ && $1 !~ /^-rwxr-xr-x/ { bad = bad " " $6 } END { if (bad) { print "not 0755:" bad; exit 1 } }' ||
  fail "program modes"
dpkg-deb -c "$deb" | awk '$2 != "root/root" { print; bad = 1 } END { exit bad }' || fail "files not owned by root"

echo "== conffiles and control"
conffiles=$(dpkg-deb --ctrl-tarfile "$deb" | tar -xOf - ./conffiles)
[[ "$conffiles" == "/etc/voiceedge/site.yaml" ]] || fail "conffiles: '$conffiles'"
depends=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $depends"
grep -qE '(^|, )kea-dhcp4-server(,|$| )' <<<"$depends" || fail "Depends lacks kea-dhcp4-server"
grep -qE 'libc6' <<<"$depends" || fail "Depends has no shared-library dependencies (\${shlibs:Depends})"
for script in postinst prerm postrm; do
  dpkg-deb --ctrl-tarfile "$deb" | tar -tf - "./$script" >/dev/null 2>&1 || fail "no $script"
done
dpkg-deb --ctrl-tarfile "$deb" | tar -xOf - ./postinst | grep -q systemd-sysusers || fail "postinst runs no systemd-sysusers"
dpkg-deb --ctrl-tarfile "$deb" | tar -xOf - ./postinst | grep -q systemd-tmpfiles || fail "postinst runs no systemd-tmpfiles"

echo "== lintian"
t0=$SECONDS
lintian --fail-on error,warning --info --display-info "$deb" || fail "lintian"
echo "lintian clean in $((SECONDS - t0))s"

echo "== throwaway root"
# A Debian root with the package's dependencies, made once per Depends line and mirror and kept
# in the cache; each run works on an overlay of it (in its own mount namespace, so nothing stays
# mounted whatever happens) that is thrown away afterwards.
cache=${VE_PACKAGE_CACHE:-/var/cache/voiceedge-package-test}
sources=/etc/apt/sources.list.d/debian.sources
[[ -f $sources ]] || fail "no $sources: the mirror the throwaway root is made from"
key=$( (printf '%s\n' "$depends"; cat "$sources") | sha256sum | cut -c1-16)
base=$cache/bookworm-$key
t0=$SECONDS
if [[ ! -d $base ]]; then
  echo "making the base root $base (once per Depends and mirror: minutes)"
  mkdir -p "$cache/archives"
  rm -rf "$base.tmp"
  mmdebstrap --quiet --mode=root --variant=apt --skip=essential/unlink,cleanup/apt/lists \
    --dpkgopt=force-unsafe-io --aptopt='Acquire::Languages "none"' \
    --setup-hook="mkdir -p \"\$1\"/var/cache/apt/archives/" \
    --setup-hook="sync-in '$cache/archives' /var/cache/apt/archives/" \
    --customize-hook="chroot \"\$1\" apt-get satisfy -y -q --no-install-recommends '$depends' >/dev/null" \
    --customize-hook="sync-out /var/cache/apt/archives '$cache/archives'" \
    bookworm "$base.tmp" "$sources"
  mv "$base.tmp" "$base"
  find "$cache" -maxdepth 1 -name 'bookworm-*' ! -name "bookworm-$key" -exec rm -rf {} +
  echo "base root made in $((SECONDS - t0))s"
fi
run=$(mktemp -d "${TMPDIR:-/tmp}/ve-package-root.XXXXXX")
trap 'rm -rf "$run"' EXIT
mkdir "$run/upper" "$run/work" "$run/root"
unshare --mount --propagation private "$src/tests/package/package_test.sh" --overlay "$base" "$run" "$deb"
echo "throwaway root: $((SECONDS - t0))s"
echo "package_deb: OK in ${SECONDS}s"
