//! LVM2 metadata written by the real tools, without device-mapper.
//!
//! `lvcreate` needs the kernel's device-mapper even with `-an`, which these
//! machines do not have. What works: attach the PV partition of the image
//! to a loop device, `pvcreate --uuid --restorefile` and `vgcfgrestore`
//! from a VG description generated here (fixed UUIDs, explicit segments),
//! then read the layout back with `pvs`/`lvs` and place filesystem images
//! at the byte offsets LVM reports. LVM runs with its own `LVM_SYSTEM_DIR`
//! (no host lvm.conf, no backup/archive, no hints, a device filter that
//! admits only our loop device), so the host's LVM state is left alone.
//!
//! Not bit-identical: LVM stamps `creation_time` (wall clock), the host
//! name and the loop device path into the metadata text; nothing else
//! differs between builds.
//!
//! Must never: leave a loop device attached (a guard detaches it on every
//! path, including errors), or let LVM see any device but our loop device.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

use crate::tools;

/// One physical extent range of a logical volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// First logical extent of the segment within the LV.
    pub lv_start_extent: u64,
    /// First physical extent on the PV.
    pub pv_start_extent: u64,
    /// Number of extents.
    pub extent_count: u64,
}

/// A linear logical volume to create.
#[derive(Clone, Debug)]
pub struct LvSpec {
    /// LV name (`root`, `swap`).
    pub name: &'static str,
    /// LVM UUID (32 characters in LVM's 6-4-4-4-4-4-6 grouping).
    pub uuid: &'static str,
    /// Segments in logical order.
    pub segments: Vec<Segment>,
}

/// A volume group with one PV.
#[derive(Clone, Debug)]
pub struct VgSpec {
    /// VG name.
    pub name: &'static str,
    /// VG UUID.
    pub uuid: &'static str,
    /// PV UUID.
    pub pv_uuid: &'static str,
    /// Extent size in bytes.
    pub extent_bytes: u64,
    /// Start of the first extent within the PV, in bytes.
    pub pe_start_bytes: u64,
    /// Logical volumes.
    pub lvs: Vec<LvSpec>,
}

/// Where LVM put a logical volume, as `lvs`/`pvs` report it.
#[derive(Clone, Debug)]
pub struct LvPlacement {
    /// LV name.
    pub name: String,
    /// LV size in bytes.
    pub size_bytes: u64,
    /// (byte offset within the PV, length) of each segment, in LV order.
    pub pv_ranges: Vec<(u64, u64)>,
}

/// What the LVM tools reported after the restore.
pub struct LvmReport {
    /// Placements of every LV.
    pub lvs: Vec<LvPlacement>,
    /// `pvs --reportformat json` output, verbatim.
    pub pvs_json: Value,
    /// `lvs --reportformat json` output, verbatim.
    pub lvs_json: Value,
}

/// Detaches a loop device when dropped.
struct Loop {
    device: String,
}

impl Drop for Loop {
    fn drop(&mut self) {
        if let Err(e) = tools::run_tool("losetup", ["-d", self.device.as_str()]) {
            eprintln!("warning: detaching {}: {e:#}", self.device);
        }
    }
}

