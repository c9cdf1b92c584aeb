//! Guest half of the inspect comparison: root, OS, kernels, bootloader and
//! fstab against what the fixture recipe says the guest is.

use serde_json::Value;

use super::volume_id;

fn kernel_matches(ours: &Value, want: &Value) -> bool {
    ours["version"] == want["version"]
        && ours["complete"] == want["complete"]
        && ours["vmlinuz"]["path"] == want["vmlinuz"]
        && ours["initrd"]["path"] == want["initrd"]
        && ours["modules_dir"] == want["modules_dir"]
}

fn check_kernels(layout: &str, ours: &[Value], want: &Value, rescue: bool) {
    let ours: Vec<&Value> = ours.iter().filter(|k| k["rescue"] == rescue).collect();
    let want = want.as_array().cloned().unwrap_or_default();
    assert_eq!(
        ours.len(),
        want.len(),
        "{layout}: kernels (rescue={rescue}): {ours:#?}"
    );
    for w in &want {
        assert!(
            ours.iter().any(|k| kernel_matches(k, w)),
            "{layout}: kernel {w:#} not reported as such; ours: {ours:#?}"
        );
    }
}

pub fn check_guest(layout: &str, report: &Value, expect: &Value) {
    let g = &report["guest"];
    let e = &expect["guest"];
    assert_eq!(
        g["root"]["volume_id"],
        volume_id(&e["root_volume"]).as_str(),
        "{layout}: root"
    );
    assert_eq!(g["os"]["id"], e["os_release"]["ID"], "{layout}: os id");
    assert_eq!(
        g["os"]["version_id"], e["os_release"]["VERSION_ID"],
        "{layout}: version"
    );
    assert_eq!(
        g["os"]["pretty_name"], e["os_release"]["PRETTY_NAME"],
        "{layout}: pretty name"
    );
    assert_eq!(g["hostname"], e["hostname"], "{layout}: hostname");

    let kernels = g["kernels"].as_array().expect("kernels");
    check_kernels(layout, kernels, &e["kernels"], false);
    check_kernels(layout, kernels, &e["rescue_kernels"], true);

    let boot = &g["bootloader"];
    assert_eq!(
        boot["default_entry"]["kernel_version"], e["default_kernel"],
        "{layout}: default kernel"
    );
    let eb = &e["bootloader"];
    let firmware: Vec<&str> = eb["firmware"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    let bios =
        !boot["bios"]["bios_boot_partition"].is_null() || boot["bios"]["mbr_boot_code"] == "grub";
    assert_eq!(
        bios,
        firmware.contains(&"bios"),
        "{layout}: BIOS boot {:#}",
        boot["bios"]
    );
    assert_eq!(
        !boot["efi"].is_null(),
        firmware.contains(&"uefi"),
        "{layout}: UEFI boot"
    );
    assert_eq!(
        boot["grub_cfg"]["guest_path"], eb["grub_cfg"],
        "{layout}: grub.cfg"
    );
    assert_eq!(
        boot["grubenv"]["guest_path"], eb["grubenv"],
        "{layout}: grubenv"
    );
    let mut bls: Vec<String> = boot["bls_entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["file"].as_str().unwrap().to_owned())
        .collect();
    bls.sort();
    let mut want_bls: Vec<String> = eb["bls_entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_str().unwrap().to_owned())
        .collect();
    want_bls.sort();
    assert_eq!(bls, want_bls, "{layout}: BLS entries");
    if let Some(stub) = eb["efi_stub"].as_str() {
        let found = boot["efi"]["vendors"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v["grub_cfg"]["path"].as_str())
            .any(|p| format!("/boot/efi{p}") == stub || p == stub);
        assert!(
            found,
            "{layout}: EFI stub grub.cfg {stub} not reported: {:#}",
            boot["efi"]
        );
    }

    let fstab = g["fstab"].as_array().expect("fstab");
    let want = e["fstab"].as_array().unwrap();
    assert_eq!(fstab.len(), want.len(), "{layout}: fstab lines {fstab:#?}");
    for (ours, w) in fstab.iter().zip(want) {
        assert_eq!(ours["source"], w["source"], "{layout}: fstab source");
        assert_eq!(
            ours["mount_point"], w["mount_point"],
            "{layout}: fstab mount point"
        );
        assert_eq!(ours["fstype"], w["fs_type"], "{layout}: fstab type");
        let want_volume = if w["volume"].is_null() {
            Value::Null
        } else {
            Value::from(volume_id(&w["volume"]))
        };
        assert_eq!(
            ours["resolution"]["volume_id"], want_volume,
            "{layout}: fstab {} resolves",
            w["source"]
        );
    }
}
