#!/usr/bin/env bash
# Builds the Debian package of mailsift in one command:
#
#   tools/build-deb.sh [--out DIR] [--dbgsym] [--version VERSION] [--no-build]
#
# It builds the release binary (cargo reuses it when it is fresh; the release profile strips it), generates
# the manual pages and shell completions with that binary (`mailsift generate`, from the same definition as
# --help), and assembles mailsift_<version>_<arch>.deb with dpkg-deb (the equivalent of cargo-deb, which
# is not needed). --dbgsym also builds the `profiling` profile (same code, symbols kept), ships its
# stripped copy, and puts the debug information in mailsift-dbgsym_<version>_<arch>.deb
# (/usr/lib/debug/usr/bin/mailsift.debug, found by gdb through the binary's debug link).
# --no-build packages target/release/mailsift as it is (e.g. while another cargo command holds the build).
# Prints the path of each package built on the last lines of standard output.
set -euo pipefail
cd "$(dirname "$0")/.."
root_dir=$(pwd)

out=target/debian
dbgsym=false
build=true
version=
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --out=*) out=${1#--out=}; shift ;;
    --dbgsym) dbgsym=true; shift ;;
    --no-build) build=false; shift ;;
    --version) version=${2:?--version needs a value}; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-deb: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
for tool in cargo dpkg-deb dpkg gzip objdump; do
  command -v "$tool" >/dev/null || { echo "build-deb: $tool is not installed" >&2; exit 1; }
done

if [ -z "$version" ]; then
  version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
fi
[ -n "$version" ] || { echo "build-deb: no version in Cargo.toml's [workspace.package]" >&2; exit 1; }
arch=$(dpkg --print-architecture)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
target_dir=${CARGO_TARGET_DIR:-target}

echo "build-deb: building mailsift $version for $arch"
if $dbgsym; then
  $build && cargo build --profile profiling -p mailsift --bin mailsift
  unstripped=$target_dir/profiling/mailsift
else
  $build && cargo build --release -p mailsift --bin mailsift
fi
binary=$target_dir/release/mailsift

mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/mailsift-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
pkg=$work/mailsift
install -d -m 0755 "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/etc/mailsift" "$pkg/lib/systemd/system" \
  "$pkg/usr/share/man/man1" "$pkg/usr/share/doc/mailsift/examples" \
  "$pkg/usr/share/bash-completion/completions" "$pkg/usr/share/zsh/vendor-completions" \
  "$pkg/usr/share/fish/vendor_completions.d"

if $dbgsym; then
  dbg=$work/mailsift-dbgsym
  install -d -m 0755 "$dbg/DEBIAN" "$dbg/usr/lib/debug/usr/bin" "$dbg/usr/share/doc"
  objcopy --only-keep-debug --compress-debug-sections "$unstripped" "$dbg/usr/lib/debug/usr/bin/mailsift.debug"
  chmod 0644 "$dbg/usr/lib/debug/usr/bin/mailsift.debug"
  objcopy --strip-all --add-gnu-debuglink="$dbg/usr/lib/debug/usr/bin/mailsift.debug" "$unstripped" "$pkg/usr/bin/mailsift"
  chmod 0755 "$pkg/usr/bin/mailsift"
else
  install -m 0755 "$binary" "$pkg/usr/bin/mailsift"
  # The release profile strips; a binary built otherwise (e.g. CARGO_PROFILE_RELEASE_STRIP=none) is
  # stripped here, so the package never ships debug information.
  strip --strip-all "$pkg/usr/bin/mailsift"
fi
bin=$pkg/usr/bin/mailsift
"$bin" --version >/dev/null || { echo "build-deb: the binary does not run" >&2; exit 1; }

# Manual pages and completions from the binary's own command line definition.
"$bin" generate man "$work/man"
for page in "$work"/man/*.1; do
  gzip -9n -c "$page" > "$pkg/usr/share/man/man1/$(basename "$page").gz"
done
"$bin" generate completions bash > "$pkg/usr/share/bash-completion/completions/mailsift"
"$bin" generate completions zsh > "$pkg/usr/share/zsh/vendor-completions/_mailsift"
"$bin" generate completions fish > "$pkg/usr/share/fish/vendor_completions.d/mailsift.fish"

install -m 0644 packaging/mailsift.toml "$pkg/etc/mailsift/mailsift.toml"
install -m 0644 packaging/mailsift.service "$pkg/lib/systemd/system/mailsift.service"
install -m 0644 packaging/debian/copyright "$pkg/usr/share/doc/mailsift/copyright"
install -m 0644 packaging/debian/README.Debian "$pkg/usr/share/doc/mailsift/README.Debian"
install -m 0644 examples/production.toml "$pkg/usr/share/doc/mailsift/examples/production.toml"
sed -e "s/@VERSION@/$version/" -e "s/@COMMIT@/$commit/" -e "s/@DATE@/$(date -R)/" packaging/debian/changelog.in \
  | gzip -9n > "$pkg/usr/share/doc/mailsift/changelog.Debian.gz"
for script in postinst prerm postrm; do
  install -m 0755 "packaging/debian/$script" "$pkg/DEBIAN/$script"
done
echo /etc/mailsift/mailsift.toml > "$pkg/DEBIAN/conffiles"

# The C library version the binary needs: the newest GLIBC_ symbol version it references.
glibc=$(objdump -T "$bin" | sed -n 's/.*GLIBC_\([0-9][0-9.]*\).*/\1/p' | sort -V | tail -n 1)
depends="libc6 (>= ${glibc:-2.31}), libgcc-s1, adduser"
installed_size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
cat > "$pkg/DEBIAN/control" <<CONTROL
Package: mailsift
Version: $version
Architecture: $arch
Maintainer: mailsift maintainers <mailsift@localhost>
Installed-Size: $installed_size
Depends: $depends
Suggests: swaks
Section: mail
Priority: optional
Homepage: https://example.invalid/mailsift
Description: email security gateway with explained verdicts
 mailsift sits in front of an organisation's mail server as its MX: it
 receives mail over SMTP, judges every message (SPF, DKIM, DMARC, ARC,
 reputation, content and statistical classifiers), quarantines or relays
 it, and explains every verdict. One binary: the gateway (a systemd
 service running as the mailsift user), the web console and API, and the
 administration commands.
CONTROL
(cd "$pkg" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum) > "$pkg/DEBIAN/md5sums"
chmod 0644 "$pkg/DEBIAN/control" "$pkg/DEBIAN/conffiles" "$pkg/DEBIAN/md5sums"

deb=$out/mailsift_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >/dev/null
built=("$deb")
if $dbgsym; then
  ln -s mailsift "$dbg/usr/share/doc/mailsift-dbgsym"
  cat > "$dbg/DEBIAN/control" <<CONTROL
Package: mailsift-dbgsym
Version: $version
Architecture: $arch
Maintainer: mailsift maintainers <mailsift@localhost>
Installed-Size: $(du -sk --exclude=DEBIAN "$dbg" | cut -f1)
Depends: mailsift (= $version)
Section: debug
Priority: optional
Description: debug symbols for mailsift
CONTROL
  dbgdeb=$out/mailsift-dbgsym_${version}_${arch}.deb
  dpkg-deb --root-owner-group -Zxz --build "$dbg" "$dbgdeb" >/dev/null
  built+=("$dbgdeb")
fi

echo "build-deb: binary $(stat -c %s "$bin") bytes; package $(stat -c %s "$deb") bytes"
if command -v lintian >/dev/null; then
  lintian --no-tag-display-limit "$deb" || echo "build-deb: lintian has remarks (above)"
fi
printf '%s\n' "${built[@]}"
