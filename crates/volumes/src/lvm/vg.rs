//! The volume-group model extracted from parsed LVM2 metadata text: physical
//! volumes, logical volumes and their segments.
//!
//! Only what mapping needs is kept. Numbers are checked to be non-negative
//! and names to follow LVM's rules (they end up in volume ids); anything
//! malformed is an error value, never a panic.

use super::text::{Section, Value};

/// One physical volume of the VG, as the metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PvMeta {
    /// Key inside `physical_volumes` (`pv0`), used by segment stripes.
    pub key: String,
    /// PV UUID as LVM prints it.
    pub id: String,
    /// First extent's offset from the PV start, in 512-byte sectors.
    pub pe_start_sectors: u64,
    /// Number of extents on the PV.
    pub pe_count: u64,
}

/// One segment of a logical volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegMeta {
    /// Section name (`segment1`).
    pub name: String,
    /// First logical extent of the LV covered by this segment.
    pub start_extent: u64,
    /// Number of extents.
    pub extent_count: u64,
    /// Segment type (`striped`, `thin`, `raid1`, `snapshot`, ...).
    pub seg_type: String,
    /// `stripe_count` for striped segments.
    pub stripe_count: Option<u64>,
    /// `stripes = [ "pv0", 0, ... ]` as (pv key, first PV extent).
    pub stripes: Vec<(String, u64)>,
    /// For `snapshot` segments: the LV holding the copy-on-write store.
    pub cow_store: Option<String>,
}

/// One logical volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LvMeta {
    /// LV name.
    pub name: String,
    /// LV UUID.
    pub id: String,
    /// `status` contains `VISIBLE` (hidden LVs are internal parts of others).
    pub visible: bool,
    /// Segments in file order.
    pub segments: Vec<SegMeta>,
}

/// A volume group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VgMeta {
    /// VG name.
    pub name: String,
    /// VG UUID.
    pub id: String,
    /// Metadata sequence number: higher is newer.
    pub seqno: u64,
    /// Extent size in 512-byte sectors.
    pub extent_size_sectors: u64,
    /// Physical volumes.
    pub pvs: Vec<PvMeta>,
    /// Logical volumes.
    pub lvs: Vec<LvMeta>,
}

/// True for names LVM itself would accept: `[A-Za-z0-9+_.-]`, not starting
/// with `-`, at most 127 characters, not `.` or `..`.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 127
        && !name.starts_with('-')
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'_' | b'.' | b'-'))
}

fn uint(s: &Section, key: &str, what: &str) -> Result<u64, String> {
    match s.get(key) {
        Some(Value::Int(i)) => {
            u64::try_from(*i).map_err(|_| format!("{what}: {key} = {i} is negative"))
        }
        Some(_) => Err(format!("{what}: {key} is not an integer")),
        None => Err(format!("{what}: {key} is missing")),
    }
}

fn string(s: &Section, key: &str, what: &str) -> Result<String, String> {
    s.str(key)
        .map(str::to_string)
        .ok_or_else(|| format!("{what}: {key} is missing or not a string"))
}

/// Builds the VG model from a parsed metadata document.
pub(crate) fn from_text(root: &Section) -> Result<VgMeta, String> {
    // The VG is the top-level section holding the VG fields; the rest of the
    // top level is free-form description.
    let (name, vg) = root
        .sections()
        .find(|(_, s)| s.get("extent_size").is_some() || s.get("physical_volumes").is_some())
        .ok_or("no volume group section in the metadata")?;
    if !valid_name(name) {
        return Err(format!(
            "volume group name {name:?} is not a valid LVM name"
        ));
    }
    let what = format!("volume group {name}");
    let id = string(vg, "id", &what)?;
    let seqno = uint(vg, "seqno", &what)?;
    let extent_size_sectors = uint(vg, "extent_size", &what)?;
    if extent_size_sectors == 0 {
        return Err(format!("{what}: extent_size is 0"));
    }
    let mut pvs = Vec::new();
    if let Some(section) = vg.section("physical_volumes") {
        for (key, pv) in section.sections() {
            let pw = format!("{what}: physical volume {key}");
            pvs.push(PvMeta {
                key: key.to_string(),
                id: string(pv, "id", &pw)?,
                pe_start_sectors: uint(pv, "pe_start", &pw)?,
                pe_count: uint(pv, "pe_count", &pw)?,
            });
        }
    }
    let mut lvs = Vec::new();
    if let Some(section) = vg.section("logical_volumes") {
        for (lv_name, lv) in section.sections() {
            if !valid_name(lv_name) {
                return Err(format!(
                    "{what}: logical volume name {lv_name:?} is not a valid LVM name"
                ));
            }
            let lw = format!("{what}: logical volume {lv_name}");
            let visible = lv.array("status").is_some_and(|a| {
                a.iter()
                    .any(|v| matches!(v, Value::Str(s) if s == "VISIBLE"))
            });
            let mut segments = Vec::new();
            for (seg_name, seg) in lv.sections() {
                let sw = format!("{lw} {seg_name}");
                let stripes = match seg.array("stripes") {
                    None => Vec::new(),
                    Some(items) => {
                        if items.len() % 2 != 0 {
                            return Err(format!("{sw}: stripes has an odd number of items"));
                        }
                        let mut out = Vec::with_capacity(items.len() / 2);
                        for pair in items.chunks_exact(2) {
                            // OK to index: chunks_exact(2) yields pairs.
                            match (&pair[0], &pair[1]) {
                                (Value::Str(pv), Value::Int(ext)) => {
                                    let ext = u64::try_from(*ext)
                                        .map_err(|_| format!("{sw}: negative extent in stripes"))?;
                                    out.push((pv.clone(), ext));
                                }
                                _ => {
                                    return Err(format!(
                                        "{sw}: stripes must alternate PV names and extents"
                                    ))
                                }
                            }
                        }
                        out
                    }
                };
                segments.push(SegMeta {
                    name: seg_name.to_string(),
                    start_extent: uint(seg, "start_extent", &sw)?,
                    extent_count: uint(seg, "extent_count", &sw)?,
                    seg_type: string(seg, "type", &sw)?,
                    stripe_count: seg.int("stripe_count").and_then(|i| u64::try_from(i).ok()),
                    stripes,
                    cow_store: seg.str("cow_store").map(str::to_string),
                });
            }
            lvs.push(LvMeta {
                name: lv_name.to_string(),
                id: string(lv, "id", &lw)?,
                visible,
                segments,
            });
        }
    }
    Ok(VgMeta {
        name: name.to_string(),
        id,
        seqno,
        extent_size_sectors,
        pvs,
        lvs,
    })
}