fn vg_text(vg: &VgSpec, device: &str, pv_size_bytes: u64) -> Result<String> {
    const SECTOR: u64 = 512;
    ensure!(
        vg.extent_bytes.is_multiple_of(SECTOR) && vg.pe_start_bytes.is_multiple_of(SECTOR),
        "LVM sizes must be sector multiples"
    );
    let pe_count = (pv_size_bytes - vg.pe_start_bytes) / vg.extent_bytes;
    let mut lvs = String::new();
    for lv in &vg.lvs {
        let mut segs = String::new();
        for (i, s) in lv.segments.iter().enumerate() {
            ensure!(
                s.pv_start_extent + s.extent_count <= pe_count,
                "LV {} segment {} ends beyond the PV ({pe_count} extents)",
                lv.name,
                i + 1
            );
            segs.push_str(&format!(
                "\t\t\tsegment{n} {{\n\t\t\t\tstart_extent = {}\n\t\t\t\textent_count = {}\n\t\t\t\ttype = \"striped\"\n\t\t\t\tstripe_count = 1\n\t\t\t\tstripes = [\n\t\t\t\t\t\"pv0\", {}\n\t\t\t\t]\n\t\t\t}}\n",
                s.lv_start_extent,
                s.extent_count,
                s.pv_start_extent,
                n = i + 1
            ));
        }
        lvs.push_str(&format!(
            "\t\t{name} {{\n\t\t\tid = \"{uuid}\"\n\t\t\tstatus = [\"READ\", \"WRITE\", \"VISIBLE\"]\n\t\t\tflags = []\n\t\t\tcreation_time = {t}\n\t\t\tcreation_host = \"fixture\"\n\t\t\tsegment_count = {count}\n{segs}\t\t}}\n",
            name = lv.name,
            uuid = lv.uuid,
            t = crate::FIXTURE_EPOCH,
            count = lv.segments.len(),
        ));
    }
    Ok(format!(
        "contents = \"Text Format Volume Group\"\nversion = 1\n\ndescription = \"rescue-disk fixture\"\n\ncreation_host = \"fixture\"\ncreation_time = {t}\n\n{vg} {{\n\tid = \"{vgid}\"\n\tseqno = 1\n\tformat = \"lvm2\"\n\tstatus = [\"RESIZEABLE\", \"READ\", \"WRITE\"]\n\tflags = []\n\textent_size = {ext}\n\tmax_lv = 0\n\tmax_pv = 0\n\tmetadata_copies = 0\n\n\tphysical_volumes {{\n\n\t\tpv0 {{\n\t\t\tid = \"{pvid}\"\n\t\t\tdevice = \"{device}\"\n\n\t\t\tstatus = [\"ALLOCATABLE\"]\n\t\t\tflags = []\n\t\t\tdev_size = {dev}\n\t\t\tpe_start = {pes}\n\t\t\tpe_count = {pe_count}\n\t\t}}\n\t}}\n\n\tlogical_volumes {{\n\n{lvs}\t}}\n}}\n",
        t = crate::FIXTURE_EPOCH,
        vg = vg.name,
        vgid = vg.uuid,
        ext = vg.extent_bytes / SECTOR,
        pvid = vg.pv_uuid,
        dev = pv_size_bytes / SECTOR,
        pes = vg.pe_start_bytes / SECTOR,
    ))
}

fn lvm_cmd(tool: &str, system_dir: &Path) -> Result<std::process::Command> {
    let mut c = tools::cmd(tool)?;
    c.env("LVM_SYSTEM_DIR", system_dir)
        .env("LVM_SUPPRESS_FD_WARNINGS", "1");
    Ok(c)
}

