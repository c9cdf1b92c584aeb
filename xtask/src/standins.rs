//! Deterministic stand-ins for the binary files of the fixture trees.
//!
//! A real kernel, initramfs, EFI binary or ELF executable is far too large to
//! commit, yet the trees need files that *look* right to a reader: a kernel
//! image with a bzImage header and a version string, an initramfs that is a
//! valid `newc` cpio archive, modules that are ELF relocatable objects (and
//! `.ko.xz` files that are valid xz streams on RHEL). Each stand-in here is
//! a pure function of its description, so `cargo xtask standins` rewrites the
//! committed files byte for byte and a test proves they are up to date.
//!
//! Must never: depend on the clock, the host or randomness.

use sha2::{Digest, Sha512};

/// Modification time written into the cpio headers of initramfs stand-ins
/// (the same epoch the image builder stamps on every file).
pub const CPIO_MTIME: u32 = crate::FIXTURE_EPOCH as u32;

/// One generated file: which tree it belongs to and where.
pub struct StandIn {
    /// Tree name under `fixtures/trees/` (`debian12`, `rhel9`).
    pub tree: &'static str,
    /// Path relative to the tree root (physical path, no symlink in it).
    pub path: String,
    /// The exact content.
    pub bytes: Vec<u8>,
}

/// A Debian kernel build as the stand-ins describe it.
struct Kernel {
    version: &'static str,
    banner: &'static str,
}

const DEBIAN_KERNELS: [Kernel; 2] = [
    Kernel {
        version: "6.1.0-28-amd64",
        banner: "6.1.0-28-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1 (2024-11-22)",
    },
    Kernel {
        version: "6.1.0-27-amd64",
        banner: "6.1.0-27-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC Debian 6.1.115-1 (2024-11-01)",
    },
];

const RHEL_KERNELS: [Kernel; 2] = [
    Kernel {
        version: "5.14.0-427.13.1.el9_4.x86_64",
        banner: "5.14.0-427.13.1.el9_4.x86_64 (mockbuild@x86-64-01.build.eng.rdu2.redhat.com) (gcc (GCC) 11.4.1 20231218 (Red Hat 11.4.1-3), GNU ld version 2.35.2-43.el9) #1 SMP PREEMPT_DYNAMIC Wed Apr 10 10:29:16 EDT 2024",
    },
    Kernel {
        version: "5.14.0-362.24.1.el9_3.x86_64",
        banner: "5.14.0-362.24.1.el9_3.x86_64 (mockbuild@x86-64-02.build.eng.rdu2.redhat.com) (gcc (GCC) 11.4.1 20230605 (Red Hat 11.4.1-2), GNU ld version 2.35.2-42.el9) #1 SMP PREEMPT_DYNAMIC Thu Feb 15 07:05:51 EST 2024",
    },
];

/// The machine id of the RHEL tree; BLS entry and rescue kernel names use it.
pub const RHEL_MACHINE_ID: &str = "3f9a1c5e7b2d4f6a8c0e1b3d5f7a9c2e";

/// Modules shipped as stand-ins under each kernel's `kernel/` directory.
const MODULES: [&str; 4] = [
    "drivers/block/virtio_blk",
    "drivers/net/virtio_net",
    "drivers/scsi/virtio_scsi",
    "fs/ext4/ext4",
];

/// Every stand-in of every tree.
pub fn all() -> Vec<StandIn> {
    let mut out = Vec::new();
    debian(&mut out);
    rhel(&mut out);
    out
}

fn push(out: &mut Vec<StandIn>, tree: &'static str, path: impl Into<String>, bytes: Vec<u8>) {
    out.push(StandIn {
        tree,
        path: path.into(),
        bytes,
    });
}

