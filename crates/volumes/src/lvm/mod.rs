//! LVM2 physical volumes and their linear logical volumes, mapped in
//! userspace (no device-mapper).
//!
//! For every volume probed as `LVM2_member` we read the PV label, the
//! metadata areas and the newest metadata text, parse it, and map each
//! visible LV made only of single-stripe `striped` segments (linear) onto the
//! PVs found on this disk. Everything else (raid, thin, snapshots, mirrors,
//! cache, LVs with a PV elsewhere) is reported in
//! [`VolumeGroup::unmapped`](crate::VolumeGroup) with the reason. Metadata
//! whose extents point outside a PV is an error naming the LV. Nothing here
//! writes, and only the label sectors, metadata area headers and metadata
//! text are read.

pub(crate) mod label;
pub(crate) mod text;
pub(crate) mod vg;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use rescue_io::{Error, ErrorKind, Result};

use crate::linear::{LinearDevice, LinearSegment};
use crate::{Diagnostic, Volume, VolumeGroup, VolumeKind};
use label::{PvLabel, SECTOR};
use vg::{LvMeta, VgMeta};

/// Most LVs mapped (and probed) per disk: real VGs hold a few dozen; a
/// hostile metadata text could otherwise name thousands.
const MAX_MAPPED_LVS: usize = 1024;

/// A PV found on this disk.
struct FoundPv<'a> {
    volume: &'a Volume,
    label: PvLabel,
}

/// One piece of an LV: `extent_count` extents from `pv_extent` of a PV.
struct Piece<'a> {
    segment: String,
    pv_key: String,
    pv: &'a FoundPv<'a>,
    pe_start_sectors: u64,
    pe_count: u64,
    pv_extent: u64,
    extent_count: u64,
}

/// Finds the VGs on the `volumes` probed as LVM2 PVs and maps their linear
/// LVs. Returns the VGs and the LV volumes (probed).
pub(crate) fn discover(
    volumes: &[Volume],
    diags: &mut Vec<Diagnostic>,
) -> Result<(Vec<VolumeGroup>, Vec<Volume>)> {
    let mut pvs: Vec<FoundPv<'_>> = Vec::new();
    for volume in volumes
        .iter()
        .filter(|v| v.probe.fstype.as_deref() == Some("LVM2_member"))
    {
        match label::read_label(&*volume.device) {
            Ok(Some(label)) => pvs.push(FoundPv { volume, label }),
            Ok(None) => diags.push(Diagnostic {
                subject: volume.id.clone(),
                message: "reading LVM2 label: no label in the first four sectors".into(),
            }),
            Err(e) => diags.push(Diagnostic {
                subject: volume.id.clone(),
                message: format!("reading LVM2 label: {e}"),
            }),
        }
    }
    if pvs.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }

    // PV UUID -> index into `pvs`; a cloned partition can duplicate a PV.
    let mut by_uuid: HashMap<String, usize> = HashMap::new();
    for (i, pv) in pvs.iter().enumerate() {
        let uuid = pv.label.pv_uuid();
        if let Some(&first) = by_uuid.get(&uuid) {
            diags.push(Diagnostic {
                subject: pv.volume.id.clone(),
                message: format!(
                    "physical volume {uuid} also appears on {}; only the first copy is used",
                    pvs[first].volume.id
                ),
            });
        } else {
            by_uuid.insert(uuid, i);
        }
    }

    // Newest metadata per VG UUID, from any metadata area of any PV.
    let mut newest: BTreeMap<String, VgMeta> = BTreeMap::new();
    for pv in &pvs {
        for &(mda_start, mda_size) in &pv.label.metadata_areas {
            let text = match label::read_metadata(&*pv.volume.device, mda_start, mda_size) {
                Ok(Some(t)) => t,
                Ok(None) => continue,
                Err(e) => {
                    diags.push(Diagnostic {
                        subject: pv.volume.id.clone(),
                        message: format!("reading LVM2 metadata: {e}; other copies are tried"),
                    });
                    continue;
                }
            };
            let parsed = text::parse(&text.text)
                .map_err(|e| {
                    format!(
                        "parsing LVM2 metadata text at offset {:#x}: {e}",
                        text.start_byte
                    )
                })
                .and_then(|root| {
                    vg::from_text(&root).map_err(|e| {
                        format!(
                            "reading LVM2 metadata at offset {:#x}: {e}",
                            text.start_byte
                        )
                    })
                });
            match parsed {
                Ok(vg) => {
                    let keep = newest.get(&vg.id).is_none_or(|old| vg.seqno > old.seqno);
                    if keep {
                        newest.insert(vg.id.clone(), vg);
                    }
                }
                Err(message) => diags.push(Diagnostic {
                    subject: pv.volume.id.clone(),
                    message,
                }),
            }
        }
    }

    let mut vgs: Vec<VgMeta> = newest.into_values().collect();
    vgs.sort_by(|a, b| a.name.cmp(&b.name));
    let mut groups = Vec::new();
    let mut lv_volumes = Vec::new();
    for vg in &vgs {
        let Some(extent_size_in_bytes) = vg.extent_size_sectors.checked_mul(SECTOR) else {
            diags.push(Diagnostic {
                subject: format!("lvm/{}", vg.name),
                message: format!(
                    "extent size of {} sectors is absurd; the volume group is ignored",
                    vg.extent_size_sectors
                ),
            });
            continue;
        };
        let physical_volumes = vg
            .pvs
            .iter()
            .filter_map(|p| by_uuid.get(&p.id).map(|&i| pvs[i].volume.id.clone()))
            .collect();
        let cow_stores: HashSet<&str> = vg
            .lvs
            .iter()
            .flat_map(|lv| lv.segments.iter())
            .filter(|s| s.seg_type == "snapshot")
            .filter_map(|s| s.cow_store.as_deref())
            .collect();
        let mut unmapped = Vec::new();
        // LVM shows a snapshot under the name of its copy-on-write LV,
        // which has no VISIBLE flag of its own.
        let shown = |lv: &&LvMeta| lv.visible || cow_stores.contains(lv.name.as_str());
        for lv in vg.lvs.iter().filter(shown) {
            let subject = format!("lvm/{}/{}", vg.name, lv.name);
            if cow_stores.contains(lv.name.as_str()) {
                unmapped.push(Diagnostic {
                    subject,
                    message:
                        "holds the copy-on-write store of a snapshot; snapshots are not mapped"
                            .into(),
                });
                continue;
            }
            let pieces = match plan(vg, lv, &pvs, &by_uuid) {
                Ok(p) => p,
                Err(message) => {
                    unmapped.push(Diagnostic { subject, message });
                    continue;
                }
            };
            if lv_volumes.len() >= MAX_MAPPED_LVS {
                unmapped.push(Diagnostic {
                    subject,
                    message: format!("more than {MAX_MAPPED_LVS} logical volumes on this disk; the rest are not mapped"),
                });
                continue;
            }
            let volume = map_lv(vg, lv, &pieces, extent_size_in_bytes, &subject, diags)?;
            lv_volumes.push(volume);
        }
        groups.push(VolumeGroup {
            name: vg.name.clone(),
            uuid: vg.id.clone(),
            extent_size_in_bytes,
            physical_volumes,
            unmapped,
        });
    }
    Ok((groups, lv_volumes))
}

