//! `<layout>.expect.json`: what a correct reader must find on a fixture.
//!
//! Two sources, kept apart in the document:
//! - **oracles** (`sfdisk --json`, `blkid -p -o export` at each volume's
//!   offset, `pvs`/`lvs` JSON for LVM), run on the finished raw image:
//!   partition tables, filesystem types, UUIDs, labels;
//! - **recipe** facts read from the staged tree the image was built from:
//!   distribution, kernels, default kernel, bootloader files, fstab, and the
//!   volume each fstab line must resolve to.
//!
//! Schema (version 1):
//! ```text
//! { "schema": 1, "layout", "image": {"file", "size_bytes"},
//!   "partition_table": <sfdisk --json, device paths reduced to file names> | null,
//!   "disk_blkid": {KEY: VALUE} (blkid -p on the whole image),
//!   "lvm": {"pvs": .., "lvs": ..} | null,
//!   "volumes": [{"id": {"kind": "partition", "number": 1} | {"kind": "lv", "vg", "lv"}
//!                      | {"kind": "whole-disk"},
//!                "start_byte", "size_bytes", "extents": [[start, len], ..],
//!                "mount_point": "/" | "swap" | null, "blkid": {KEY: VALUE},
//!                "part_uuid": GPT unique GUID | MBR "<signature>-<nn>" (partitions only)}],
//!   "guest": {"root_volume": <id>, "os_release": {..}, "hostname",
//!             "kernels": [{"version", "vmlinuz", "initrd", "modules_dir", "complete"}],
//!             "rescue_kernels": [..], "default_kernel",
//!             "bootloader": {"kind", "firmware", "grub_cfg", "grubenv",
//!                            "efi_stub", "bls_entries"},
//!             "fstab": [{"source", "mount_point", "fs_type", "options", "volume"}]} }
//! ```
//!
//! Must never: put a host path or a temporary name into the document (it
//! must be identical between two builds).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{json, Map, Value};

use crate::layout::{BuildOutput, BuiltVolume, VolumeId};
use crate::tools;
use crate::tree::StagedTree;

/// Schema version of the expect documents.
pub const SCHEMA: u64 = 1;

/// Runs `blkid -p -o export` on `image` at `offset` (size `size`) and
/// returns its key/values without DEVNAME; empty when blkid finds nothing.
pub fn blkid(image: &Path, offset: u64, size: u64) -> Result<BTreeMap<String, String>> {
    let mut c = tools::cmd("blkid")?;
    c.args(["-c", "/dev/null", "-p", "-o", "export", "-O"])
        .arg(offset.to_string())
        .arg("-S")
        .arg(size.to_string())
        .arg(image);
    let out = c
        .stdin(std::process::Stdio::null())
        .output()
        .context("starting blkid")?;
    // Exit status 2: no signature found (an empty BIOS boot partition).
    if out.status.code() == Some(2) {
        return Ok(BTreeMap::new());
    }
    anyhow::ensure!(
        out.status.success(),
        "running blkid -p on {} at offset {offset:#x}: {}: {}",
        image.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| *k != "DEVNAME")
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// `sfdisk --json` of the image, or `None` when it has no partition table.
fn sfdisk_json(image: &Path) -> Result<Option<Value>> {
    let out = tools::cmd("sfdisk")?
        .arg("--json")
        .arg(image)
        .stdin(std::process::Stdio::null())
        .output()
        .context("starting sfdisk")?;
    if !out.status.success() || out.stdout.is_empty() {
        return Ok(None);
    }
    let mut v: Value = serde_json::from_slice(&out.stdout).context("parsing sfdisk --json")?;
    let full = image.to_string_lossy().into_owned();
    let name = image
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    replace_prefix(&mut v, &full, &name);
    Ok(Some(v))
}

fn replace_prefix(v: &mut Value, from: &str, to: &str) {
    match v {
        Value::String(s) if s.starts_with(from) => *s = format!("{to}{}", &s[from.len()..]),
        Value::Array(a) => a.iter_mut().for_each(|x| replace_prefix(x, from, to)),
        Value::Object(o) => o.values_mut().for_each(|x| replace_prefix(x, from, to)),
        _ => {}
    }
}

/// Recipe facts about the guest, read from the staged tree before it is
/// split into volumes.
pub struct GuestFacts(Value);

fn parse_os_release(text: &str) -> Map<String, Value> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|x| x.strip_suffix('"'))
                .unwrap_or(v);
            (k.trim().to_string(), Value::String(v.to_string()))
        })
        .collect()
}