fn debian(out: &mut Vec<StandIn>) {
    const T: &str = "debian12";
    for k in &DEBIAN_KERNELS {
        let v = k.version;
        push(out, T, format!("boot/vmlinuz-{v}"), vmlinuz(k.banner));
        push(
            out,
            T,
            format!("boot/initrd.img-{v}"),
            initramfs(v, "initramfs-tools"),
        );
        for m in MODULES {
            let name = m.rsplit('/').next().unwrap_or(m);
            push(
                out,
                T,
                format!("usr/lib/modules/{v}/kernel/{m}.ko"),
                kernel_module(name, v),
            );
        }
    }
    let elf = [
        ("usr/bin/ls", "ls", "coreutils 9.1-1"),
        ("usr/bin/cat", "cat", "coreutils 9.1-1"),
        ("usr/bin/bash", "bash", "bash 5.2.15-2+b7"),
        ("usr/bin/dash", "dash", "dash 0.5.12-2"),
        ("usr/bin/login", "login", "login 1:4.13+dfsg1-1+b1"),
        ("usr/sbin/nologin", "nologin", "login 1:4.13+dfsg1-1+b1"),
        ("usr/sbin/sshd", "sshd", "openssh-server 1:9.2p1-2+deb12u3"),
        (
            "usr/lib/openssh/sftp-server",
            "sftp-server",
            "openssh-sftp-server 1:9.2p1-2+deb12u3",
        ),
        ("usr/bin/ssh", "ssh", "openssh-client 1:9.2p1-2+deb12u3"),
        (
            "usr/lib/systemd/systemd",
            "systemd",
            "systemd 252.33-1~deb12u1",
        ),
        (
            "usr/lib/x86_64-linux-gnu/libc.so.6",
            "libc.so.6",
            "libc6 2.36-9+deb12u9",
        ),
        (
            "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            "ld-linux-x86-64.so.2",
            "libc6 2.36-9+deb12u9",
        ),
    ];
    for (path, name, pkg) in elf {
        push(out, T, path, elf_executable(name, pkg));
    }
    let efi = [
        ("boot/efi/EFI/debian/shimx64.efi", "shim 15.8-1"),
        ("boot/efi/EFI/debian/mmx64.efi", "MokManager 15.8-1"),
        ("boot/efi/EFI/debian/fbx64.efi", "fallback 15.8-1"),
        (
            "boot/efi/EFI/debian/grubx64.efi",
            "grub-efi-amd64-signed 2.06-13+deb12u1",
        ),
        (
            "boot/efi/EFI/BOOT/BOOTX64.EFI",
            "shim 15.8-1 (removable path)",
        ),
        ("boot/efi/EFI/BOOT/fbx64.efi", "fallback 15.8-1"),
        ("boot/efi/EFI/BOOT/mmx64.efi", "MokManager 15.8-1"),
    ];
    for (path, what) in efi {
        push(out, T, path, pe_image(what));
    }
}

fn rhel(out: &mut Vec<StandIn>) {
    const T: &str = "rhel9";
    for k in &RHEL_KERNELS {
        let v = k.version;
        let image = vmlinuz(k.banner);
        let hmac = format!("{}  vmlinuz-{v}\n", crate::hex(&Sha512::digest(&image)));
        push(out, T, format!("boot/.vmlinuz-{v}.hmac"), hmac.into_bytes());
        push(out, T, format!("boot/vmlinuz-{v}"), image.clone());
        // kernel-core ships the image under /lib/modules; kernel-install
        // copies it to /boot. Both copies are identical on a real system.
        push(out, T, format!("usr/lib/modules/{v}/vmlinuz"), image);
        push(
            out,
            T,
            format!("boot/initramfs-{v}.img"),
            initramfs(v, "dracut-057-53.git20240104.el9"),
        );
        for m in MODULES {
            let name = m.rsplit('/').next().unwrap_or(m);
            push(
                out,
                T,
                format!("usr/lib/modules/{v}/kernel/{m}.ko.xz"),
                xz_stored(&kernel_module(name, v)),
            );
        }
    }
    let rescue = format!("0-rescue-{RHEL_MACHINE_ID}");
    push(
        out,
        T,
        format!("boot/vmlinuz-{rescue}"),
        vmlinuz(RHEL_KERNELS[1].banner),
    );
    push(
        out,
        T,
        format!("boot/initramfs-{rescue}.img"),
        initramfs(
            &rescue,
            "dracut-057-53.git20240104.el9 (no-hostonly rescue image)",
        ),
    );
    let elf = [
        ("usr/bin/ls", "ls", "coreutils-8.32-35.el9"),
        ("usr/bin/bash", "bash", "bash-5.1.8-9.el9"),
        ("usr/sbin/sshd", "sshd", "openssh-server-8.7p1-38.el9"),
        (
            "usr/libexec/openssh/sftp-server",
            "sftp-server",
            "openssh-server-8.7p1-38.el9",
        ),
        ("usr/sbin/nologin", "nologin", "util-linux-2.37.4-18.el9"),
        ("usr/lib/systemd/systemd", "systemd", "systemd-252-32.el9_4"),
        ("usr/lib64/libc.so.6", "libc.so.6", "glibc-2.34-100.el9"),
        (
            "usr/lib64/ld-linux-x86-64.so.2",
            "ld-linux-x86-64.so.2",
            "glibc-2.34-100.el9",
        ),
    ];
    for (path, name, pkg) in elf {
        push(out, T, path, elf_executable(name, pkg));
    }
}