/// Decides whether `lv` is a linear LV entirely on this disk; returns its
/// pieces in order, or why it is not mapped.
fn plan<'a>(
    vg: &VgMeta,
    lv: &LvMeta,
    pvs: &'a [FoundPv<'a>],
    by_uuid: &HashMap<String, usize>,
) -> std::result::Result<Vec<Piece<'a>>, String> {
    if lv.segments.is_empty() {
        return Err("has no segments".into());
    }
    let mut segments: Vec<_> = lv.segments.iter().collect();
    segments.sort_by_key(|s| s.start_extent);
    let mut next_extent = 0u64;
    let mut pieces = Vec::with_capacity(segments.len());
    for seg in segments {
        if seg.seg_type != "striped" {
            return Err(format!(
                "{} has type {}; only linear volumes (striped with one stripe) are mapped",
                seg.name, seg.seg_type
            ));
        }
        if seg.stripe_count != Some(1) || seg.stripes.len() != 1 {
            return Err(format!(
                "{} is striped over {} physical volumes; only linear volumes are mapped",
                seg.name,
                seg.stripes.len()
            ));
        }
        if seg.start_extent != next_extent {
            return Err(format!(
                "{} starts at logical extent {} but the previous segments end at {next_extent}; the segments leave a gap",
                seg.name, seg.start_extent
            ));
        }
        next_extent = seg
            .start_extent
            .checked_add(seg.extent_count)
            .ok_or_else(|| format!("{}: extent count overflows", seg.name))?;
        // OK to index: exactly one stripe was checked just above.
        let (pv_key, pv_extent) = &seg.stripes[0];
        let meta = vg.pvs.iter().find(|p| &p.key == pv_key).ok_or_else(|| {
            format!(
                "{} refers to {pv_key}, which the metadata does not list",
                seg.name
            )
        })?;
        let &index = by_uuid.get(&meta.id).ok_or_else(|| {
            format!(
                "{} lies on physical volume {pv_key} ({}), which is not on this disk",
                seg.name, meta.id
            )
        })?;
        pieces.push(Piece {
            segment: seg.name.clone(),
            pv_key: pv_key.clone(),
            pv: &pvs[index],
            pe_start_sectors: meta.pe_start_sectors,
            pe_count: meta.pe_count,
            pv_extent: *pv_extent,
            extent_count: seg.extent_count,
        });
    }
    Ok(pieces)
}

