//! Our own parser and validator of the qcow2 header, its extensions and its
//! L1 table.
//!
//! `qcow2-rs` trusts its input: its header parser and device constructor
//! panic or allocate without bound on hostile values. Everything it will
//! ever see is checked here first, and it is then handed a canonical header
//! that we synthesise from the validated fields ([`Header::canonical_bytes`]),
//! never the bytes from the disk.
//!
//! This module must never allocate more than a fixed cap because of a value
//! read from the image, and never accept a feature whose data it cannot
//! read correctly (encryption, external data files, zstd, extended L2).

use crate::{BlockRead, Error, ErrorKind, Result};

/// The qcow2 magic, `QFI\xfb`.
const MAGIC: [u8; 4] = *b"QFI\xfb";
/// Size of the fixed version-2 header; version-3 fields follow it.
const V2_HEADER_LEN: u32 = 72;
/// Smallest legal version-3 header (up to and including `header_length`).
const V3_MIN_HEADER_LEN: u32 = 104;
/// Smallest cluster we accept: `qcow2-rs` underflows its slice arithmetic
/// below 4 KiB clusters.
pub(crate) const MIN_CLUSTER_BITS: u32 = 12;
/// Largest cluster qemu can open (2 MiB).
pub(crate) const MAX_CLUSTER_BITS: u32 = 21;
/// qemu's cap on the active L1 table (`QCOW_MAX_L1_SIZE`).
const MAX_L1_BYTES: u64 = 32 << 20;
/// qemu's cap on the refcount table (`QCOW_MAX_REFTABLE_SIZE`).
const MAX_REFCOUNT_TABLE_BYTES: u64 = 8 << 20;
/// qemu's cap on internal snapshots (`QCOW_MAX_SNAPSHOTS`).
const MAX_SNAPSHOTS: u32 = 65536;
/// The qcow2 specification: "L1/L2 table layouts limit an image to no more
/// than 64 PB (56 bits)". qemu additionally limits the size through the
/// 32 MiB L1 cap (2^43 bytes with 4 KiB clusters, 2^51 with 64 KiB); we
/// enforce both, so no virtual offset can overflow later arithmetic.
const MAX_VIRTUAL_SIZE: u64 = 1 << 56;
/// Longest backing file name the specification allows.
const MAX_BACKING_NAME_LEN: u32 = 1023;
/// L1 entry bits 9..=55: the L2 table offset.
pub(crate) const L1_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// L1 entries are checked in chunks of this many bytes, so memory stays
/// small however large the table is.
const L1_CHECK_CHUNK_BYTES: usize = 64 << 10;

/// Header extension: name of the backing file's format.
const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
/// Header extension: names of feature bits.
const EXT_FEATURE_NAMES: u32 = 0x6803_f857;
/// Header extension: persistent dirty bitmaps.
const EXT_BITMAPS: u32 = 0x2385_2875;

/// Autoclear feature bit 0: the bitmaps extension is consistent.
const AUTOCLEAR_BITMAPS: u64 = 1 << 0;
/// Reftable entry bits 9..=63: the refcount block offset.
const REFTABLE_OFFSET_MASK: u64 = 0xffff_ffff_ffff_fe00;

/// Incompatible feature bits we know by name.
const INCOMPAT_DIRTY: u64 = 1 << 0;
const INCOMPAT_CORRUPT: u64 = 1 << 1;
const INCOMPAT_DATA_FILE: u64 = 1 << 2;
const INCOMPAT_COMPRESSION: u64 = 1 << 3;
const INCOMPAT_EXTL2: u64 = 1 << 4;

const OP_HEADER: &str = "reading qcow2 header";

/// A validated qcow2 header: every offset lies inside the file, every size
/// is within qemu's limits.
#[derive(Debug, Clone)]
pub(crate) struct Header {
    pub(crate) version: u32,
    pub(crate) cluster_bits: u32,
    /// Guest-visible size, rounded down to 512 bytes as qemu does.
    pub(crate) virtual_size_in_bytes: u64,
    pub(crate) l1_entries: u32,
    pub(crate) l1_table_offset: u64,
    /// L1 entries that can be reached for `virtual_size_in_bytes`.
    pub(crate) l1_entries_needed: u64,
    pub(crate) refcount_table_offset: u64,
    pub(crate) refcount_table_clusters: u32,
    pub(crate) refcount_order: u32,
    pub(crate) nb_snapshots: u32,
    pub(crate) dirty: bool,
    /// Autoclear feature bits (version 3; 0 for version 2).
    pub(crate) autoclear_features: u64,
    /// The image holds persistent dirty bitmaps (header extension).
    pub(crate) has_bitmaps: bool,
    /// Raw bytes of the backing file name (not necessarily UTF-8).
    pub(crate) backing_file: Option<Vec<u8>>,
    /// Content of the backing-format header extension, if present.
    pub(crate) backing_format: Option<String>,
}

