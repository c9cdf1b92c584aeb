//! `rescue-disk inspect --json` on every fixture layout, raw and qcow2,
//! compared with what the oracles recorded when the fixture was built:
//! `sfdisk --json` for the partition table, `blkid -p` for every volume,
//! `lvs`/`pvs` for LVM, and the recipe for the guest.

mod support;

use serde_json::Value;
use support::*;
use xtask::Format;

/// Our volume id for an expect document's volume id.
fn volume_id(id: &Value) -> String {
    match id["kind"].as_str().expect("id kind") {
        "partition" => format!("p{}", id["number"]),
        "lv" => format!(
            "lvm/{}/{}",
            id["vg"].as_str().unwrap(),
            id["lv"].as_str().unwrap()
        ),
        "whole-disk" => "disk".to_owned(),
        other => panic!("unknown expect volume kind {other}"),
    }
}

fn find_volume<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["volumes"]
        .as_array()
        .expect("volumes array")
        .iter()
        .find(|v| v["id"] == id)
        .unwrap_or_else(|| panic!("volume {id} missing from report: {:#}", report["volumes"]))
}

/// Optional string field of a JSON object, treating null and absent alike.
fn opt_str(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

fn check_partition_table(layout: &str, report: &Value, expect: &Value) {
    let table = &report["partition_table"];
    let Some(sfdisk) = expect["partition_table"]["partitiontable"].as_object() else {
        assert_eq!(
            table["type"], "none",
            "{layout}: expected no partition table"
        );
        return;
    };
    let sector = sfdisk["sectorsize"].as_u64().unwrap();
    match sfdisk["label"].as_str().unwrap() {
        "gpt" => {
            assert_eq!(table["type"], "gpt", "{layout}");
            assert!(
                table["disk_guid"]
                    .as_str()
                    .unwrap()
                    .eq_ignore_ascii_case(sfdisk["id"].as_str().unwrap()),
                "{layout}: disk guid"
            );
            assert_eq!(table["logical_block_size"].as_u64(), Some(sector));
            assert_eq!(table["used_backup"], false);
        }
        "dos" => {
            assert_eq!(table["type"], "mbr", "{layout}");
            assert_eq!(
                table["disk_signature"], sfdisk["id"],
                "{layout}: disk signature"
            );
        }
        other => panic!("unexpected label {other}"),
    }
    let partitions = sfdisk["partitions"].as_array().unwrap();
    let ours: Vec<&Value> = report["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| {
            v["kind"]["type"]
                .as_str()
                .is_some_and(|t| t.ends_with("_partition"))
        })
        .collect();
    assert_eq!(
        ours.len(),
        partitions.len(),
        "{layout}: number of partitions"
    );
    for p in partitions {
        let node = p["node"].as_str().unwrap();
        let number: u32 = node
            .rsplit(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let v = find_volume(report, &format!("p{number}"));
        assert_eq!(
            v["start_byte"].as_u64(),
            Some(p["start"].as_u64().unwrap() * sector),
            "{layout} p{number} start"
        );
        assert_eq!(
            v["size_in_bytes"].as_u64(),
            Some(p["size"].as_u64().unwrap() * sector),
            "{layout} p{number} size"
        );
        let kind = &v["kind"];
        match kind["type"].as_str().unwrap() {
            "gpt_partition" => {
                assert!(kind["type_guid"]
                    .as_str()
                    .unwrap()
                    .eq_ignore_ascii_case(p["type"].as_str().unwrap()));
                assert!(kind["partuuid"]
                    .as_str()
                    .unwrap()
                    .eq_ignore_ascii_case(p["uuid"].as_str().unwrap()));
                assert_eq!(
                    kind["partlabel"].as_str().unwrap(),
                    p["name"].as_str().unwrap_or("")
                );
            }
            "mbr_partition" => {
                let want = format!("0x{}", p["type"].as_str().unwrap());
                assert_eq!(
                    kind["type_id"].as_str().unwrap(),
                    want,
                    "{layout} p{number} type"
                );
                assert_eq!(
                    kind["bootable"].as_bool().unwrap(),
                    p["bootable"].as_bool().unwrap_or(false)
                );
            }
            other => panic!("{other}"),
        }
    }
}

fn check_volumes(layout: &str, report: &Value, expect: &Value) {
    for ev in expect["volumes"].as_array().unwrap() {
        let id = volume_id(&ev["id"]);
        let v = find_volume(report, &id);
        assert_eq!(v["start_byte"], ev["start_byte"], "{layout} {id} start");
        assert_eq!(v["size_in_bytes"], ev["size_bytes"], "{layout} {id} size");
        let blkid = &ev["blkid"];
        let probe = &v["probe"];
        assert_eq!(
            opt_str(&probe["fstype"]),
            opt_str(&blkid["TYPE"]),
            "{layout} {id} TYPE"
        );
        assert_eq!(
            opt_str(&probe["uuid"]),
            opt_str(&blkid["UUID"]),
            "{layout} {id} UUID"
        );
        assert_eq!(
            opt_str(&probe["label"]),
            opt_str(&blkid["LABEL"]),
            "{layout} {id} LABEL"
        );
        if blkid["TYPE"] == "vfat" {
            assert_eq!(
                opt_str(&probe["version"]),
                opt_str(&blkid["VERSION"]),
                "{layout} {id} FAT VERSION"
            );
        }
        if let Some(pu) = ev["part_uuid"].as_str() {
            let ours = v["kind"]["partuuid"].as_str().unwrap_or_default();
            assert!(
                ours.eq_ignore_ascii_case(pu),
                "{layout} {id} PARTUUID {ours} != {pu}"
            );
        }
    }
    // Nothing invented: every filesystem we report is one the oracle saw.
    let expected_ids: Vec<String> = expect["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| volume_id(&v["id"]))
        .collect();
    for v in report["volumes"].as_array().unwrap() {
        let id = v["id"].as_str().unwrap();
        assert!(
            expected_ids.iter().any(|e| e == id),
            "{layout}: unexpected volume {id}"
        );
    }
    if let Some(pvs) = expect["lvm"]["pvs"]["report"][0]["pv"].as_array() {
        let vgs = report["volume_groups"].as_array().unwrap();
        for pv in pvs {
            let vg = vgs
                .iter()
                .find(|g| g["name"] == pv["vg_name"])
                .expect("volume group reported");
            assert_eq!(vg["uuid"], pv["vg_uuid"]);
            assert_eq!(
                vg["extent_size_in_bytes"].as_u64().unwrap().to_string(),
                pv["vg_extent_size"].as_str().unwrap()
            );
        }
    }
}

fn check_layout(layout: &str, format: Format) {
    if !layout_available(layout) {
        return;
    }
    let image = xtask::fixture(layout, format).expect("building fixture");
    let expect = xtask::expect(layout).expect("expect document");
    let report = inspect_json(&image);
    assert_eq!(report["schema"], "rescue-disk/inspect");
    assert_eq!(report["schema_version"], 1);
    assert_eq!(report["target"]["format"], format.extension());
    assert_eq!(
        report["target"]["size_in_bytes"],
        expect["image"]["size_bytes"]
    );
    check_partition_table(layout, &report, &expect);
    check_volumes(layout, &report, &expect);
    guest::check_guest(layout, &report, &expect);
}

#[path = "inspect/guest.rs"]
mod guest;

macro_rules! layout_tests {
    ($($name:ident: $layout:literal,)*) => {
        $(
            mod $name {
                use super::*;
                #[test]
                fn raw() { check_layout($layout, Format::Raw) }
                #[test]
                fn qcow2() { check_layout($layout, Format::Qcow2) }
            }
        )*
    };
}

layout_tests! {
    gpt_debian: "gpt-debian",
    mbr_rhel: "mbr-rhel",
    whole_ext4: "whole-ext4",
    lvm_rhel: "lvm-rhel",
    overlay: "overlay",
}

/// Detaches a loop device when dropped, even if the test fails.
struct LoopDevice(String);

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = std::process::Command::new("losetup")
            .arg("-d")
            .arg(&self.0)
            .status();
    }
}