/// Writes PV label and VG metadata into bytes `[pv_offset, pv_offset +
/// pv_size)` of `image` and reports where each LV landed. Needs root.
pub fn create(image: &Path, pv_offset: u64, pv_size_bytes: u64, vg: &VgSpec) -> Result<LvmReport> {
    if !tools::is_root() {
        bail!("creating LVM metadata needs root (losetup); run the fixture build as root, or skip the lvm layouts");
    }
    let work = tempfile::tempdir().context("creating a temporary directory for LVM")?;
    let out = tools::stdout(
        tools::cmd("losetup")?
            .arg("--find")
            .arg("--show")
            .arg("--offset")
            .arg(pv_offset.to_string())
            .arg("--sizelimit")
            .arg(pv_size_bytes.to_string())
            .arg(image),
    )?;
    let lo = Loop {
        device: out.trim().to_string(),
    };
    ensure!(
        lo.device.starts_with("/dev/loop"),
        "losetup printed {:?}",
        lo.device
    );

    let system_dir: PathBuf = work.path().join("lvm");
    std::fs::create_dir(&system_dir)?;
    std::fs::create_dir(work.path().join("lock"))?;
    let conf = format!(
        "devices {{\n\tfilter = [ \"a|^{dev}$|\", \"r|.*|\" ]\n\tglobal_filter = [ \"a|^{dev}$|\", \"r|.*|\" ]\n\tobtain_device_list_from_udev = 0\n\tuse_devicesfile = 0\n\thints = \"none\"\n\tscan_lvs = 0\n}}\nactivation {{\n\tudev_sync = 0\n\tudev_rules = 0\n\tmonitoring = 0\n}}\nbackup {{\n\tbackup = 0\n\tarchive = 0\n}}\nglobal {{\n\tlocking_dir = \"{lock}\"\n\tuse_lvmlockd = 0\n}}\n",
        dev = lo.device,
        lock = work.path().join("lock").display()
    );
    std::fs::write(system_dir.join("lvm.conf"), conf)?;
    let vg_file = work.path().join(format!("{}.vg", vg.name));
    std::fs::write(&vg_file, vg_text(vg, &lo.device, pv_size_bytes)?)?;

    tools::run(
        lvm_cmd("pvcreate", &system_dir)?
            .arg("--yes")
            .arg("--uuid")
            .arg(vg.pv_uuid)
            .arg("--restorefile")
            .arg(&vg_file)
            .arg(&lo.device),
    )?;
    tools::run(
        lvm_cmd("vgcfgrestore", &system_dir)?
            .arg("--file")
            .arg(&vg_file)
            .arg(vg.name),
    )?;
    let pvs_json: Value =
        serde_json::from_str(&tools::stdout(lvm_cmd("pvs", &system_dir)?.args([
            "--reportformat",
            "json",
            "--units",
            "b",
            "--nosuffix",
            "-o",
            "pv_name,pv_uuid,pv_size,pe_start,vg_name,vg_uuid,vg_extent_size,pv_pe_count",
        ]))?)
        .context("parsing pvs JSON")?;
    let lvs_json: Value =
        serde_json::from_str(&tools::stdout(lvm_cmd("lvs", &system_dir)?.args([
            "--reportformat",
            "json",
            "--units",
            "b",
            "--nosuffix",
            "--segments",
            "-o",
            "vg_name,lv_name,lv_uuid,lv_size,segtype,seg_start_pe,seg_size_pe,seg_pe_ranges",
        ]))?)
        .context("parsing lvs JSON")?;
    drop(lo);

    let lvs = placements(&pvs_json, &lvs_json)?;
    Ok(LvmReport {
        lvs,
        pvs_json: scrub(pvs_json),
        lvs_json: scrub(lvs_json),
    })
}

/// Replaces the loop device name (which varies between runs) by `PV`.
fn scrub(mut v: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::String(s) if s.contains("/dev/loop") => {
                let mut out = String::new();
                let mut rest = s.as_str();
                while let Some(i) = rest.find("/dev/loop") {
                    out.push_str(&rest[..i]);
                    out.push_str("PV");
                    let tail = &rest[i + "/dev/loop".len()..];
                    let digits = tail.chars().take_while(char::is_ascii_digit).count();
                    rest = &tail[digits..];
                }
                out.push_str(rest);
                *s = out;
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            Value::Object(o) => o.values_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}

fn report_rows<'a>(v: &'a Value, key: &str) -> Result<&'a Vec<Value>> {
    v.get("report")
        .and_then(|r| r.get(0))
        .and_then(|r| r.get(key))
        .and_then(Value::as_array)
        .with_context(|| format!("LVM JSON report without `{key}` rows"))
}

fn field_u64(row: &Value, key: &str) -> Result<u64> {
    row.get(key)
        .and_then(Value::as_str)
        .and_then(|s| s.trim().parse().ok())
        .with_context(|| format!("LVM report field `{key}` missing or not a number in {row}"))
}

