//! LVM2 discovery on volume groups made by the real LVM tools on loop
//! devices (root only), without device-mapper: `pvcreate`, `vgcreate`,
//! `lvcreate -an -Zn` and `lvextend` with `--driverloaded n`, and
//! `vgcfgrestore --force` for LV types that cannot be created without
//! device-mapper. Results are judged against `pvs`/`vgs`/`lvs` reports and
//! `blkid -p`.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::*;
use rescue_io::BlockRead;
use rescue_volumes::{discover, Disk, ErrorKind, PartitionTable, Volume, VolumeKind};

const LVM_TOOLS: &[&str] = &[
    "losetup", "pvcreate", "vgcreate", "lvcreate", "lvextend", "lvs", "pvs", "vgs", "blkid",
];

fn lvm_ready(test: &str, extra: &[&str]) -> bool {
    let mut tools = LVM_TOOLS.to_vec();
    tools.extend_from_slice(extra);
    have_tools(test, &tools) && have_root(test)
}

/// One `lvs --segments` row.
#[derive(Debug, Clone)]
struct Segment {
    lv: String,
    lv_uuid: String,
    lv_size: u64,
    lv_attr: String,
    segtype: String,
    seg_start_pe: u64,
    /// (device, first PE, last PE) per stripe.
    ranges: Vec<(String, u64, u64)>,
}

/// Reports of one VG from the LVM tools themselves.
struct Report {
    vg_uuid: String,
    extent_size: u64,
    /// device -> (pv uuid, pe_start bytes)
    pvs: HashMap<String, (String, u64)>,
    segments: Vec<Segment>,
}

fn report(lvm: &Lvm, vg: &str) -> Report {
    let common = [
        "--noheadings",
        "--nameprefixes",
        "--units",
        "b",
        "--nosuffix",
    ];
    let mut args = common.to_vec();
    args.extend(["-o", "vg_uuid,vg_extent_size", vg]);
    let vgs = parse_pairs(lvm.run("vgs", &args).trim());
    let mut args = common.to_vec();
    args.extend(["-o", "pv_name,pv_uuid,pe_start,vg_name"]);
    let pvs = lvm
        .run("pvs", &args)
        .lines()
        .map(parse_pairs)
        .filter(|p| p["LVM2_VG_NAME"] == vg)
        .map(|p| {
            (
                p["LVM2_PV_NAME"].clone(),
                (
                    p["LVM2_PV_UUID"].clone(),
                    p["LVM2_PE_START"].parse().unwrap(),
                ),
            )
        })
        .collect();
    let mut args = common.to_vec();
    args.extend([
        "--segments",
        "-o",
        "lv_name,lv_uuid,lv_size,lv_attr,segtype,seg_start_pe,seg_pe_ranges",
        vg,
    ]);
    let segments = lvm
        .run("lvs", &args)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let p = parse_pairs(l);
            let ranges = p["LVM2_SEG_PE_RANGES"]
                .split_whitespace()
                .map(|r| {
                    let (dev, span) = r.rsplit_once(':').unwrap();
                    let (a, b) = span.split_once('-').unwrap();
                    (dev.to_string(), a.parse().unwrap(), b.parse().unwrap())
                })
                .collect();
            Segment {
                lv: p["LVM2_LV_NAME"].clone(),
                lv_uuid: p["LVM2_LV_UUID"].clone(),
                lv_size: p["LVM2_LV_SIZE"].parse().unwrap(),
                lv_attr: p["LVM2_LV_ATTR"].clone(),
                segtype: p["LVM2_SEGTYPE"].clone(),
                seg_start_pe: p["LVM2_SEG_START_PE"].parse().unwrap(),
                ranges,
            }
        })
        .collect();
    Report {
        vg_uuid: vgs["LVM2_VG_UUID"].clone(),
        extent_size: vgs["LVM2_VG_EXTENT_SIZE"].parse().unwrap(),
        pvs,
        segments,
    }
}