fn nonempty(staged: &StagedTree, rel: &str) -> bool {
    staged
        .resolve(rel)
        .and_then(|p| std::fs::metadata(p).ok())
        .is_some_and(|m| if m.is_dir() { true } else { m.len() > 0 })
}

fn dir_nonempty(staged: &StagedTree, rel: &str) -> bool {
    staged
        .resolve(rel)
        .and_then(|p| std::fs::read_dir(p).ok())
        .is_some_and(|mut d| d.next().is_some())
}

/// Orders kernel versions newest first ("6.1.0-28" after "6.1.0-9").
fn version_key(v: &str) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut num = String::new();
    let mut text = String::new();
    for c in v.chars() {
        if c.is_ascii_digit() {
            if !text.is_empty() {
                out.push((0, std::mem::take(&mut text)));
            }
            num.push(c);
        } else {
            if !num.is_empty() {
                out.push((num.parse().unwrap_or(u64::MAX), String::new()));
                num.clear();
            }
            text.push(c);
        }
    }
    if !num.is_empty() {
        out.push((num.parse().unwrap_or(u64::MAX), String::new()));
    }
    if !text.is_empty() {
        out.push((0, text));
    }
    out
}

impl GuestFacts {
    /// Reads the facts from `staged`; `firmware` comes from the layout.
    pub fn read(staged: &StagedTree, firmware: &[&str]) -> Result<GuestFacts> {
        let os_release = parse_os_release(&staged.read_to_string("etc/os-release")?);
        let hostname = staged
            .read_to_string("etc/hostname")
            .map(|s| s.trim().to_string())
            .ok();
        let rhel_like = staged.resolve("etc/redhat-release").is_some();

        let mut versions = Vec::new();
        if let Ok(rd) = std::fs::read_dir(staged.path("boot")?) {
            for e in rd.flatten() {
                if let Some(v) = e
                    .file_name()
                    .to_str()
                    .and_then(|n| n.strip_prefix("vmlinuz-"))
                {
                    versions.push(v.to_string());
                }
            }
        }
        versions.sort_by_key(|v| std::cmp::Reverse(version_key(v)));
        let mut kernels = Vec::new();
        let mut rescue = Vec::new();
        for v in versions {
            let vmlinuz = format!("boot/vmlinuz-{v}");
            let initrd = if rhel_like {
                format!("boot/initramfs-{v}.img")
            } else {
                format!("boot/initrd.img-{v}")
            };
            let modules = format!("lib/modules/{v}");
            let has_initrd = nonempty(staged, &initrd);
            let has_modules = dir_nonempty(staged, &modules);
            // A rescue kernel (dracut's `0-rescue-<machine-id>`) carries every
            // driver in its host-independent initramfs and has no modules
            // directory of its own: it is bootable without one.
            let is_rescue = v.starts_with("0-rescue-");
            let k = json!({
                "version": v,
                "vmlinuz": format!("/{vmlinuz}"),
                "initrd": if has_initrd { Value::String(format!("/{initrd}")) } else { Value::Null },
                "modules_dir": if has_modules { Value::String(format!("/{modules}")) } else { Value::Null },
                "complete": nonempty(staged, &vmlinuz) && has_initrd && (has_modules || is_rescue),
            });
            if is_rescue {
                rescue.push(k);
            } else {
                kernels.push(k);
            }
        }

        let grub_cfg = ["boot/grub/grub.cfg", "boot/grub2/grub.cfg"]
            .into_iter()
            .find(|p| staged.resolve(p).is_some_and(|h| h.is_file()));
        let grubenv = ["boot/grub/grubenv", "boot/grub2/grubenv"]
            .into_iter()
            .find(|p| staged.resolve(p).is_some_and(|h| h.is_file()));
        let mut bls: Vec<String> = std::fs::read_dir(staged.path("boot/loader/entries")?)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().to_str().map(str::to_string))
                    .filter(|n| n.ends_with(".conf"))
                    .map(|n| format!("/boot/loader/entries/{n}"))
                    .collect()
            })
            .unwrap_or_default();
        bls.sort();
        let efi_stub = staged
            .resolve("boot/efi/EFI")
            .and_then(|efi| std::fs::read_dir(efi).ok())
            .and_then(|rd| {
                let mut stubs: Vec<String> = rd
                    .flatten()
                    .filter_map(|e| e.file_name().to_str().map(str::to_string))
                    .filter(|d| {
                        staged
                            .resolve(&format!("boot/efi/EFI/{d}/grub.cfg"))
                            .is_some()
                    })
                    .map(|d| format!("/boot/efi/EFI/{d}/grub.cfg"))
                    .collect();
                stubs.sort();
                stubs.into_iter().next()
            });

        let default_kernel = if bls.is_empty() {
            // update-grub: `set default="0"` and the first menuentry boots.
            grub_cfg
                .and_then(|p| staged.read_to_string(p).ok())
                .and_then(|cfg| {
                    cfg.lines().find_map(|l| {
                        let l = l.trim_start();
                        let rest = l.strip_prefix("linux")?;
                        let path = rest.split_whitespace().next()?;
                        path.rsplit('/')
                            .next()?
                            .strip_prefix("vmlinuz-")
                            .map(str::to_string)
                    })
                })
        } else {
            // BLS: grubenv's saved_entry names the entry file.
            grubenv
                .and_then(|p| staged.read_to_string(p).ok())
                .and_then(|env| {
                    env.lines()
                        .find_map(|l| l.strip_prefix("saved_entry=").map(str::to_string))
                })
                .and_then(|entry| {
                    staged
                        .read_to_string(&format!("boot/loader/entries/{entry}.conf"))
                        .ok()
                })
                .and_then(|conf| {
                    conf.lines()
                        .find_map(|l| l.strip_prefix("version ").map(|v| v.trim().to_string()))
                })
        };

        let fstab = staged
            .read_to_string("etc/fstab")
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                json!({
                    "source": f.first().copied().unwrap_or(""),
                    "mount_point": f.get(1).copied().unwrap_or(""),
                    "fs_type": f.get(2).copied().unwrap_or(""),
                    "options": f.get(3).copied().unwrap_or(""),
                })
            })
            .collect::<Vec<_>>();

        Ok(GuestFacts(json!({
            "os_release": os_release,
            "hostname": hostname,
            "kernels": kernels,
            "rescue_kernels": rescue,
            "default_kernel": default_kernel,
            "bootloader": {
                "kind": if grub_cfg.is_some() { "grub2" } else { "unknown" },
                "firmware": firmware,
                "grub_cfg": grub_cfg.map(|p| format!("/{p}")),
                "grubenv": grubenv.map(|p| format!("/{p}")),
                "efi_stub": efi_stub,
                "bls_entries": bls,
            },
            "fstab": fstab,
        })))
    }
}

