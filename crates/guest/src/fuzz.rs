//! Fuzz entry points for the guest's on-disk readers.
//!
//! Each takes the bytes of a whole volume, held in memory, and runs the read
//! paths `inspect` uses over it: open, list, look up through symlinks, read
//! with a cap, and the raw inode walker. They must never panic, hang or
//! allocate without bound, whatever the bytes.

use std::sync::Arc;

use rescue_io::{BlockRead, Device, Error, ErrorKind, Result};

use crate::ext4::Ext4Fs;
use crate::ext4_raw;
use crate::fat::FatFs;
use crate::fs::GuestFs;
use crate::guest::Guest;
use crate::path::GuestPath;

/// A device over bytes in memory.
#[derive(Debug)]
pub struct MemDevice(pub Vec<u8>);

impl BlockRead for MemDevice {
    fn size_in_bytes(&self) -> u64 {
        self.0.len() as u64
    }

    fn read_exact_at(&self, start_byte: u64, dst: &mut [u8]) -> Result<()> {
        let src = usize::try_from(start_byte)
            .ok()
            .and_then(|s| Some((s, s.checked_add(dst.len())?)))
            .and_then(|(s, e)| self.0.get(s..e));
        match src {
            Some(src) => {
                dst.copy_from_slice(src);
                Ok(())
            }
            None => Err(Error::new(ErrorKind::Truncated, "reading").with_offset(start_byte)),
        }
    }

    fn describe(&self) -> String {
        "memory".to_owned()
    }
}

#[allow(clippy::arc_with_non_send_sync)] // `Device` is an `Arc` by the io crate's design
fn device(data: &[u8]) -> Device {
    Arc::new(MemDevice(data.to_vec()))
}

fn exercise(fs: std::rc::Rc<dyn GuestFs>) {
    let _ = fs.read_dir(&GuestPath::root(), 1000);
    let g = Guest::with_root(fs);
    for p in [
        "/etc/fstab",
        "/etc/os-release",
        "/boot/grub/grub.cfg",
        "/lib/modules",
        "/EFI/debian/grub.cfg",
    ] {
        let p = GuestPath::new(p);
        let _ = g.read_file(&p, 1 << 20);
        let _ = g.read_dir(&p, 1000);
        let _ = g.symlink_metadata(&p);
    }
}

/// Fuzz entry point: `data` is an ext2/3/4 volume.
#[doc(hidden)]
pub fn fuzz_ext4(data: &[u8]) {
    let dev = device(data);
    let _ = ext4_raw::impossible_size(&dev, &GuestPath::new("/etc/fstab"));
    if let Ok(fs) = Ext4Fs::open("fuzz", "ext4", dev) {
        exercise(std::rc::Rc::new(fs));
    }
}

/// Fuzz entry point: `data` is a FAT volume.
#[doc(hidden)]
pub fn fuzz_fat(data: &[u8]) {
    if let Ok(fs) = FatFs::open("fuzz", device(data)) {
        exercise(std::rc::Rc::new(fs));
    }
}

/// Fuzz entry point: `data` is a FAT volume opened by the write engine
/// (`fat_write`), which checks the whole volume first; when it accepts the
/// volume, a few writes follow. Never a panic, whatever the bytes.
#[doc(hidden)]
pub fn fuzz_fat_write(data: &[u8]) {
    let dev: Arc<dyn rescue_io::BlockWrite> =
        Arc::new(rescue_ext4::MemDevice::new(data.to_vec(), "fuzz"));
    let Ok(w) = crate::fat_write::FatWriter::open(dev, "fuzz") else {
        return;
    };
    let _ = w.write_file(b"/EFI/BOOT/GRUB.CFG", b"configfile x\n");
    let _ = w.create_dir(b"/RESCUE");
    let _ = w.write_file(b"/RESCUE/a long file name.txt", &[7u8; 5000]);
    let _ = w.rename(b"/RESCUE/a long file name.txt", b"/RESCUE/B.TXT");
    let _ = w.remove(b"/RESCUE/B.TXT");
    let _ = w.close();
}
