#!/usr/bin/env bash
# Build a real i386 Linux guest for vmexit: Debian's linux-source-6.1 configured with
# tools/linux/vmexit.config over tinyconfig, and an initramfs of Debian's static i386 busybox with our
# tools/linux/init. Nothing third-party enters the repository: sources, objects and results live in
# ${VMEXIT_LINUX_DIR:-$HOME/.cache/vmexit/linux}:
#   bzImage  System.map  vmlinux  initramfs.cpio  config  build-info  READY
#   work/    (the kernel source, the object tree, busybox, the initramfs staging)
# Idempotent: steps already done are skipped; `make` rebuilds only what changed.
#
# Usage: tools/linux/build.sh [--jobs N] [--out DIR]
# Needs (Debian 12): linux-source-6.1 bc bison flex libelf-dev make gcc cpio xz-utils, installed
# through apt when running as root; without root it lists what is missing and stops.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${VMEXIT_LINUX_DIR:-$HOME/.cache/vmexit/linux}
JOBS=$(nproc 2>/dev/null || echo 1)
KSERIES=6.1
FRAGMENT=$HERE/vmexit.config
INIT=$HERE/init

while [ $# -gt 0 ]; do
    case "$1" in
        --jobs|-j) JOBS=$2; shift 2 ;;
        --jobs=*) JOBS=${1#*=}; shift ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build.sh: unknown option $1 (--jobs N, --out DIR)" >&2; exit 2 ;;
    esac
done

WORK=$OUT/work
SRC=$WORK/linux-source-$KSERIES
OBJ=$WORK/build
BB=$WORK/busybox
# Fixed build stamps (Documentation/kbuild/reproducible-builds.rst): the same source, fragment and gcc
# give the same bzImage and System.map on any machine, so traces of two builds name the same addresses.
export KBUILD_BUILD_TIMESTAMP='Thu Jan  1 00:00:00 UTC 1970' KBUILD_BUILD_USER=vmexit KBUILD_BUILD_HOST=vmexit
export KBUILD_BUILD_VERSION=1
KMAKE=(make -C "$SRC" O="$OBJ" ARCH=i386 -j"$JOBS")

step() { echo "==> $*"; }
die() { echo "build.sh: $*" >&2; exit 1; }

HOST_PACKAGES=(linux-source-$KSERIES bc bison flex libelf-dev make gcc cpio xz-utils)

install_host_packages() {
    local missing=() p
    for p in "${HOST_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        step "host packages present: ${HOST_PACKAGES[*]}"
        return
    fi
    if [ "$(id -u)" -ne 0 ]; then
        die "missing Debian packages: ${missing[*]}; install them as root (apt-get install -y ${missing[*]}) or run this script as root"
    fi
    step "installing ${missing[*]}"
    apt-get update || echo "build.sh: apt-get update reported errors; trying with the indexes we have" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

unpack_source() {
    local tarball=/usr/src/linux-source-$KSERIES.tar.xz
    [ -f "$tarball" ] || die "$tarball missing (apt-get install linux-source-$KSERIES)"
    if [ -f "$SRC/.vmexit-unpacked" ]; then
        step "kernel source already unpacked in $SRC"
        return
    fi
    step "unpacking $tarball into $WORK"
    rm -rf "$SRC"
    mkdir -p "$WORK"
    tar -C "$WORK" -xf "$tarball"
    touch "$SRC/.vmexit-unpacked"
}

# Each required line of the fragment: `CONFIG_X=v` or `# CONFIG_X is not set`.
required_lines() {
    grep -E '^(CONFIG_[A-Za-z0-9_]+=.*|# CONFIG_[A-Za-z0-9_]+ is not set)$' "$FRAGMENT"
}

check_config() {
    local line name bad=0
    while IFS= read -r line; do
        if [[ $line == "# "* ]]; then
            name=${line#\# }; name=${name%% *}
            # Unset options may be absent altogether when their dependencies are off.
            if grep -q "^$name=" "$OBJ/.config"; then
                echo "build.sh: $name should be unset, .config has: $(grep "^$name=" "$OBJ/.config")" >&2
                bad=1
            fi
        elif ! grep -qxF "$line" "$OBJ/.config"; then
            name=${line%%=*}
            echo "build.sh: wanted $line, .config has: $(grep -E "^(# )?$name[= ]" "$OBJ/.config" || echo nothing)" >&2
            bad=1
        fi
    done < <(required_lines)
    [ $bad -eq 0 ] || die "the config fragment did not stick (see above); fix tools/linux/vmexit.config"
}

configure_kernel() {
    local sum
    sum=$(sha256sum "$FRAGMENT" | cut -d' ' -f1)
    if [ -f "$OBJ/.config" ] && [ "$(cat "$OBJ/.vmexit-fragment" 2>/dev/null)" = "$sum" ]; then
        step "kernel already configured with this fragment ($sum)"
        check_config
        return
    fi
    step "configuring: tinyconfig + $FRAGMENT"
    mkdir -p "$OBJ"
    "${KMAKE[@]}" tinyconfig >/dev/null
    (cd "$OBJ" && ARCH=i386 "$SRC/scripts/kconfig/merge_config.sh" -m -O "$OBJ" .config "$FRAGMENT") >/dev/null
    "${KMAKE[@]}" olddefconfig >/dev/null
    check_config
    echo "$sum" > "$OBJ/.vmexit-fragment"
    step "every option of the fragment is in $OBJ/.config"
}

build_kernel() {
    step "building bzImage with $JOBS jobs (a few minutes on 2 cores)"
    "${KMAKE[@]}" bzImage
}

fetch_busybox() {
    if [ -x "$BB/bin/busybox" ]; then
        step "busybox already extracted in $BB"
        return
    fi
    step "downloading Debian's busybox-static:i386 (not installed: only unpacked into $BB)"
    if ! dpkg --print-foreign-architectures | grep -qx i386 && [ "$(dpkg --print-architecture)" != i386 ]; then
        [ "$(id -u)" -eq 0 ] || die "apt needs the i386 package indexes: as root, dpkg --add-architecture i386 && apt-get update"
        dpkg --add-architecture i386
        apt-get update || echo "build.sh: apt-get update reported errors; trying with the indexes we have" >&2
    fi
    local dl=$WORK/deb
    rm -rf "$dl" "$BB"
    mkdir -p "$dl"
    # As root apt fetches into a folder its _apt user cannot write and says it downloads unsandboxed: harmless.
    (cd "$dl" && apt-get download busybox-static:i386) || die "apt-get download busybox-static:i386 failed"
    dpkg-deb -x "$dl"/busybox-static_*_i386.deb "$BB"
    cp "$dl"/busybox-static_*_i386.deb "$WORK/"
    file "$BB/bin/busybox" 2>/dev/null | grep -q 'Intel 80386' || [ ! -x "$(command -v file)" ] \
        || die "$BB/bin/busybox is not an i386 binary"
}

# The initramfs is written with the kernel's own usr/gen_init_cpio from a list, so /dev/console can be
# a device node without root, and every file gets the same mtime: the same inputs give the same bytes.
build_initramfs() {
    step "packing initramfs.cpio (busybox + tools/linux/init)"
    local gen=$WORK/gen_init_cpio list=$WORK/initramfs.list stage=$WORK/initramfs
    [ -x "$gen" ] || cc -O2 -o "$gen" "$SRC/usr/gen_init_cpio.c"
    # gen_init_cpio stamps regular files with their own mtime: stage them with mtime 0.
    rm -rf "$stage"
    mkdir -p "$stage"
    cp "$BB/bin/busybox" "$INIT" "$stage/"
    touch -d @0 "$stage/busybox" "$stage/init"
    cat > "$list" <<EOF
dir /dev 0755 0 0
nod /dev/console 0600 0 0 c 5 1
dir /bin 0755 0 0
dir /proc 0755 0 0
dir /sys 0755 0 0
dir /tmp 1777 0 0
dir /root 0700 0 0
file /bin/busybox $stage/busybox 0755 0 0
slink /bin/sh busybox 0777 0 0
file /init $stage/init 0755 0 0
EOF
    "$gen" -t 0 "$list" > "$OUT/initramfs.cpio.tmp"
    mv "$OUT/initramfs.cpio.tmp" "$OUT/initramfs.cpio"
}

install_outputs() {
    step "copying results into $OUT"
    local f
    for f in arch/x86/boot/bzImage System.map vmlinux; do
        cp "$OBJ/$f" "$OUT/$(basename "$f").tmp"
        mv "$OUT/$(basename "$f").tmp" "$OUT/$(basename "$f")"
    done
    cp "$OBJ/.config" "$OUT/config"
    {
        echo "kernel_version=$(make -s -C "$SRC" kernelversion)"
        echo "linux_source_package=$(dpkg-query -W -f='${Package} ${Version}' "linux-source-$KSERIES")"
        echo "busybox_package=$(dpkg-deb --showformat='${Package}:${Architecture} ${Version}' -W "$WORK"/busybox-static_*_i386.deb)"
        echo "busybox_version=$("$BB/bin/busybox" 2>&1 | head -1 || true)"
        echo "fragment_sha256=$(sha256sum "$FRAGMENT" | cut -d' ' -f1)"
        echo "init_sha256=$(sha256sum "$INIT" | cut -d' ' -f1)"
        echo "gcc=$(gcc --version | head -1)"
        echo "bzImage_bytes=$(stat -c %s "$OUT/bzImage")"
        echo "bzImage_sha256=$(sha256sum "$OUT/bzImage" | cut -d' ' -f1)"
        echo "initramfs_bytes=$(stat -c %s "$OUT/initramfs.cpio")"
        echo "initramfs_sha256=$(sha256sum "$OUT/initramfs.cpio" | cut -d' ' -f1)"
    } > "$OUT/build-info"
    date -u +%Y-%m-%dT%H:%M:%SZ > "$OUT/READY"
}

main() {
    mkdir -p "$OUT"
    rm -f "$OUT/READY"
    install_host_packages
    unpack_source
    configure_kernel
    build_kernel
    fetch_busybox
    build_initramfs
    install_outputs
    step "done: $OUT/bzImage ($(stat -c %s "$OUT/bzImage") bytes), $OUT/initramfs.cpio"
    echo "    try: qemu-system-i386 -kernel $OUT/bzImage -initrd $OUT/initramfs.cpio -nographic -no-reboot \\"
    echo "         -append 'console=ttyS0 vmexit.workload=shell'"
}

main "$@"; exit  # on one line: bash reads a script as it runs, so an edit during a build cannot derail its end