/// Which volume an fstab source names, matched against the oracles' view
/// of this disk only.
fn resolve_source(source: &str, volumes: &[Value]) -> Value {
    let by_key = |key: &str, want: &str| {
        volumes
            .iter()
            .find(|v| v["blkid"][key].as_str() == Some(want))
            .map(|v| v["id"].clone())
    };
    let found = if let Some(u) = source.strip_prefix("UUID=") {
        by_key("UUID", u)
    } else if let Some(l) = source.strip_prefix("LABEL=") {
        by_key("LABEL", l)
    } else if let Some(u) = source.strip_prefix("PARTUUID=") {
        volumes
            .iter()
            .find(|v| {
                v["part_uuid"]
                    .as_str()
                    .is_some_and(|p| p.eq_ignore_ascii_case(u))
            })
            .map(|v| v["id"].clone())
    } else if let Some(rest) = source
        .strip_prefix("/dev/mapper/")
        .or_else(|| source.strip_prefix("/dev/"))
    {
        let (vg, lv) = rest.split_once(['-', '/']).unwrap_or(("", ""));
        volumes
            .iter()
            .find(|v| v["id"]["kind"] == "lv" && v["id"]["vg"] == vg && v["id"]["lv"] == lv)
            .map(|v| v["id"].clone())
    } else {
        None
    };
    found.unwrap_or(Value::Null)
}