impl Header {
    pub(crate) fn cluster_size_in_bytes(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// A clean version-3 header for `qcow2-rs`, built from validated fields.
    ///
    /// `qcow2-rs` misreads version-2 headers (it parses version-3 fields
    /// from the bytes of the extensions) and refuses any incompatible
    /// feature bit, including the dirty bit we accept for reading. It only
    /// needs the geometry, and to know whether a backing file exists so
    /// that unallocated clusters map to `Backing`; the name itself is a
    /// placeholder because we open backing files ourselves.
    ///
    /// `with_backing` is false for writing: `qcow2-rs` then allocates
    /// unallocated clusters instead of copying them from a backing file it
    /// does not have (we hand it whole clusters, read through our own
    /// backing chain).
    pub(crate) fn canonical_bytes(&self, with_backing: bool) -> Vec<u8> {
        const HEADER_LEN: usize = 112;
        const BACKING_NAME_OFFSET: usize = HEADER_LEN + 8;
        const PLACEHOLDER: &[u8] = b"backing";
        let mut b = vec![0u8; 4096];
        b[0..4].copy_from_slice(&MAGIC);
        b[4..8].copy_from_slice(&3u32.to_be_bytes());
        if with_backing && self.backing_file.is_some() {
            b[8..16].copy_from_slice(&(BACKING_NAME_OFFSET as u64).to_be_bytes());
            b[16..20].copy_from_slice(&(PLACEHOLDER.len() as u32).to_be_bytes());
            b[BACKING_NAME_OFFSET..BACKING_NAME_OFFSET + PLACEHOLDER.len()]
                .copy_from_slice(PLACEHOLDER);
        }
        b[20..24].copy_from_slice(&self.cluster_bits.to_be_bytes());
        b[24..32].copy_from_slice(&self.virtual_size_in_bytes.to_be_bytes());
        // crypt_method stays 0: encrypted images never get here.
        b[36..40].copy_from_slice(&self.l1_entries.to_be_bytes());
        b[40..48].copy_from_slice(&self.l1_table_offset.to_be_bytes());
        b[48..56].copy_from_slice(&self.refcount_table_offset.to_be_bytes());
        b[56..60].copy_from_slice(&self.refcount_table_clusters.to_be_bytes());
        // Snapshots, feature bits and compression type stay 0: qcow2-rs
        // ignores snapshots, and the features we accept do not change how
        // the active L1/L2 tables are read.
        b[96..100].copy_from_slice(&self.refcount_order.to_be_bytes());
        b[100..104].copy_from_slice(&(HEADER_LEN as u32).to_be_bytes());
        // Bytes 112..120 stay zero: the end-of-extensions marker.
        b
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

fn corrupt_at(offset: u64, detail: impl Into<String>) -> Error {
    Error::corrupt(OP_HEADER, detail).with_offset(offset)
}

fn unsupported_at(offset: u64, detail: impl Into<String>) -> Error {
    Error::unsupported(OP_HEADER, detail).with_offset(offset)
}

/// The fields every later check needs, read from the fixed part only.
/// Returns the cluster size so the caller knows how much of the first
/// cluster to read for [`parse_header`].
pub(crate) fn peek_cluster_size(prefix: &[u8], file_size: u64) -> Result<u64> {
    let fixed = parse_fixed(prefix, file_size)?;
    Ok(1u64 << fixed.cluster_bits)
}

struct Fixed {
    version: u32,
    cluster_bits: u32,
    header_length: u32,
}

fn parse_fixed(b: &[u8], file_size: u64) -> Result<Fixed> {
    if b.len() < 8 || b[0..4] != MAGIC {
        return Err(corrupt_at(
            0,
            "bad magic: this is not a qcow2 image; open it with --format raw if it is a raw disk",
        ));
    }
    let version = be32(b, 4);
    match version {
        2 | 3 => {}
        1 => {
            return Err(unsupported_at(
                4,
                "this is a qcow version 1 image, which is not supported; convert it with `qemu-img convert -O qcow2 old.img new.qcow2`",
            ))
        }
        v => {
            return Err(unsupported_at(
                4,
                format!("qcow2 version {v} is not supported (only versions 2 and 3 are); the header may be corrupt"),
            ))
        }
    }
    let min_len = if version == 2 {
        V2_HEADER_LEN
    } else {
        V3_MIN_HEADER_LEN
    };
    if (b.len() as u64) < u64::from(min_len) || file_size < u64::from(min_len) {
        return Err(Error::new(ErrorKind::Truncated, OP_HEADER).with_offset(0).with_detail(format!(
            "the file ({file_size} bytes) is too short to hold a version {version} qcow2 header ({min_len} bytes): the image is truncated"
        )));
    }
    let cluster_bits = be32(b, 20);
    if !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&cluster_bits) {
        let size = if cluster_bits < 64 {
            format!("{} bytes", 1u64 << cluster_bits)
        } else {
            "absurd".to_owned()
        };
        let advice = if (9..MIN_CLUSTER_BITS).contains(&cluster_bits) {
            "; convert it with `qemu-img convert -O qcow2 -o cluster_size=65536 in.qcow2 out.qcow2`"
        } else {
            "; the header is probably corrupt"
        };
        return Err(unsupported_at(
            20,
            format!(
                "cluster_bits {cluster_bits} (cluster size {size}) is not supported: only 4 KiB to 2 MiB clusters (cluster_bits {MIN_CLUSTER_BITS}..={MAX_CLUSTER_BITS}) are{advice}"
            ),
        ));
    }
    let cluster_size = 1u64 << cluster_bits;
    let header_length = if version == 2 {
        V2_HEADER_LEN
    } else {
        let len = be32(b, 100);
        // Like qemu, do not insist on the multiple of 8 the specification asks for.
        if len < V3_MIN_HEADER_LEN || u64::from(len) > cluster_size {
            return Err(corrupt_at(
                100,
                format!(
                    "header_length {len} is invalid: it must lie between {V3_MIN_HEADER_LEN} and the cluster size ({cluster_size})"
                ),
            ));
        }
        len
    };
    Ok(Fixed {
        version,
        cluster_bits,
        header_length,
    })
}

/// Parses and validates the header in `first_cluster` (the first
/// `min(cluster size, file size)` bytes of the file) against the real
/// `file_size`. Does not look at the L1 table: see [`check_l1_table`].
pub(crate) fn parse_header(b: &[u8], file_size: u64) -> Result<Header> {
    let Fixed {
        version,
        cluster_bits,
        header_length,
    } = parse_fixed(b, file_size)?;
    let cluster_size = 1u64 << cluster_bits;
    // The caller hands us min(cluster, file) bytes; never look further.
    let first_len = (b.len() as u64).min(cluster_size);
    if u64::from(header_length) > first_len {
        return Err(Error::new(ErrorKind::Truncated, OP_HEADER).with_offset(100).with_detail(format!(
            "the header ({header_length} bytes) extends beyond the end of the file ({file_size} bytes): the image is truncated"
        )));
    }

    let crypt_method = be32(b, 32);
    if crypt_method != 0 {
        let what = match crypt_method {
            1 => "AES-encrypted (legacy qcow2 encryption)".to_owned(),
            2 => "LUKS-encrypted".to_owned(),
            m => format!("encrypted with unknown method {m}"),
        };
        return Err(unsupported_at(
            32,
            format!(
                "the image is {what}; encrypted qcow2 images are not supported: decrypt it first with `qemu-img convert --object secret,id=sec0,file=keyfile --image-opts driver=qcow2,file.filename=in.qcow2,encrypt.key-secret=sec0 -O qcow2 out.qcow2`"
            ),
        ));
    }

    let (incompatible, autoclear_features, refcount_order, compression_type) = if version == 2 {
        (0u64, 0u64, 4u32, 0u8)
    } else {
        let compression_type = if header_length > 104 { b[104] } else { 0 };
        (be64(b, 72), be64(b, 88), be32(b, 96), compression_type)
    };

    // Extensions come first so that unknown feature bits can be named.
    let ext = parse_extensions(b, header_length, first_len)?;

    check_incompatible_features(incompatible, compression_type, &ext.feature_names)?;
    let dirty = incompatible & INCOMPAT_DIRTY != 0;

    if refcount_order > 6 {
        return Err(corrupt_at(
            96,
            format!(
                "refcount_order {refcount_order} is invalid (at most 6, i.e. 64-bit refcounts)"
            ),
        ));
    }

    // Virtual size and L1 geometry.
    let raw_size = be64(b, 24);
    if raw_size > MAX_VIRTUAL_SIZE {
        return Err(corrupt_at(
            24,
            format!("virtual size {raw_size:#x} bytes is absurd: qcow2 cannot address more than 2^56 bytes"),
        ));
    }
    let virtual_size_in_bytes = raw_size & !511;
    // Bytes mapped by one L1 entry: cluster_size * (cluster_size / 8).
    let l1_entry_span = 1u64 << (2 * cluster_bits - 3);
    let l1_entries_needed = virtual_size_in_bytes.div_ceil(l1_entry_span);
    let l1_entries = be32(b, 36);
    let l1_table_offset = be64(b, 40);
    let max_l1_entries = MAX_L1_BYTES / 8;
    if l1_entries_needed > max_l1_entries {
        return Err(corrupt_at(
            24,
            format!(
                "virtual size {virtual_size_in_bytes:#x} needs an L1 table larger than qemu's 32 MiB limit with {cluster_size}-byte clusters: the header is corrupt"
            ),
        ));
    }
    if u64::from(l1_entries) > max_l1_entries {
        return Err(corrupt_at(
            36,
            format!("the L1 table has {l1_entries} entries, more than qemu's limit of {max_l1_entries} (32 MiB)"),
        ));
    }
    if u64::from(l1_entries) < l1_entries_needed {
        return Err(corrupt_at(
            36,
            format!(
                "the L1 table has {l1_entries} entries but the virtual size {virtual_size_in_bytes:#x} needs {l1_entries_needed}: the header is corrupt"
            ),
        ));
    }
    if l1_entries > 0 {
        // The declared entries must exist. qemu writes no more than those,
        // so the rest of the L1 cluster may lie past the end of the file.
        let l1_bytes = u64::from(l1_entries) * 8;
        check_table_placement(
            40,
            "L1 table",
            l1_table_offset,
            l1_bytes,
            cluster_size,
            file_size,
        )?;
    }

    // Refcount table: qcow2-rs loads it whole, so it must be capped and present.
    let refcount_table_offset = be64(b, 48);
    let refcount_table_clusters = be32(b, 56);
    if refcount_table_clusters == 0 {
        return Err(corrupt_at(
            56,
            "the refcount table has 0 clusters: the header is corrupt",
        ));
    }
    let refcount_table_bytes = u64::from(refcount_table_clusters) << cluster_bits;
    if refcount_table_bytes > MAX_REFCOUNT_TABLE_BYTES {
        return Err(corrupt_at(
            56,
            format!(
                "the refcount table has {refcount_table_clusters} clusters ({refcount_table_bytes} bytes), more than qemu's limit of 8 MiB"
            ),
        ));
    }
    // Reading never uses refcounts: require only that the table starts
    // inside the file, not that all of it was written.
    check_table_placement(
        48,
        "refcount table",
        refcount_table_offset,
        8,
        cluster_size,
        file_size,
    )?;

    // Internal snapshots: fine for reading the active layer.
    let nb_snapshots = be32(b, 60);
    let snapshots_offset = be64(b, 64);
    if nb_snapshots > MAX_SNAPSHOTS {
        return Err(corrupt_at(
            60,
            format!("{nb_snapshots} internal snapshots exceed qemu's limit of {MAX_SNAPSHOTS}"),
        ));
    }
    if nb_snapshots > 0 {
        // Each snapshot table entry is at least 40 bytes.
        check_table_placement(
            64,
            "snapshot table",
            snapshots_offset,
            u64::from(nb_snapshots) * 40,
            cluster_size,
            file_size,
        )?;
    }

    // Backing file name: inside the first cluster, at most 1023 bytes.
    let backing_file_offset = be64(b, 8);
    let backing_file_size = be32(b, 16);
    let backing_file = if backing_file_offset == 0 || backing_file_size == 0 {
        None
    } else {
        if backing_file_size > MAX_BACKING_NAME_LEN {
            return Err(corrupt_at(
                16,
                format!("the backing file name is {backing_file_size} bytes long, more than the 1023 allowed"),
            ));
        }
        let end = backing_file_offset.checked_add(u64::from(backing_file_size));
        let Some(end) = end.filter(|&end| end <= first_len) else {
            return Err(corrupt_at(
                8,
                format!(
                    "the backing file name ({backing_file_size} bytes at {backing_file_offset:#x}) does not lie inside the first cluster of the file"
                ),
            ));
        };
        // OK to index: end <= first_len <= b.len(), and offset < end.
        let name = b[backing_file_offset as usize..end as usize].to_vec();
        if name.contains(&0) {
            return Err(corrupt_at(
                backing_file_offset,
                "the backing file name contains a NUL byte: the header is corrupt",
            ));
        }
        Some(name)
    };

    Ok(Header {
        version,
        cluster_bits,
        virtual_size_in_bytes,
        l1_entries,
        l1_table_offset,
        l1_entries_needed,
        refcount_table_offset,
        refcount_table_clusters,
        refcount_order,
        nb_snapshots,
        dirty,
        autoclear_features,
        has_bitmaps: ext.has_bitmaps,
        backing_file,
        backing_format: ext.backing_format,
    })
}

/// A table at `offset` of `len` bytes must be cluster aligned, must not
/// overlap the header cluster and must lie inside the file.
fn check_table_placement(
    field_offset: u64,
    what: &str,
    offset: u64,
    len: u64,
    cluster_size: u64,
    file_size: u64,
) -> Result<()> {
    if offset == 0 || !offset.is_multiple_of(cluster_size) {
        return Err(corrupt_at(
            field_offset,
            format!("the {what} offset {offset:#x} is not a nonzero multiple of the cluster size ({cluster_size:#x}): the header is corrupt"),
        ));
    }
    let fits = offset.checked_add(len).is_some_and(|end| end <= file_size);
    if !fits {
        return Err(corrupt_at(
            field_offset,
            format!(
                "the {what} ({len} bytes at {offset:#x}) lies beyond the end of the file ({file_size:#x}): the image is truncated or its header is corrupt"
            ),
        ));
    }
    Ok(())
}

#[derive(Default)]
struct Extensions {
    backing_format: Option<String>,
    has_bitmaps: bool,
    /// (bit, name) of incompatible features named by the feature table.
    feature_names: Vec<(u8, String)>,
}

/// Walks the header extensions between `header_length` and the end of the
/// first cluster. Each step advances by at least 8 bytes, so this ends.
fn parse_extensions(b: &[u8], header_length: u32, first_len: u64) -> Result<Extensions> {
    let mut ext = Extensions::default();
    let mut pos = u64::from(header_length);
    loop {
        if pos + 8 > first_len {
            // qemu accepts a header without an end marker that fills the cluster.
            return Ok(ext);
        }
        // OK to index: pos + 8 <= first_len <= b.len().
        let kind = be32(b, pos as usize);
        let len = u64::from(be32(b, pos as usize + 4));
        let data_start = pos + 8;
        if kind == 0 {
            return Ok(ext);
        }
        let Some(data_end) = data_start.checked_add(len).filter(|&e| e <= first_len) else {
            return Err(corrupt_at(
                pos,
                format!("header extension {kind:#010x} ({len} bytes) runs past the end of the first cluster"),
            ));
        };
        let data = &b[data_start as usize..data_end as usize];
        match kind {
            EXT_BACKING_FORMAT => {
                let name = std::str::from_utf8(data).map_err(|_| {
                    corrupt_at(
                        pos,
                        "the backing format header extension is not valid UTF-8",
                    )
                })?;
                ext.backing_format = Some(name.trim_end_matches('\0').to_owned());
            }
            EXT_FEATURE_NAMES => {
                for entry in data.chunks_exact(48) {
                    if entry[0] == 0 {
                        let name = String::from_utf8_lossy(&entry[2..]);
                        let name = name.trim_end_matches('\0');
                        let name: String =
                            name.chars().filter(|c| !c.is_control()).take(46).collect();
                        ext.feature_names.push((entry[1], name));
                    }
                }
            }
            EXT_BITMAPS => ext.has_bitmaps = true,
            // The data file name (EXT_DATA_FILE) only matters with the
            // external data file feature bit, which is refused; other
            // extensions (bitmaps, encryption header, unknown ones) do not
            // affect reading.
            _ => {}
        }
        pos = data_end.next_multiple_of(8);
    }
}

fn check_incompatible_features(
    bits: u64,
    compression_type: u8,
    names: &[(u8, String)],
) -> Result<()> {
    if bits & INCOMPAT_CORRUPT != 0 {
        return Err(corrupt_at(
            72,
            "qemu has marked this image corrupt (incompatible feature bit 1); repair a copy with `qemu-img check -r all copy.qcow2` and open the copy",
        ));
    }
    if bits & INCOMPAT_DATA_FILE != 0 {
        return Err(unsupported_at(
            72,
            "the image keeps its data in an external data file (incompatible feature bit 2), which is not supported; flatten it with `qemu-img convert -O qcow2 in.qcow2 out.qcow2`",
        ));
    }
    if bits & INCOMPAT_COMPRESSION != 0 || compression_type != 0 {
        let name = match compression_type {
            1 => "zstd".to_owned(),
            0 => "an unnamed type".to_owned(),
            t => format!("unknown type {t}"),
        };
        if bits & INCOMPAT_COMPRESSION == 0 {
            return Err(corrupt_at(
                104,
                format!("compression type is {name} but incompatible feature bit 3 is not set: the header is corrupt"),
            ));
        }
        return Err(unsupported_at(
            72,
            format!(
                "the image uses {name} compression (incompatible feature bit 3), which is not supported; convert it with `qemu-img convert -O qcow2 -o compression_type=zlib in.qcow2 out.qcow2`"
            ),
        ));
    }
    if bits & INCOMPAT_EXTL2 != 0 {
        return Err(unsupported_at(
            72,
            "the image uses extended L2 entries (subclusters, incompatible feature bit 4), which are not supported; convert it with `qemu-img convert -O qcow2 -o extended_l2=off in.qcow2 out.qcow2`",
        ));
    }
    let known = INCOMPAT_DIRTY
        | INCOMPAT_CORRUPT
        | INCOMPAT_DATA_FILE
        | INCOMPAT_COMPRESSION
        | INCOMPAT_EXTL2;
    let unknown = bits & !known;
    if unknown != 0 {
        let list: Vec<String> = (0..64u8)
            .filter(|bit| unknown & (1u64 << bit) != 0)
            .map(|bit| match names.iter().find(|(b, _)| *b == bit) {
                Some((_, name)) if !name.is_empty() => format!("bit {bit} ({name})"),
                _ => format!("bit {bit}"),
            })
            .collect();
        return Err(unsupported_at(
            72,
            format!(
                "the image uses unknown incompatible features: {}; it was written by a newer qemu or is corrupt, and cannot be read safely",
                list.join(", ")
            ),
        ));
    }
    Ok(())
}

/// Reads the reachable part of the L1 table and checks that every nonzero
/// entry points to a cluster-aligned L2 table lying wholly inside the file.
///
/// After this, `qcow2-rs` can only fail to load an L2 table because of a
/// host I/O error or a file truncated after opening.
pub(crate) fn check_l1_table(source: &dyn BlockRead, header: &Header) -> Result<()> {
    const OP: &str = "checking qcow2 L1 table";
    let cluster_size = header.cluster_size_in_bytes();
    let file_size = source.size_in_bytes();
    let total_bytes = header.l1_entries_needed * 8;
    let mut buf = vec![0u8; L1_CHECK_CHUNK_BYTES.min(total_bytes as usize)];
    let mut done = 0u64;
    while done < total_bytes {
        let chunk = (total_bytes - done).min(buf.len() as u64) as usize;
        let at = header.l1_table_offset + done;
        source.read_exact_at(at, &mut buf[..chunk])?;
        for (i, raw) in buf[..chunk].chunks_exact(8).enumerate() {
            let entry = be64(raw, 0);
            let l2_offset = entry & L1_OFFSET_MASK;
            if l2_offset == 0 {
                continue;
            }
            let entry_offset = at + (i as u64) * 8;
            let index = (done / 8) + i as u64;
            if !l2_offset.is_multiple_of(cluster_size) {
                return Err(Error::corrupt(
                    OP,
                    format!(
                        "L1 entry {index} points to an L2 table at {l2_offset:#x}, which is not aligned to the cluster size ({cluster_size:#x}): the L1 table is corrupt"
                    ),
                )
                .with_offset(entry_offset));
            }
            if l2_offset
                .checked_add(cluster_size)
                .is_none_or(|end| end > file_size)
            {
                return Err(Error::corrupt(
                    OP,
                    format!(
                        "L1 entry {index} points to an L2 table at {l2_offset:#x}, beyond the end of the file ({file_size:#x}): the image is truncated or its L1 table is corrupt"
                    ),
                )
                .with_offset(entry_offset));
            }
        }
        done += chunk as u64;
    }
    Ok(())
}

const OP_WRITABLE: &str = "opening qcow2 image for writing";

/// Refuses images that `qcow2-rs` (with our help) cannot write without
/// damaging them, naming the reason and the way out.
pub(crate) fn check_writable(header: &Header) -> Result<()> {
    if header.nb_snapshots > 0 {
        return Err(Error::unsupported(
            OP_WRITABLE,
            format!(
                "the image holds {} internal snapshot(s) (`qemu-img snapshot -l`); writing would corrupt them because shared clusters are not copied on write; delete them with `qemu-img snapshot -d NAME`, or write to a flattened copy made with `qemu-img convert -O qcow2 in.qcow2 out.qcow2`",
                header.nb_snapshots
            ),
        )
        .with_offset(60));
    }
    if header.dirty {
        return Err(Error::unsupported(
            OP_WRITABLE,
            "the image is marked dirty (qemu did not close it cleanly, with lazy refcounts), so its refcounts cannot be trusted for allocating; if no VM is running from it, repair it with `qemu-img check -r all` and try again",
        )
        .with_offset(72));
    }
    if header.has_bitmaps || header.autoclear_features & AUTOCLEAR_BITMAPS != 0 {
        return Err(Error::unsupported(
            OP_WRITABLE,
            "the image holds persistent dirty bitmaps, which writing would make stale; list them with `qemu-img info`, remove them with `qemu-img bitmap --remove in.qcow2 NAME` (or write to a copy made with `qemu-img convert -O qcow2`), and try again",
        )
        .with_offset(88));
    }
    if !(3..=6).contains(&header.refcount_order) {
        return Err(Error::unsupported(
            OP_WRITABLE,
            format!(
                "the image uses {}-bit refcounts, which rescue-disk cannot update safely (8- to 64-bit only); convert it with `qemu-img convert -O qcow2 -o refcount_bits=16 in.qcow2 out.qcow2`",
                1u32 << header.refcount_order
            ),
        )
        .with_offset(96));
    }
    Ok(())
}

/// Checks that the whole refcount table lies inside the file and that
/// every refcount block it names is aligned and inside the file, so that
/// `qcow2-rs` never allocates from a table it cannot read.
pub(crate) fn check_refcount_table(source: &dyn BlockRead, header: &Header) -> Result<()> {
    const OP: &str = "checking qcow2 refcount table";
    let cluster_size = header.cluster_size_in_bytes();
    let file_size = source.size_in_bytes();
    let table_bytes = u64::from(header.refcount_table_clusters) << header.cluster_bits;
    if header
        .refcount_table_offset
        .checked_add(table_bytes)
        .is_none_or(|end| end > file_size)
    {
        return Err(Error::corrupt(
            OP,
            format!(
                "the refcount table ({table_bytes} bytes at {:#x}) runs past the end of the file ({file_size:#x}): the image is truncated; repair a copy with `qemu-img check -r all`",
                header.refcount_table_offset
            ),
        )
        .with_offset(48));
    }
    // OK to allocate: the table is at most 8 MiB (checked when parsing).
    let mut buf = vec![0u8; table_bytes as usize];
    source.read_exact_at(header.refcount_table_offset, &mut buf)?;
    for (i, raw) in buf.chunks_exact(8).enumerate() {
        let entry = be64(raw, 0);
        if entry == 0 {
            continue;
        }
        let at = header.refcount_table_offset + i as u64 * 8;
        let block = entry & REFTABLE_OFFSET_MASK;
        let bad = if entry & !REFTABLE_OFFSET_MASK != 0 {
            Some("has reserved bits set")
        } else if !block.is_multiple_of(cluster_size) {
            Some("is not aligned to the cluster size")
        } else if block
            .checked_add(cluster_size)
            .is_none_or(|end| end > file_size)
        {
            Some("points beyond the end of the file")
        } else {
            None
        };
        if let Some(why) = bad {
            return Err(Error::corrupt(
                OP,
                format!(
                    "refcount table entry {i} ({entry:#x}) {why}: the image is corrupt; repair a copy with `qemu-img check -r all`"
                ),
            )
            .with_offset(at));
        }
    }
    Ok(())
}