impl Report {
    /// LVs LVM reports as plain linear (and not snapshot stores).
    fn linear_lvs(&self) -> Vec<String> {
        let mut names: Vec<String> = self.segments.iter().map(|s| s.lv.clone()).collect();
        names.dedup();
        names.retain(|n| {
            self.segments
                .iter()
                .filter(|s| &s.lv == n)
                .all(|s| s.segtype == "linear" && !s.lv_attr.starts_with('s'))
        });
        names
    }
}

/// Copies `fs` into the LV `lv` segment by segment, at the places LVM
/// reports, where `pv_offsets` gives each loop device's offset in `img`.
fn write_into_lv(img: &Path, fs: &Path, lv: &str, rep: &Report, pv_offsets: &HashMap<String, u64>) {
    let data = std::fs::read(fs).unwrap();
    for seg in rep.segments.iter().filter(|s| s.lv == lv) {
        assert_eq!(seg.ranges.len(), 1, "linear segment");
        let (dev, first, last) = &seg.ranges[0];
        let (_, pe_start) = &rep.pvs[dev];
        let from = (seg.seg_start_pe * rep.extent_size) as usize;
        let len = ((last - first + 1) * rep.extent_size) as usize;
        let to = pv_offsets[dev] + pe_start + first * rep.extent_size;
        patch(img, to, &data[from..from + len]);
    }
}

fn volume<'a>(disk: &'a Disk, id: &str) -> &'a Volume {
    disk.volumes.iter().find(|v| v.id == id).unwrap_or_else(|| {
        panic!(
            "no {id}: {:?}",
            disk.volumes.iter().map(|v| &v.id).collect::<Vec<_>>()
        )
    })
}

fn lv_ids(disk: &Disk) -> Vec<String> {
    disk.volumes
        .iter()
        .filter(|v| v.id.starts_with("lvm/"))
        .map(|v| v.id.clone())
        .collect()
}