/// A block device is read like an image file; its size comes from the
/// device (stat reports 0 for devices). Needs root for `losetup`.
#[test]
fn block_device_reads_like_the_image_file() {
    if !layout_available("gpt-debian") {
        return;
    }
    if !is_root() {
        assert!(
            !xtask::require_tools(),
            "this test needs root for losetup (RESCUE_REQUIRE_TOOLS=1)"
        );
        eprintln!("SKIPPED: block device test needs root for losetup");
        return;
    }
    let image = xtask::fixture("gpt-debian", Format::Raw).unwrap();
    let out = std::process::Command::new("losetup")
        .args(["--find", "--show", "--read-only"])
        .arg(&image)
        .output()
        .expect("losetup");
    assert!(
        out.status.success(),
        "losetup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dev = LoopDevice(String::from_utf8(out.stdout).unwrap().trim().to_owned());
    let from_device = inspect_json(std::path::Path::new(&dev.0));
    let from_file = inspect_json(&image);
    assert_eq!(from_device["target"]["source"], "block_device");
    assert_eq!(
        from_device["target"]["size_in_bytes"],
        from_file["target"]["size_in_bytes"]
    );
    assert_eq!(from_device["volumes"], from_file["volumes"]);
    assert_eq!(from_device["guest"], from_file["guest"]);
}
