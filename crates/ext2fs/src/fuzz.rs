//! Fuzz entry point: a filesystem image in memory, opened and written
//! through the binding the way `put` and `fix` use it. libext2fs reads the
//! guest's structures; nothing may crash, panic or run away whatever the
//! bytes.

use std::cell::RefCell;
use std::sync::Arc;

use rescue_io::{BlockRead, BlockWrite, Error, ErrorKind};

use crate::{Fs, ROOT_INO};

/// A writable device over bytes in memory.
#[derive(Debug)]
struct Mem(RefCell<Vec<u8>>);

impl Mem {
    fn range(&self, start: u64, len: usize) -> rescue_io::Result<std::ops::Range<usize>> {
        let size = self.0.borrow().len();
        usize::try_from(start)
            .ok()
            .and_then(|s| Some(s..s.checked_add(len)?))
            .filter(|r| r.end <= size)
            .ok_or_else(|| Error::new(ErrorKind::Truncated, "fuzz device").with_offset(start))
    }
}

impl BlockRead for Mem {
    fn size_in_bytes(&self) -> u64 {
        self.0.borrow().len() as u64
    }

    fn read_exact_at(&self, start_byte: u64, dst: &mut [u8]) -> rescue_io::Result<()> {
        let r = self.range(start_byte, dst.len())?;
        dst.copy_from_slice(&self.0.borrow()[r]);
        Ok(())
    }

    fn describe(&self) -> String {
        "fuzz".into()
    }
}

impl BlockWrite for Mem {
    fn write_all_at(&self, start_byte: u64, src: &[u8]) -> rescue_io::Result<()> {
        let r = self.range(start_byte, src.len())?;
        self.0.borrow_mut()[r].copy_from_slice(src);
        Ok(())
    }

    fn flush(&self) -> rescue_io::Result<()> {
        Ok(())
    }
}

/// Opens `data` as an ext2/3/4 filesystem and, if that works, looks up and
/// replaces a file, creates one, and closes (which writes bitmaps and
/// superblocks back).
#[doc(hidden)]
pub fn fuzz_open_and_write(data: &[u8]) {
    // Devices are shared, never sent across threads (rescue_io's design).
    #[allow(clippy::arc_with_non_send_sync)]
    let dev: Arc<dyn BlockWrite> = Arc::new(Mem(RefCell::new(data.to_vec())));
    let Ok(mut fs) = Fs::open(dev, "fuzz") else {
        return;
    };
    if let Ok(Some(ino)) = fs.lookup(b"/etc/fstab") {
        let _ = fs.stat(ino);
        let _ = fs.write_file(ino, b"UUID=x / ext4 defaults 0 1\n");
    }
    let _ = fs.read_dir(ROOT_INO);
    if let Ok(ino) = fs.create_file(ROOT_INO, b"rescue-fuzz", &[1u8; 6000], 0o644, 0, 0) {
        let _ = fs.set_xattr(ino, "security.selinux", b"system_u:object_r:etc_t:s0\0");
        let _ = fs.unlink(ROOT_INO, b"rescue-fuzz");
    }
    let _ = fs.close();
}