#[test]
fn linear_lvs_on_gpt_partitions_are_mapped() {
    if !lvm_ready(
        "linear_lvs_on_gpt_partitions",
        &["sgdisk", "sfdisk", "mke2fs"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("lvm-gpt.img");
    sparse(&img, 256 * MIB);
    run(
        "sgdisk",
        &[
            "-n1:0:+32M",
            "-t1:ef00",
            "-n2:0:+96M",
            "-t2:8e00",
            "-n3:0:+96M",
            "-t3:8e00",
            img.to_str().unwrap(),
        ],
    );
    let (_, parts) = sfdisk_parts(&sfdisk_json(&img));
    let (p2, p3) = (&parts[1], &parts[2]);
    let (rep, offsets) = {
        let l2 = Loop::attach(&img, p2.start_sector * 512, p2.sectors * 512, 512);
        let l3 = Loop::attach(&img, p3.start_sector * 512, p3.sectors * 512, 512);
        let lvm = Lvm::new(&dir.path().join("lvm"), &[&l2.dev, &l3.dev]);
        lvm.run("pvcreate", &["-q", &l2.dev, &l3.dev]);
        lvm.run("vgcreate", &["-q", "-s", "4M", "vgt", &l2.dev, &l3.dev]);
        lvm.run(
            "lvcreate",
            &[
                "-q", "-an", "-Zn", "-L", "12M", "-n", "root", "vgt", &l2.dev,
            ],
        );
        lvm.run(
            "lvcreate",
            &["-q", "-an", "-Zn", "-L", "8M", "-n", "data", "vgt", &l2.dev],
        );
        // Grow root onto the other PV: a two-segment LV across partitions.
        lvm.run("lvextend", &["-q", "-L", "+8M", "vgt/root", &l3.dev]);
        lvm.run(
            "lvcreate",
            &[
                "-q", "-an", "-Zn", "-i", "2", "-L", "8M", "-n", "str", "vgt",
            ],
        );
        let offsets: HashMap<String, u64> = [
            (l2.dev.clone(), p2.start_sector * 512),
            (l3.dev.clone(), p3.start_sector * 512),
        ]
        .into();
        (report(&lvm, "vgt"), offsets)
    };
    let root_segments = rep.segments.iter().filter(|s| s.lv == "root").count();
    assert_eq!(root_segments, 2, "root spans two segments");
    let root_size = rep
        .segments
        .iter()
        .find(|s| s.lv == "root")
        .unwrap()
        .lv_size;
    let fs = mkfs_file(
        dir.path(),
        "root.img",
        root_size,
        "mke2fs",
        &[
            "-q",
            "-t",
            "ext4",
            "-L",
            "lvroot",
            "-U",
            "5ca1ab1e-0000-4000-8000-00000000beef",
        ],
    );
    write_into_lv(&img, &fs, "root", &rep, &offsets);

    let disk = discover(open(&img)).unwrap();
    assert!(disk.diagnostics.is_empty(), "{:?}", disk.diagnostics);
    assert!(matches!(disk.table, PartitionTable::Gpt { .. }));
    // The PVs are probed like blkid does.
    for id in ["p2", "p3"] {
        let v = volume(&disk, id);
        assert_probe_eq_blkid(id, &v.probe, &blkid(&img, v.start_byte, v.size_in_bytes));
        let pv_uuid = v.probe.uuid.clone().unwrap();
        assert!(
            rep.pvs.values().any(|(u, _)| *u == pv_uuid),
            "{id}: {pv_uuid} not among pvs"
        );
    }
    // The VG as vgs reports it.
    assert_eq!(disk.volume_groups.len(), 1);
    let vg = &disk.volume_groups[0];
    assert_eq!(vg.name, "vgt");
    assert_eq!(vg.uuid, rep.vg_uuid);
    assert_eq!(vg.extent_size_in_bytes, rep.extent_size);
    assert_eq!(vg.physical_volumes, ["p2", "p3"]);
    // Linear LVs are volumes, the striped one is not.
    let mut expected: Vec<String> = rep
        .linear_lvs()
        .iter()
        .map(|n| format!("lvm/vgt/{n}"))
        .collect();
    let mut got = lv_ids(&disk);
    expected.sort();
    got.sort();
    assert_eq!(got, expected);
    let unmapped: Vec<&str> = vg.unmapped.iter().map(|d| d.subject.as_str()).collect();
    assert_eq!(unmapped, ["lvm/vgt/str"]);
    assert!(
        vg.unmapped[0].message.contains("striped over 2"),
        "{}",
        vg.unmapped[0].message
    );

    for seg in rep.segments.iter().filter(|s| s.segtype == "linear") {
        let v = volume(&disk, &format!("lvm/vgt/{}", seg.lv));
        assert_eq!(v.size_in_bytes, seg.lv_size);
        let VolumeKind::LogicalVolume { vg, lv, lv_uuid } = &v.kind else {
            panic!()
        };
        assert_eq!(
            (vg.as_str(), lv.as_str(), lv_uuid.as_str()),
            ("vgt", seg.lv.as_str(), seg.lv_uuid.as_str())
        );
        if seg.seg_start_pe == 0 {
            let (dev, first, _) = &seg.ranges[0];
            assert_eq!(
                v.start_byte,
                offsets[dev] + rep.pvs[dev].1 + first * rep.extent_size,
                "{}",
                v.id
            );
        }
    }
    // The root LV reads back exactly the filesystem written into it.
    let root = volume(&disk, "lvm/vgt/root");
    let mut bytes = vec![0u8; root.size_in_bytes as usize];
    root.device.read_exact_at(0, &mut bytes).unwrap();
    assert!(
        bytes == std::fs::read(&fs).unwrap(),
        "root LV content differs from the filesystem image"
    );
    // The write side's view, rebuilt from the extents over the disk, sees
    // the same bytes.
    let disk_rw: std::sync::Arc<dyn rescue_io::BlockWrite> =
        std::sync::Arc::new(rescue_io::RawFile::open_read_write(&img).unwrap());
    assert!(
        root.extents.len() >= 2,
        "root spans two segments: {:?}",
        root.extents
    );
    let mapped = rescue_io::MappedDevice::new(disk_rw, root.extents.clone(), "root").unwrap();
    assert_eq!(mapped.size_in_bytes(), root.size_in_bytes);
    let mut again = vec![0u8; bytes.len()];
    mapped.read_exact_at(0, &mut again).unwrap();
    assert!(
        again == bytes,
        "extents of the root LV do not map to its bytes"
    );
    assert_probe_eq_blkid("lvm/vgt/root", &root.probe, &blkid(&fs, 0, root_size));
    assert_eq!(volume(&disk, "lvm/vgt/data").probe.fstype, None);
}

/// A whole-disk PV with LVs `a` (16 MiB) and `b` (32 MiB) in VG `vgw`.
fn whole_disk_pv(dir: &Path) -> (PathBuf, Report) {
    let img = dir.join("pv.img");
    sparse(&img, 64 * MIB);
    let lo = Loop::attach(&img, 0, 0, 512);
    let lvm = Lvm::new(&dir.join("lvm"), &[&lo.dev]);
    lvm.run("pvcreate", &["-q", &lo.dev]);
    lvm.run("vgcreate", &["-q", "vgw", &lo.dev]);
    lvm.run(
        "lvcreate",
        &["-q", "-an", "-Zn", "-L", "16M", "-n", "a", "vgw"],
    );
    lvm.run(
        "lvcreate",
        &["-q", "-an", "-Zn", "-L", "32M", "-n", "b", "vgw"],
    );
    (img.clone(), report(&lvm, "vgw"))
}

#[test]
fn whole_disk_pv_and_lvm_metadata_pointing_outside_the_pv() {
    if !lvm_ready("whole_disk_pv_and_truncation", &[]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (img, rep) = whole_disk_pv(dir.path());
    let disk = discover(open(&img)).unwrap();
    assert!(matches!(disk.table, PartitionTable::None));
    let whole = volume(&disk, "disk");
    assert!(matches!(whole.kind, VolumeKind::WholeDisk));
    assert_probe_eq_blkid("disk", &whole.probe, &blkid(&img, 0, 64 * MIB));
    assert_eq!(lv_ids(&disk), ["lvm/vgw/a", "lvm/vgw/b"]);
    assert_eq!(disk.volume_groups[0].physical_volumes, ["disk"]);
    for seg in &rep.segments {
        assert_eq!(
            volume(&disk, &format!("lvm/vgw/{}", seg.lv)).size_in_bytes,
            seg.lv_size
        );
    }

    // Truncate the image in the middle of LV b: its extents now point
    // outside the PV.
    let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.set_len(40 * MIB).unwrap();
    let err = discover(open(&img)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    let msg = err.to_string();
    eprintln!("truncated PV: {msg}");
    assert!(
        msg.contains("logical volume vgw/b") && msg.contains("outside the PV"),
        "{msg}"
    );
    let b = rep.segments.iter().find(|s| s.lv == "b").unwrap();
    let b_start = rep.pvs.values().next().unwrap().1 + b.ranges[0].1 * rep.extent_size;
    assert!(msg.contains(&format!("at offset {b_start:#x}")), "{msg}");
    assert!(!msg.contains('\n'));
}

/// LVM2's metadata checksum, written independently of the crate.
fn lvm_crc(data: &[u8]) -> u32 {
    let mut crc: u32 = 0xf597_a6cf;
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
    crc
}

/// Rewrites the current metadata text of the PV at the start of `img` with
/// `edit`, updating sizes and checksums so LVM itself would accept it.
fn rewrite_metadata(img: &Path, edit: impl Fn(&str) -> String) {
    let label = read_at(img, 512, 512);
    assert_eq!(&label[..8], b"LABELONE");
    let le64 = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    let offset_xl = u32::from_le_bytes(label[20..24].try_into().unwrap()) as usize;
    let mut pos = offset_xl + 40;
    while le64(&label, pos) != 0 {
        pos += 16;
    }
    pos += 16;
    let mda_start = le64(&label, pos);
    let mda_size = le64(&label, pos + 8);
    let mut header = read_at(img, mda_start, 512);
    let (text_off, text_len) = (le64(&header, 40), le64(&header, 48));
    assert!(
        text_off + text_len <= mda_size,
        "test helper does not handle wrapped text"
    );
    let text = read_at(img, mda_start + text_off, text_len as usize);
    let mut new = edit(std::str::from_utf8(&text).unwrap().trim_end_matches('\0')).into_bytes();
    new.push(0);
    assert!(text_off + new.len() as u64 <= mda_size);
    patch(img, mda_start + text_off, &new);
    header[48..56].copy_from_slice(&(new.len() as u64).to_le_bytes());
    header[56..60].copy_from_slice(&lvm_crc(&new).to_le_bytes());
    let crc = lvm_crc(&header[4..512]);
    header[0..4].copy_from_slice(&crc.to_le_bytes());
    patch(img, mda_start, &header);
}

#[test]
fn lvm_metadata_extent_outside_the_pv_is_an_error_naming_the_lv() {
    if !lvm_ready("lvm_metadata_extent_outside_the_pv", &["pvck"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (img, _) = whole_disk_pv(dir.path());
    // LV a starts at extent 0; move it to extent 900 of a 15-extent PV.
    rewrite_metadata(&img, |t| {
        let i = t.find("a {").unwrap();
        let j = i + t[i..].find("\"pv0\", 0").unwrap();
        format!("{}\"pv0\", 900{}", &t[..j], &t[j + "\"pv0\", 0".len()..])
    });
    // The edit is well formed for LVM itself: pvck finds valid metadata.
    let lo = Loop::attach(&img, 0, 0, 512);
    let out = try_run(
        "pvck",
        &["--dump", "metadata", &lo.dev],
        None,
        &[("LVM_SUPPRESS_FD_WARNINGS", "1")],
    );
    drop(lo);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"pv0\", 900"),
        "pvck: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = discover(open(&img)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    let msg = err.to_string();
    eprintln!("bad extent: {msg}");
    assert!(
        msg.contains("logical volume vgw/a") && msg.contains("900"),
        "{msg}"
    );
    assert!(msg.contains("points outside physical volume disk"), "{msg}");
}

#[test]
fn lvs_on_another_disk_and_non_linear_lvs_are_unmapped() {
    if !lvm_ready(
        "lvs_on_another_disk",
        &["vgcfgbackup", "vgcfgrestore", "mke2fs"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.img");
    let b = dir.path().join("b.img");
    sparse(&a, 64 * MIB);
    sparse(&b, 64 * MIB);
    let rep = {
        let la = Loop::attach(&a, 0, 0, 512);
        let lb = Loop::attach(&b, 0, 0, 512);
        let lvm = Lvm::new(&dir.path().join("lvm"), &[&la.dev, &lb.dev]);
        lvm.run("pvcreate", &["-q", &la.dev, &lb.dev]);
        lvm.run("vgcreate", &["-q", "vgx", &la.dev, &lb.dev]);
        lvm.run(
            "lvcreate",
            &["-q", "-an", "-Zn", "-L", "8M", "-n", "ona", "vgx", &la.dev],
        );
        lvm.run(
            "lvcreate",
            &["-q", "-an", "-Zn", "-L", "8M", "-n", "onb", "vgx", &lb.dev],
        );
        // Thin pool, thin volume and a snapshot need device-mapper to
        // create; vgcfgrestore --force writes them from text instead.
        let backup = dir.path().join("vgx.txt");
        lvm.run(
            "vgcfgbackup",
            &["-q", "-f", backup.to_str().unwrap(), "vgx"],
        );
        let text = std::fs::read_to_string(&backup).unwrap();
        let end = text.rfind("\t}\n\n}").expect("end of logical_volumes");
        let restored = format!("{}{}{}", &text[..end], EXTRA_LVS, &text[end..]);
        std::fs::write(&backup, restored).unwrap();
        lvm.run(
            "vgcfgrestore",
            &["-q", "--force", "-f", backup.to_str().unwrap(), "vgx"],
        );
        report(&lvm, "vgx")
    };
    let fs = mkfs_file(
        dir.path(),
        "ona.img",
        8 * MIB,
        "mke2fs",
        &["-q", "-t", "ext4", "-L", "ona"],
    );
    let ona = rep.segments.iter().find(|s| s.lv == "ona").unwrap();
    let pe_start = rep.pvs.values().next().unwrap().1;
    place(&a, pe_start + ona.ranges[0].1 * rep.extent_size, &fs);

    let disk = discover(open(&a)).unwrap();
    assert!(disk.diagnostics.is_empty(), "{:?}", disk.diagnostics);
    let vg = &disk.volume_groups[0];
    assert_eq!(vg.physical_volumes, ["disk"]);
    // Only the linear LV on this disk is a volume.
    assert_eq!(lv_ids(&disk), ["lvm/vgx/ona"]);
    assert_eq!(
        volume(&disk, "lvm/vgx/ona").probe.label.as_deref(),
        Some("ona")
    );
    let reasons: HashMap<&str, &str> = vg
        .unmapped
        .iter()
        .map(|d| (d.subject.as_str(), d.message.as_str()))
        .collect();
    assert!(
        reasons["lvm/vgx/onb"].contains("not on this disk"),
        "{reasons:?}"
    );
    assert!(reasons["lvm/vgx/pool"].contains("thin-pool"), "{reasons:?}");
    assert!(
        reasons["lvm/vgx/thin1"].contains("type thin"),
        "{reasons:?}"
    );
    assert!(reasons["lvm/vgx/snap"].contains("snapshot"), "{reasons:?}");
    // Every visible LV LVM reports is either a volume or unmapped.
    let mut lvs: Vec<String> = rep
        .segments
        .iter()
        .filter(|s| !s.lv.starts_with('['))
        .map(|s| format!("lvm/vgx/{}", s.lv))
        .collect();
    lvs.dedup();
    let mut seen: Vec<String> = lv_ids(&disk)
        .into_iter()
        .chain(vg.unmapped.iter().map(|d| d.subject.clone()))
        .collect();
    lvs.sort();
    seen.sort();
    assert_eq!(seen, lvs);

    // From the other disk, the picture is mirrored.
    let disk_b = discover(open(&b)).unwrap();
    assert_eq!(lv_ids(&disk_b), ["lvm/vgx/onb"]);
}

#[test]
fn metadata_text_wrapping_around_the_metadata_area_is_read() {
    if !lvm_ready("metadata_text_wrapping", &["vgchange"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("wrap.img");
    sparse(&img, 128 * MIB);
    let le64 = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    let (rep, wrapped_at) = {
        let lo = Loop::attach(&img, 0, 0, 512);
        let lvm = Lvm::new(&dir.path().join("lvm"), &[&lo.dev]);
        lvm.run("pvcreate", &["-q", &lo.dev]);
        lvm.run("vgcreate", &["-q", "vgwrap", &lo.dev]);
        // Long tags make every metadata write ~100 KB, so a few updates walk
        // the circular buffer round its end.
        let tags: Vec<String> = (0..900).map(|i| format!("t{i:0>100}")).collect();
        let mut args = vec!["-q"];
        for t in &tags {
            args.extend(["--addtag", t.as_str()]);
        }
        args.push("vgwrap");
        lvm.run("vgchange", &args);
        let mut wrapped_at = None;
        for i in 0..40 {
            lvm.run(
                "lvcreate",
                &[
                    "-q",
                    "-an",
                    "-Zn",
                    "-L",
                    "4M",
                    "-n",
                    &format!("lv{i}"),
                    "vgwrap",
                ],
            );
            // The first metadata area header follows the label at 4 KiB.
            let h = read_at(&img, 4096, 512);
            let (mda_size, off, len) = (le64(&h, 32), le64(&h, 40), le64(&h, 48));
            if off + len > mda_size {
                wrapped_at = Some(off);
                break;
            }
        }
        (report(&lvm, "vgwrap"), wrapped_at)
    };
    assert!(wrapped_at.is_some(), "LVM never wrapped its metadata text");
    let disk = discover(open(&img)).unwrap();
    assert!(disk.diagnostics.is_empty(), "{:?}", disk.diagnostics);
    let mut expected: Vec<String> = rep
        .linear_lvs()
        .iter()
        .map(|n| format!("lvm/vgwrap/{n}"))
        .collect();
    let mut got = lv_ids(&disk);
    expected.sort();
    got.sort();
    assert_eq!(got, expected);
    assert_eq!(disk.volume_groups[0].uuid, rep.vg_uuid);
}

/// LVs appended to a `vgcfgbackup` text: a thin pool with its hidden data
/// and metadata LVs, a thin LV, and an old-style snapshot of `ona`.
const EXTRA_LVS: &str = r#"
		pool {
			id = "aaaaaa-bbbb-cccc-dddd-eeee-ffff-000001"
			status = ["READ", "WRITE", "VISIBLE"]
			flags = []
			segment_count = 1
			segment1 {
				start_extent = 0
				extent_count = 1
				type = "thin-pool"
				metadata = "pool_tmeta"
				pool = "pool_tdata"
				transaction_id = 1
				chunk_size = 128
				discards = "passdown"
				zero_new_blocks = 1
			}
		}
		thin1 {
			id = "aaaaaa-bbbb-cccc-dddd-eeee-ffff-000002"
			status = ["READ", "WRITE", "VISIBLE"]
			flags = []
			segment_count = 1
			segment1 {
				start_extent = 0
				extent_count = 2
				type = "thin"
				thin_pool = "pool"
				transaction_id = 0
				device_id = 1
			}
		}
		pool_tmeta {
			id = "aaaaaa-bbbb-cccc-dddd-eeee-ffff-000003"
			status = ["READ", "WRITE"]
			flags = []
			segment_count = 1
			segment1 {
				start_extent = 0
				extent_count = 1
				type = "striped"
				stripe_count = 1
				stripes = [
					"pv0", 5
				]
			}
		}
		pool_tdata {
			id = "aaaaaa-bbbb-cccc-dddd-eeee-ffff-000004"
			status = ["READ", "WRITE"]
			flags = []
			segment_count = 1
			segment1 {
				start_extent = 0
				extent_count = 1
				type = "striped"
				stripe_count = 1
				stripes = [
					"pv0", 6
				]
			}
		}
		snap {
			id = "aaaaaa-bbbb-cccc-dddd-eeee-ffff-000005"
			status = ["READ", "WRITE", "VISIBLE"]
			flags = []
			segment_count = 1
			segment1 {
				start_extent = 0
				extent_count = 1
				type = "striped"
				stripe_count = 1
				stripes = [
					"pv0", 7
				]
			}
		}
		snapshot0 {
			id = "aaaaaa-bbbb-cccc-dddd-eeee-ffff-000006"
			status = ["READ"]
			flags = []
			segment_count = 1
			segment1 {
				start_extent = 0
				extent_count = 2
				type = "snapshot"
				chunk_size = 8
				origin = "ona"
				cow_store = "snap"
			}
		}
"#;
