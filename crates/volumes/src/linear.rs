//! A linear concatenation of byte ranges of other devices: how an LVM2
//! linear logical volume is laid out on its physical volumes.
//!
//! Construction checks every segment against its device, so reads can never
//! leave the ranges the metadata named. It never writes.

use rescue_io::{BlockRead, Device, Error, ErrorKind, Result};

/// One piece of a [`LinearDevice`]: `size_in_bytes` bytes of `device`
/// starting at `device_start_byte`.
#[derive(Debug, Clone)]
pub struct LinearSegment {
    /// The device holding this piece (for LVM: the physical volume).
    pub device: Device,
    /// Where the piece starts on that device.
    pub device_start_byte: u64,
    /// Length of the piece.
    pub size_in_bytes: u64,
}

/// Several device ranges presented end to end as one device.
#[derive(Debug, Clone)]
pub struct LinearDevice {
    name: String,
    /// Segments with their logical start offset, in order.
    segments: Vec<(u64, LinearSegment)>,
    size_in_bytes: u64,
}

impl LinearDevice {
    /// Builds the concatenation. Fails with [`ErrorKind::Corrupt`] if a
    /// segment does not lie inside its device or the total overflows.
    pub fn new(name: impl Into<String>, segments: Vec<LinearSegment>) -> Result<Self> {
        let name = name.into();
        let mut placed = Vec::with_capacity(segments.len());
        let mut logical: u64 = 0;
        for (i, seg) in segments.into_iter().enumerate() {
            let dev_size = seg.device.size_in_bytes();
            if !crate::bytes::fits(seg.device_start_byte, seg.size_in_bytes, dev_size) {
                return Err(Error::new(ErrorKind::Corrupt, "mapping")
                    .with_path(name)
                    .with_offset(seg.device_start_byte)
                    .with_detail(format!(
                        "segment {} ({} bytes) reaches beyond the end of {} ({dev_size:#x} bytes)",
                        i + 1,
                        seg.size_in_bytes,
                        seg.device.describe()
                    )));
            }
            if seg.size_in_bytes == 0 {
                continue;
            }
            let next = logical.checked_add(seg.size_in_bytes).ok_or_else(|| {
                Error::new(ErrorKind::Corrupt, "mapping")
                    .with_path(name.clone())
                    .with_detail("the segments add up to more than 2^64 bytes")
            })?;
            placed.push((logical, seg));
            logical = next;
        }
        Ok(LinearDevice {
            name,
            segments: placed,
            size_in_bytes: logical,
        })
    }

    /// Number of non-empty segments.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }
}

impl BlockRead for LinearDevice {
    fn size_in_bytes(&self) -> u64 {
        self.size_in_bytes
    }

    fn read_exact_at(&self, start_byte: u64, dst: &mut [u8]) -> Result<()> {
        let end = start_byte.checked_add(dst.len() as u64);
        if end.is_none_or(|end| end > self.size_in_bytes) {
            return Err(Error::new(ErrorKind::Truncated, "reading")
                .with_path(self.name.clone())
                .with_offset(start_byte)
                .with_detail(format!(
                    "read of {} bytes goes past the end of the volume",
                    dst.len()
                )));
        }
        let mut pos = start_byte;
        let mut done = 0usize;
        // The first segment whose logical range contains `pos`.
        let mut idx = self
            .segments
            .partition_point(|(s, seg)| s + seg.size_in_bytes <= pos);
        while done < dst.len() {
            let Some((seg_start, seg)) = self.segments.get(idx) else {
                // Unreachable given the bounds check above; fail rather than panic.
                return Err(Error::new(ErrorKind::Corrupt, "reading")
                    .with_path(self.name.clone())
                    .with_offset(pos)
                    .with_detail("no segment maps this offset"));
            };
            // OK: pos >= seg_start because segments are contiguous and sorted.
            let within = pos - seg_start;
            let avail = seg.size_in_bytes - within;
            let want = (dst.len() - done).min(usize::try_from(avail).unwrap_or(usize::MAX));
            seg.device
                .read_exact_at(seg.device_start_byte + within, &mut dst[done..done + want])?;
            done += want;
            pos += want as u64;
            idx += 1;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::MemDisk;
    use std::sync::Arc;

    #[test]
    fn reads_across_segments() {
        let bytes: Vec<u8> = (0..=255u8).collect();
        let dev: Device = Arc::new(MemDisk::new(bytes, "mem"));
        let lin = LinearDevice::new(
            "lv",
            vec![
                LinearSegment {
                    device: dev.clone(),
                    device_start_byte: 10,
                    size_in_bytes: 4,
                },
                LinearSegment {
                    device: dev.clone(),
                    device_start_byte: 100,
                    size_in_bytes: 0,
                },
                LinearSegment {
                    device: dev.clone(),
                    device_start_byte: 200,
                    size_in_bytes: 3,
                },
            ],
        )
        .unwrap();
        assert_eq!(lin.size_in_bytes(), 7);
        let mut buf = [0u8; 5];
        lin.read_exact_at(2, &mut buf).unwrap();
        assert_eq!(buf, [12, 13, 200, 201, 202]);
        assert!(lin.read_exact_at(3, &mut buf).is_err());
    }

    #[test]
    fn refuses_segments_outside_their_device() {
        let dev: Device = Arc::new(MemDisk::new(vec![0u8; 16], "mem"));
        let err = LinearDevice::new(
            "lv",
            vec![LinearSegment {
                device: dev,
                device_start_byte: 10,
                size_in_bytes: 7,
            }],
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
    }
}