/// Runs the oracles on `raw` and assembles the expect document.
pub fn compute(
    layout: &str,
    raw: &Path,
    built: &BuildOutput,
    facts: GuestFacts,
    work: &Path,
) -> Result<Value> {
    let size = std::fs::metadata(raw)?.len();
    let table = sfdisk_json(raw)?;
    let part_uuid = |number: u32| -> Option<String> {
        let t = &table.as_ref()?["partitiontable"];
        if t["label"] == "dos" {
            // Linux names MBR partitions "<disk signature>-<number>" (hex).
            let id = t["id"].as_str()?.trim_start_matches("0x");
            return Some(format!("{id}-{number:02x}"));
        }
        let parts = t["partitions"].as_array()?;
        parts
            .iter()
            .find(|p| {
                p["node"]
                    .as_str()
                    .is_some_and(|n| n.ends_with(&format!(".raw{number}")))
            })
            .and_then(|p| p["uuid"].as_str().map(str::to_string))
    };
    let mut volumes = Vec::new();
    for (i, v) in built.volumes.iter().enumerate() {
        volumes.push(volume_json(raw, v, &part_uuid, work, i)?);
    }
    let mut guest = facts.0;
    let root = volumes
        .iter()
        .find(|v| v["mount_point"] == "/")
        .map(|v| v["id"].clone())
        .unwrap_or(Value::Null);
    if let Some(lines) = guest["fstab"].as_array_mut() {
        for l in lines {
            let src = l["source"].as_str().unwrap_or("").to_string();
            l["volume"] = resolve_source(&src, &volumes);
        }
    }
    guest["root_volume"] = root;
    Ok(json!({
        "schema": SCHEMA,
        "layout": layout,
        "image": {
            "file": raw.file_name().map(|n| n.to_string_lossy().into_owned()),
            "size_bytes": size,
        },
        "partition_table": table,
        "disk_blkid": blkid(raw, 0, size)?,
        "lvm": built.lvm_reports.as_ref().map(|(p, l)| json!({"pvs": p, "lvs": l})),
        "volumes": volumes,
        "guest": guest,
    }))
}

fn volume_json(
    raw: &Path,
    v: &BuiltVolume,
    part_uuid: &dyn Fn(u32) -> Option<String>,
    work: &Path,
    index: usize,
) -> Result<Value> {
    let (start, size) = (v.extents[0].0, v.size_bytes());
    // An LV may be split across the PV: probe a reassembled copy so that
    // blkid sees exactly the LV's bytes.
    let probe = match &v.lv {
        Some((pv_offset, placement)) => {
            let tmp = work.join(format!("probe-{index}.img"));
            crate::lvm::extract_lv(raw, *pv_offset, placement, &tmp)?;
            let r = blkid(&tmp, 0, size)?;
            std::fs::remove_file(&tmp)?;
            r
        }
        None => blkid(raw, start, size)?,
    };
    let mut out = json!({
        "id": v.id,
        "start_byte": start,
        "size_bytes": size,
        "extents": v.extents.iter().map(|(s, l)| json!([s, l])).collect::<Vec<_>>(),
        "mount_point": v.mount,
        "blkid": probe,
    });
    if let VolumeId::Partition { number } = v.id {
        out["part_uuid"] = part_uuid(number).map_or(Value::Null, Value::String);
    }
    Ok(out)
}