/// Checks every piece against its PV and builds the LV's volume.
fn map_lv(
    vg: &VgMeta,
    lv: &LvMeta,
    pieces: &[Piece<'_>],
    extent_size_in_bytes: u64,
    subject: &str,
    diags: &mut Vec<Diagnostic>,
) -> Result<Volume> {
    let op = format!("mapping LVM logical volume {}/{}", vg.name, lv.name);
    let mut segments = Vec::with_capacity(pieces.len());
    let mut extents = Vec::with_capacity(pieces.len());
    let mut volume_offset = 0u64;
    let mut first_start = None;
    for p in pieces {
        let pv_volume = p.pv.volume;
        let pv_size = pv_volume.size_in_bytes;
        let last_extent = p.pv_extent.checked_add(p.extent_count);
        let pe_start_byte = p.pe_start_sectors.checked_mul(SECTOR);
        let start_in_pv = pe_start_byte.and_then(|b| {
            p.pv_extent
                .checked_mul(extent_size_in_bytes)
                .and_then(|o| b.checked_add(o))
        });
        let len = p.extent_count.checked_mul(extent_size_in_bytes);
        let end_in_pv = start_in_pv.zip(len).and_then(|(s, l)| s.checked_add(l));
        let disk_offset = start_in_pv.and_then(|s| s.checked_add(pv_volume.start_byte));
        let mut err = Error::new(ErrorKind::Corrupt, op.clone());
        if let Some(o) = disk_offset {
            err = err.with_offset(o);
        }
        let range = format!(
            "{} (extents {}..{} of {})",
            p.segment,
            p.pv_extent,
            p.pv_extent.saturating_add(p.extent_count),
            p.pv_key
        );
        if last_extent.is_none_or(|e| e > p.pe_count) {
            return Err(err.with_detail(format!(
                "{range} points outside physical volume {} ({}), which has {} extents; the LVM metadata is corrupt",
                pv_volume.id, p.pv_key, p.pe_count
            )));
        }
        let (Some(start), Some(len), Some(end)) = (start_in_pv, len, end_in_pv) else {
            return Err(err.with_detail(format!(
                "{range}: byte offsets overflow; the LVM metadata is corrupt"
            )));
        };
        if end > pv_size {
            return Err(err.with_detail(format!(
                "{range} ends at byte {end:#x} of physical volume {}, beyond its end ({pv_size:#x}); the LVM metadata points outside the PV: the disk may be truncated or the metadata corrupt",
                pv_volume.id
            )));
        }
        first_start.get_or_insert(pv_volume.start_byte.saturating_add(start));
        // The PV's own extents place this piece on the disk (a PV is a
        // partition or the whole disk: one extent).
        for pv_extent in &pv_volume.extents {
            let lo = start.max(pv_extent.volume_start);
            let hi = end.min(pv_extent.volume_start.saturating_add(pv_extent.len));
            if lo < hi {
                extents.push(rescue_io::Extent {
                    volume_start: volume_offset + (lo - start),
                    disk_start: pv_extent.disk_start + (lo - pv_extent.volume_start),
                    len: hi - lo,
                });
            }
        }
        volume_offset = volume_offset.saturating_add(len);
        segments.push(LinearSegment {
            device: pv_volume.device.clone(),
            device_start_byte: start,
            size_in_bytes: len,
        });
    }
    let device = LinearDevice::new(subject.to_string(), segments)?;
    let size_in_bytes = rescue_io::BlockRead::size_in_bytes(&device);
    // `Device` is `Arc<dyn BlockRead>` by rescue_io's design, without Send/Sync.
    #[allow(clippy::arc_with_non_send_sync)]
    let device: rescue_io::Device = Arc::new(device);
    let probe = crate::probe_with_diagnostics(subject, &device, diags);
    Ok(Volume {
        id: subject.to_string(),
        kind: VolumeKind::LogicalVolume {
            vg: vg.name.clone(),
            lv: lv.name.clone(),
            lv_uuid: lv.id.clone(),
        },
        start_byte: first_start.unwrap_or(0),
        size_in_bytes,
        probe,
        device,
        extents,
    })
}