/// Deterministic filler text so stand-ins have a realistic size without
/// compressing to nothing (a qcow2 of the tree still has to hold them).
fn filler(seed: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in seed.bytes() {
        state = (state ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    while out.len() < len {
        // xorshift64: a fixed sequence for a fixed seed.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

/// An 8 KiB file with the x86 boot protocol header of a bzImage: `MZ` at 0,
/// `0x55aa` at 0x1fe, `HdrS` at 0x202, protocol 2.15 and a kernel version
/// string that `file(1)` and version sniffers find through the pointer at
/// 0x20e. Not bootable.
pub fn vmlinuz(banner: &str) -> Vec<u8> {
    const SIZE: usize = 8192;
    const VERSION_AT: usize = 0x400;
    let mut img = filler(banner, SIZE);
    put(&mut img, 0, b"MZ");
    let note = b"rescue-disk fixture stand-in kernel image; not bootable\0";
    put(&mut img, 0x40, note);
    // The setup header is zero except for the fields a sniffer reads.
    put(&mut img, 0x1f0, &[0; 0x90]);
    img[0x1f1] = 3; // setup_sects
    put(&mut img, 0x1fa, &0xffff_u16.to_le_bytes()); // vid_mode: normal
    img[0x211] = 0x01; // loadflags: LOADED_HIGH (a bzImage)
    put(&mut img, 0x1fe, &[0x55, 0xaa]);
    put(&mut img, 0x200, &[0xeb, 0x66]); // jmp over the header
    put(&mut img, 0x202, b"HdrS");
    put(&mut img, 0x206, &0x020f_u16.to_le_bytes());
    put(
        &mut img,
        0x20e,
        &((VERSION_AT - 0x200) as u16).to_le_bytes(),
    );
    let mut v = banner.as_bytes().to_vec();
    v.push(0);
    put(&mut img, VERSION_AT, &v);
    img
}

/// A `newc` cpio archive like the ones initramfs-tools and dracut write
/// (uncompressed here), holding `/init` and a few configuration files.
pub fn initramfs(version: &str, generator: &str) -> Vec<u8> {
    let init = format!(
        "#!/bin/sh\n# rescue-disk fixture stand-in for the initramfs of {version}\n\
         # generated by {generator}\necho 'fixture initramfs: nothing to do'\nexec /bin/sh\n"
    );
    let conf = format!("KERNEL_VERSION={version}\nGENERATOR=\"{generator}\"\n");
    let blob = filler(version, 2048);
    let entries: Vec<(&str, u32, Vec<u8>)> = vec![
        (".", 0o040755, Vec::new()),
        ("conf", 0o040755, Vec::new()),
        ("conf/initramfs.conf", 0o100644, conf.into_bytes()),
        ("init", 0o100755, init.into_bytes()),
        ("lib", 0o040755, Vec::new()),
        ("lib/firmware-blob.bin", 0o100644, blob),
    ];
    let mut out = Vec::new();
    for (ino, (name, mode, data)) in entries.iter().enumerate() {
        cpio_entry(&mut out, ino as u32 + 1, *mode, name, data);
    }
    cpio_entry(&mut out, 0, 0, "TRAILER!!!", &[]);
    // cpio archives are padded to 512-byte records.
    while !out.len().is_multiple_of(512) {
        out.push(0);
    }
    out
}

fn cpio_entry(out: &mut Vec<u8>, ino: u32, mode: u32, name: &str, data: &[u8]) {
    let nlink = if mode & 0o040000 != 0 { 2 } else { 1 };
    let fields = [
        ino,
        mode,
        0,
        0,
        nlink,
        CPIO_MTIME,
        data.len() as u32,
        0,
        0,
        0,
        0,
        name.len() as u32 + 1,
        0,
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
    out.extend_from_slice(data);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// A 64-byte ELF64 header (x86-64, little endian) of the given type
/// followed by a description and filler: enough for a magic sniffer.
fn elf(e_type: u16, text: &str, size: usize) -> Vec<u8> {
    let mut img = filler(text, size);
    let mut h = [0u8; 64];
    put(&mut h, 0, &[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    put(&mut h, 16, &e_type.to_le_bytes());
    put(&mut h, 18, &0x3e_u16.to_le_bytes()); // EM_X86_64
    put(&mut h, 20, &1_u32.to_le_bytes());
    put(&mut h, 52, &64_u16.to_le_bytes()); // e_ehsize
    put(&mut h, 54, &56_u16.to_le_bytes()); // e_phentsize
    put(&mut h, 58, &64_u16.to_le_bytes()); // e_shentsize
    put(&mut img, 0, &h);
    put(&mut img, 64, text.as_bytes());
    img
}

/// A stand-in for a dynamically linked executable or shared library.
pub fn elf_executable(name: &str, package: &str) -> Vec<u8> {
    let text = format!("rescue-disk fixture stand-in for {name} from {package}; not executable\n");
    elf(3, &text, 4096)
}

/// A stand-in for a kernel module, with the `.modinfo` strings depmod and
/// modinfo look for.
pub fn kernel_module(name: &str, version: &str) -> Vec<u8> {
    let text = format!(
        "rescue-disk fixture stand-in module\n\0name={name}\0vermagic={version} SMP preempt mod_unload modversions \0license=GPL\0"
    );
    elf(1, &text, 2048)
}

/// A PE/COFF stand-in for an EFI binary: `MZ`, `e_lfanew`, `PE\0\0`,
/// machine x86-64 and the EFI application subsystem.
pub fn pe_image(what: &str) -> Vec<u8> {
    let text = format!("rescue-disk fixture stand-in for {what}; not an EFI application\n");
    let mut img = filler(&text, 4096);
    put(&mut img, 0, b"MZ");
    put(&mut img, 0x3c, &0x80_u32.to_le_bytes());
    put(&mut img, 0x40, &[0; 0x40]);
    put(&mut img, 0x40, text.as_bytes().get(..0x3f).unwrap_or(b""));
    put(&mut img, 0x80, b"PE\0\0");
    put(&mut img, 0x84, &0x8664_u16.to_le_bytes());
    put(&mut img, 0x86, &0_u16.to_le_bytes()); // no sections
    put(&mut img, 0x94, &0xf0_u16.to_le_bytes()); // optional header size
    put(&mut img, 0x98, &0x020b_u16.to_le_bytes()); // PE32+
    put(&mut img, 0x98 + 68, &10_u16.to_le_bytes()); // EFI application
    put(&mut img, 0x200, text.as_bytes());
    img
}

/// Wraps `data` in a valid xz stream made of uncompressed LZMA2 chunks and
/// a CRC32 check, the same container `xz` writes (only without compression).
pub fn xz_stored(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    // Stream header: magic, flags (check = CRC32), CRC32 of the flags.
    let flags = [0u8, 1];
    out.extend_from_slice(&[0xfd, b'7', b'z', b'X', b'Z', 0]);
    out.extend_from_slice(&flags);
    out.extend_from_slice(&crc32(&flags).to_le_bytes());
    // Block header: size, flags (one filter, no sizes), LZMA2 filter with a
    // 1-byte property (dictionary size 4 KiB), padding, CRC32.
    let mut bh = vec![0u8, 0x00, 0x21, 0x01, 0x00, 0, 0, 0];
    bh[0] = ((bh.len() + 4) / 4 - 1) as u8;
    let crc = crc32(&bh);
    bh.extend_from_slice(&crc.to_le_bytes());
    let block_start = out.len();
    out.extend_from_slice(&bh);
    // LZMA2 uncompressed chunks of at most 64 KiB; the first resets the
    // dictionary (control 1), the others do not (control 2); 0 ends.
    for (i, chunk) in data.chunks(65536).enumerate() {
        out.push(if i == 0 { 1 } else { 2 });
        out.extend_from_slice(&((chunk.len() - 1) as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out.push(0);
    let unpadded = out.len() - block_start + 4;
    while !(out.len() - block_start).is_multiple_of(4) {
        out.push(0);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    // Index: one record (unpadded size, uncompressed size).
    let index_start = out.len();
    out.push(0);
    varint(&mut out, 1);
    varint(&mut out, unpadded as u64);
    varint(&mut out, data.len() as u64);
    while !(out.len() - index_start).is_multiple_of(4) {
        out.push(0);
    }
    let crc = crc32(&out[index_start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    let index_size = out.len() - index_start;
    // Stream footer: CRC32 of (backward size, flags), backward size, flags, "YZ".
    let mut footer = Vec::new();
    footer.extend_from_slice(&((index_size / 4 - 1) as u32).to_le_bytes());
    footer.extend_from_slice(&flags);
    out.extend_from_slice(&crc32(&footer).to_le_bytes());
    out.extend_from_slice(&footer);
    out.extend_from_slice(b"YZ");
    out
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// CRC-32 (IEEE 802.3, reflected), bitwise: only used on a few KiB.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_reference_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn vmlinuz_has_the_boot_header() {
        let img = vmlinuz(DEBIAN_KERNELS[0].banner);
        assert_eq!(&img[0x202..0x206], b"HdrS");
        let ptr = u16::from_le_bytes([img[0x20e], img[0x20f]]) as usize + 0x200;
        assert!(img[ptr..].starts_with(b"6.1.0-28-amd64 "));
    }
}
