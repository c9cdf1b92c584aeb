//! Disk-level plumbing: sparse image files, placing a filesystem image at
//! a byte offset (the `dd conv=notrunc,sparse` of this crate), extracting a
//! slice for an oracle, and partition tables written by `sgdisk`/`sfdisk`.
//!
//! Must never: write past the end of the target image (every placement is
//! bounds-checked against the image size first).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{ensure, Context, Result};

use crate::tools;

/// Bytes per sector of every fixture disk.
pub const SECTOR: u64 = 512;
/// One mebibyte.
pub const MIB: u64 = 1 << 20;

/// Creates (or truncates) a sparse file of `size_bytes`.
pub fn create_sparse(path: &Path, size_bytes: u64) -> Result<()> {
    let f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.set_len(size_bytes)
        .with_context(|| format!("sizing {} to {size_bytes} bytes", path.display()))
}

/// Copies `src` into `dst` at `offset_bytes`, skipping all-zero chunks so
/// that `dst` stays sparse (it was created sparse, so holes read as zeros).
pub fn place(src: &Path, dst: &Path, offset_bytes: u64) -> Result<()> {
    place_range(src, 0, None, dst, offset_bytes)
}

/// Copies `len` bytes (or everything) of `src` from `src_offset` into `dst`
/// at `dst_offset`, sparse-aware like [`place`].
pub fn place_range(
    src: &Path,
    src_offset: u64,
    len: Option<u64>,
    dst: &Path,
    dst_offset: u64,
) -> Result<()> {
    let mut input = File::open(src).with_context(|| format!("opening {}", src.display()))?;
    let src_size = input.metadata()?.len();
    let len = len.unwrap_or(src_size.saturating_sub(src_offset));
    ensure!(
        src_offset.checked_add(len).is_some_and(|e| e <= src_size),
        "copying {len} bytes at {src_offset:#x} from {}: the file has only {src_size} bytes",
        src.display()
    );
    let mut output = OpenOptions::new()
        .write(true)
        .open(dst)
        .with_context(|| format!("opening {} for writing", dst.display()))?;
    let dst_size = output.metadata()?.len();
    ensure!(
        dst_offset.checked_add(len).is_some_and(|e| e <= dst_size),
        "placing {} ({len} bytes) at offset {dst_offset:#x} would run past the end of {} ({dst_size} bytes)",
        src.display(),
        dst.display()
    );
    input.seek(SeekFrom::Start(src_offset))?;
    let mut buf = vec![0u8; 1 << 16];
    let mut done = 0u64;
    while done < len {
        let want = (len - done).min(buf.len() as u64) as usize;
        input
            .read_exact(&mut buf[..want])
            .with_context(|| format!("reading {}", src.display()))?;
        if buf[..want].iter().any(|&b| b != 0) {
            output.seek(SeekFrom::Start(dst_offset + done))?;
            output
                .write_all(&buf[..want])
                .with_context(|| format!("writing {}", dst.display()))?;
        }
        done += want as u64;
    }
    output.sync_all()?;
    Ok(())
}

/// Writes `len` bytes of `image` starting at `offset` into a new sparse
/// file `out` (to hand one volume to `e2fsck`, `fsck.fat`, `blkid`).
pub fn extract(image: &Path, offset: u64, len: u64, out: &Path) -> Result<()> {
    create_sparse(out, len)?;
    place_range(image, offset, Some(len), out, 0)
}

/// A GPT partition for [`write_gpt`].
pub struct GptPart {
    /// Partition number (1-based; Debian's cloud layout uses 1, 14, 15).
    pub number: u32,
    /// First sector.
    pub first_sector: u64,
    /// Last sector, inclusive; `None` for "up to the last usable sector".
    pub last_sector: Option<u64>,
    /// sgdisk type code (`EF02`, `EF00`, `8304`, ...).
    pub type_code: &'static str,
    /// Unique partition GUID (PARTUUID).
    pub guid: &'static str,
    /// Partition name (PARTLABEL), empty for none.
    pub name: &'static str,
}

/// Writes a GPT with fixed disk and partition GUIDs using `sgdisk`.
pub fn write_gpt(image: &Path, disk_guid: &str, parts: &[GptPart]) -> Result<()> {
    let mut c = tools::cmd("sgdisk")?;
    c.arg("--clear").arg(format!("--disk-guid={disk_guid}"));
    for p in parts {
        let last = p.last_sector.map_or("0".to_string(), |l| l.to_string());
        c.arg(format!("--new={}:{}:{last}", p.number, p.first_sector));
        c.arg(format!("--typecode={}:{}", p.number, p.type_code));
        c.arg(format!("--partition-guid={}:{}", p.number, p.guid));
        if !p.name.is_empty() {
            c.arg(format!("--change-name={}:{}", p.number, p.name));
        }
    }
    c.arg(image);
    tools::run(&mut c)?;
    Ok(())
}

/// Writes a partition table from an `sfdisk` script (its `label-id:` line
/// fixes the MBR disk signature).
pub fn write_sfdisk(image: &Path, script: &str) -> Result<()> {
    let mut c = tools::cmd("sfdisk")?;
    c.arg("--no-reread")
        .arg("--no-tell-kernel")
        .arg("--quiet")
        .arg(image);
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().context("starting sfdisk")?;
    child
        .stdin
        .take()
        .context("sfdisk stdin")?
        .write_all(script.as_bytes())
        .context("writing the sfdisk script")?;
    let out = child.wait_with_output().context("waiting for sfdisk")?;
    ensure!(
        out.status.success(),
        "running sfdisk on {}: {}: {}",
        image.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}