/// Computes LV placements from the tools' own reports (not from our spec,
/// so that a mismatch between what we asked and what LVM did shows up).
fn placements(pvs: &Value, lvs: &Value) -> Result<Vec<LvPlacement>> {
    let pv = report_rows(pvs, "pv")?
        .first()
        .context("pvs reported no PV")?;
    let pe_start = field_u64(pv, "pe_start")?;
    let extent = field_u64(pv, "vg_extent_size")?;
    // (LV name, LV size, [(first logical extent, (PV byte offset, length))])
    type Rows = Vec<(String, u64, Vec<(u64, (u64, u64))>)>;
    let mut rows: Rows = Vec::new();
    for row in report_rows(lvs, "seg").or_else(|_| report_rows(lvs, "lv"))? {
        let name = row
            .get("lv_name")
            .and_then(Value::as_str)
            .context("lvs row without lv_name")?
            .to_string();
        let size = field_u64(row, "lv_size")?;
        let ranges = row
            .get("seg_pe_ranges")
            .and_then(Value::as_str)
            .context("lvs row without seg_pe_ranges")?;
        // "/dev/loop0:8-11" (first-last, inclusive).
        let range = ranges.rsplit(':').next().unwrap_or("");
        let (a, b) = range
            .split_once('-')
            .with_context(|| format!("unexpected seg_pe_ranges {ranges:?}"))?;
        let first: u64 = a.parse().context("seg_pe_ranges start")?;
        let last: u64 = b.parse().context("seg_pe_ranges end")?;
        ensure!(last >= first, "seg_pe_ranges {ranges:?} is reversed");
        let lv_start = field_u64(row, "seg_start_pe")?;
        let seg = (pe_start + first * extent, (last - first + 1) * extent);
        match rows.iter_mut().find(|(n, _, _)| *n == name) {
            Some((_, _, segs)) => segs.push((lv_start, seg)),
            None => rows.push((name, size, vec![(lv_start, seg)])),
        }
    }
    let mut out = Vec::new();
    for (name, size_bytes, mut segs) in rows {
        segs.sort_by_key(|(lv_start, _)| *lv_start);
        let total: u64 = segs.iter().map(|(_, (_, len))| len).sum();
        ensure!(
            total == size_bytes,
            "LV {name}: segments cover {total} bytes, lv_size says {size_bytes}"
        );
        out.push(LvPlacement {
            name,
            size_bytes,
            pv_ranges: segs.into_iter().map(|(_, r)| r).collect(),
        });
    }
    Ok(out)
}

/// Writes the file `src` into the LV described by `lv` of a PV that starts
/// at `pv_offset` in `image`, following the LV's segments.
pub fn place_in_lv(src: &Path, image: &Path, pv_offset: u64, lv: &LvPlacement) -> Result<()> {
    let len = std::fs::metadata(src)?.len();
    ensure!(
        len <= lv.size_bytes,
        "{} ({len} bytes) does not fit LV {} ({} bytes)",
        src.display(),
        lv.name,
        lv.size_bytes
    );
    let mut done = 0u64;
    for &(start, seg_len) in &lv.pv_ranges {
        if done >= len {
            break;
        }
        let n = seg_len.min(len - done);
        crate::disk::place_range(src, done, Some(n), image, pv_offset + start)?;
        done += n;
    }
    Ok(())
}

/// Reassembles an LV's bytes from `image` into a new file `out`.
pub fn extract_lv(image: &Path, pv_offset: u64, lv: &LvPlacement, out: &Path) -> Result<()> {
    crate::disk::create_sparse(out, lv.size_bytes)?;
    let mut done = 0u64;
    for &(start, seg_len) in &lv.pv_ranges {
        crate::disk::place_range(image, pv_offset + start, Some(seg_len), out, done)?;
        done += seg_len;
    }
    Ok(())
}
