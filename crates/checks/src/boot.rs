//! Boot checks: the kernel GRUB boots by default, and its command line.
//!
//! The default entry is the one `rescue_guest` worked out the way GRUB
//! does (`set default`, grubenv's `saved_entry`, BLS ordering). Repairs
//! change the default where the distribution reads it: a `set default` line
//! in grub.cfg, or `saved_entry` in grubenv when grub.cfg takes the default
//! from there (`GRUB_DEFAULT=saved`, RHEL's `grubby --set-default`).

use rescue_config::grub_cfg::{DefaultOrigin, MenuItem, MenuKind};
use rescue_guest::boot::DefaultEntry;
use rescue_guest::{GuestPath, Kernel, MAX_CONFIG_FILE_BYTES};

use crate::edit::{Edit, Repair};
use crate::{Area, CheckInfo, CheckResult, Context, Evidence, Finding, Severity};

pub(crate) const KERNEL_INCOMPLETE: CheckInfo = CheckInfo {
    id: "boot.kernel-incomplete",
    area: Area::Boot,
    symptom: "kernel panic or \"unable to mount root fs\" after a kernel upgrade",
    looks_at: "the default boot entry's vmlinuz, initrd and /lib/modules/<version>",
};

pub(crate) const INITRAMFS_MISSING: CheckInfo = CheckInfo {
    id: "boot.initramfs-missing",
    area: Area::Boot,
    symptom: "\"Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\"",
    looks_at: "the initrd of the kernel that boots",
};

pub(crate) const CMDLINE: CheckInfo = CheckInfo {
    id: "boot.cmdline",
    area: Area::Boot,
    symptom: "boots to a bash prompt or single-user mode, or the root filesystem is not found",
    looks_at: "init=, single/emergency/rescue and root= on the default entry's kernel command line",
};

pub(crate) const SERIAL_CONSOLE: CheckInfo = CheckInfo {
    id: "boot.serial-console",
    area: Area::Boot,
    symptom: "nothing on the serial console; cannot log in there",
    looks_at: "console=ttyS* on the default entry's kernel command line",
};

fn default_entry<'a>(ctx: &'a Context<'_>) -> Option<&'a DefaultEntry> {
    ctx.report.bootloader.default_entry.as_ref()
}

fn kernel<'a>(ctx: &'a Context<'_>, version: &str) -> Option<&'a Kernel> {
    ctx.report.kernels.iter().find(|k| k.version == version)
}

fn nonempty(f: &Option<rescue_guest::kernels::KernelFile>) -> bool {
    f.as_ref().is_some_and(|f| f.size_in_bytes > 0)
}

/// Where the default entry was set, as evidence.
fn default_evidence(ctx: &Context<'_>, de: &DefaultEntry) -> Evidence {
    let b = &ctx.report.bootloader;
    match (de.origin, &b.grub_cfg, &b.grubenv) {
        (DefaultOrigin::SavedEntry | DefaultOrigin::NextEntry, _, Some(env)) => Evidence::File {
            path: env.guest_path.clone().unwrap_or_else(|| env.path.clone()),
            line: None,
            text: format!(
                "{}={}",
                if de.origin == DefaultOrigin::NextEntry {
                    "next_entry"
                } else {
                    "saved_entry"
                },
                de.spec
            ),
        },
        (_, Some(cfg), _) => Evidence::File {
            path: cfg.guest_path.clone().unwrap_or_else(|| cfg.path.clone()),
            line: de.set_at_line,
            text: format!("default entry {:?} ({})", de.title, de.spec),
        },
        _ => Evidence::fact(format!("default entry {:?}", de.title)),
    }
}

/// The newest complete kernel other than `not`, preferring regular kernels
/// over rescue kernels.
fn fallback_kernel<'a>(ctx: &'a Context<'_>, not: Option<&str>) -> Option<&'a Kernel> {
    let ok = |k: &&Kernel| k.complete && Some(k.version.as_str()) != not;
    ctx.report
        .kernels
        .iter()
        .filter(|k| !k.rescue)
        .find(ok)
        .or_else(|| ctx.report.kernels.iter().find(ok))
}

/// A menu path (`id>id`, or titles where ids are missing) to a non-recovery
/// entry booting `version`.
fn menu_path_to(items: &[MenuItem], version: &str, depth: usize) -> Option<String> {
    if depth > 8 {
        return None;
    }
    for item in items {
        let name = item.id.clone().unwrap_or_else(|| item.title.clone());
        match item.kind {
            MenuKind::Entry => {
                let boots_it = item.linux.iter().any(|c| {
                    c.path()
                        .and_then(|p| p.rsplit('/').next())
                        .and_then(rescue_guest::kernels::version_from_kernel_name)
                        == Some(version)
                });
                let recovery = item.title.contains("recovery mode")
                    || item
                        .linux
                        .iter()
                        .any(|c| c.args.iter().any(|a| a == "single" || a == "emergency"));
                if boots_it && !recovery {
                    return Some(name);
                }
            }
            MenuKind::Submenu => {
                if let Some(rest) = menu_path_to(&item.children, version, depth + 1) {
                    return Some(format!("{name}>{rest}"));
                }
            }
            MenuKind::Blscfg => {}
        }
    }
    None
}

/// Edits that make `target` the default kernel, where the guest keeps it.
fn set_default_kernel(
    ctx: &Context<'_>,
    de: &DefaultEntry,
    target: &Kernel,
) -> Result<Repair, rescue_io::Error> {
    let b = &ctx.report.bootloader;
    let bls_id = b
        .bls_entries
        .iter()
        .find(|e| e.kernel_version().as_deref() == Some(target.version.as_str()));
    let spec = match (de.bls, bls_id, &b.grub_cfg) {
        (true, Some(e), _) => Some(e.id.clone()),
        (_, _, Some(cfg)) => menu_path_to(&cfg.menu, &target.version, 0),
        _ => None,
    };
    let Some(spec) = spec else {
        return Ok(Repair {
            summary: format!("choose kernel {} at the GRUB menu", target.version),
            edits: Vec::new(),
            manual: Some(format!(
                "no menu entry boots {}; pick it at the GRUB menu on the serial console",
                target.version
            )),
        });
    };
    let summary = format!(
        "make {} (the newest complete kernel) the default",
        target.version
    );
    match (de.origin, &b.grubenv, &b.grub_cfg, de.set_at_line) {
        (DefaultOrigin::SavedEntry | DefaultOrigin::Implicit, Some(env), _, _)
            if de.bls || de.origin == DefaultOrigin::SavedEntry =>
        {
            Ok(Repair {
                summary,
                edits: vec![Edit::SetGrubenv {
                    path: env.guest_path.clone().unwrap_or_else(|| env.path.clone()),
                    key: "saved_entry".into(),
                    value: spec,
                }],
                manual: None,
            })
        }
        (DefaultOrigin::GrubCfg, _, Some(cfg), Some(line)) => {
            let path = cfg.guest_path.clone().unwrap_or_else(|| cfg.path.clone());
            let data = ctx
                .guest
                .read_file(&GuestPath::new(&path), MAX_CONFIG_FILE_BYTES)?;
            let Some(before) = String::from_utf8_lossy(&data)
                .lines()
                .nth(line.saturating_sub(1))
                .map(str::to_owned)
            else {
                return Ok(Repair {
                    summary,
                    edits: Vec::new(),
                    manual: Some(format!("set default=\"{spec}\" in {path}")),
                });
            };
            let indent: String = before.chars().take_while(|c| c.is_whitespace()).collect();
            Ok(Repair {
                summary: format!("{summary} (until the next update-grub)"),
                edits: vec![Edit::EditLine {
                    path,
                    line,
                    before,
                    after: format!("{indent}set default=\"{spec}\""),
                }],
                manual: None,
            })
        }
        _ => Ok(Repair {
            summary,
            edits: Vec::new(),
            manual: Some(format!(
                "set the GRUB default to \"{spec}\" (no set default line or grubenv to edit)"
            )),
        }),
    }
}

pub(crate) fn kernel_incomplete(ctx: &Context<'_>) -> CheckResult {
    let Some(de) = default_entry(ctx) else {
        return Ok(Vec::new());
    };
    let Some(version) = de.kernel_version.as_deref() else {
        return Ok(Vec::new());
    };
    let (cause, missing) = match kernel(ctx, version) {
        None => (
            format!(
                "the default entry {:?} boots kernel {version}, which is not installed",
                de.title
            ),
            Vec::new(),
        ),
        Some(k) => {
            let modules_missing = k.missing.iter().any(|m| m.starts_with("modules directory"));
            if k.complete || (nonempty(&k.vmlinuz) && !modules_missing) {
                // Complete, or only the initrd is missing: boot.initramfs-missing.
                return Ok(Vec::new());
            }
            (
                format!(
                    "the default kernel {version} is incomplete: {}",
                    k.missing.join("; ")
                ),
                k.missing.clone(),
            )
        }
    };
    let mut f = Finding::new(
        &KERNEL_INCOMPLETE,
        Severity::Error,
        format!("kernel {version}"),
        cause,
    )
    .evidence(default_evidence(ctx, de));
    for m in missing {
        f = f.evidence(Evidence::fact(m));
    }
    let repair = match fallback_kernel(ctx, Some(version)) {
        Some(k) => set_default_kernel(ctx, de, k)?,
        None => Repair {
            summary: "no complete kernel is installed".into(),
            edits: Vec::new(),
            manual: Some(
                "reinstall a kernel package from a chroot (rescue-disk chroot, later)".into(),
            ),
        },
    };
    Ok(vec![f.repair(Some(repair))])
}

pub(crate) fn initramfs_missing(ctx: &Context<'_>) -> CheckResult {
    let Some(de) = default_entry(ctx) else {
        return Ok(Vec::new());
    };
    let Some(version) = de.kernel_version.as_deref() else {
        return Ok(Vec::new());
    };
    let Some(k) = kernel(ctx, version) else {
        return Ok(Vec::new());
    };
    let modules_missing = k.missing.iter().any(|m| m.starts_with("modules directory"));
    if nonempty(&k.initrd) || !nonempty(&k.vmlinuz) || modules_missing {
        return Ok(Vec::new());
    }
    let why = k
        .missing
        .iter()
        .find(|m| m.starts_with("initrd"))
        .cloned()
        .unwrap_or_else(|| "no initrd".into());
    let mut f = Finding::new(
        &INITRAMFS_MISSING,
        Severity::Error,
        format!("kernel {version}"),
        format!("the default kernel {version} has no usable initrd: {why}"),
    )
    .evidence(default_evidence(ctx, de));
    let rebuild = match ctx.report.os.as_ref().map(|o| o.family) {
        Some(rescue_config::os_release::Family::Rhel) => format!("dracut -f --kver {version}"),
        _ => format!("update-initramfs -c -k {version}"),
    };
    let repair = match fallback_kernel(ctx, Some(version)) {
        Some(other) => {
            let mut r = set_default_kernel(ctx, de, other)?;
            r.manual = Some(format!("then rebuild the initrd from a chroot: {rebuild}"));
            r
        }
        None => Repair {
            summary: "rebuild the initrd".into(),
            edits: Vec::new(),
            manual: Some(format!("rebuild it from a chroot: {rebuild}")),
        },
    };
    f = f.repair(Some(repair));
    Ok(vec![f])
}

/// Kernel arguments that leave the system in a maintenance shell.
fn maintenance_arg(arg: &str) -> bool {
    matches!(
        arg,
        "single" | "s" | "S" | "1" | "emergency" | "-b" | "rescue" | "rd.break"
    ) || arg.starts_with("init=")
        || arg == "systemd.unit=rescue.target"
        || arg == "systemd.unit=emergency.target"
        || arg == "rd.emergency"
        || arg.starts_with("rd.break=")
}

/// Where the default entry's command line lives, as evidence.
fn cmdline_evidence(ctx: &Context<'_>, de: &DefaultEntry) -> Evidence {
    let b = &ctx.report.bootloader;
    if de.bls {
        if let Some(e) = b.bls_entries.iter().find(|e| Some(&e.id) == de.id.as_ref()) {
            return Evidence::File {
                path: e.file.clone(),
                line: None,
                text: format!("options {}", e.options),
            };
        }
    }
    match &b.grub_cfg {
        Some(cfg) => Evidence::File {
            path: cfg.guest_path.clone().unwrap_or_else(|| cfg.path.clone()),
            line: de.cmdline_line,
            text: format!(
                "linux {} {}",
                de.linux.clone().unwrap_or_default(),
                de.cmdline.join(" ")
            ),
        },
        None => Evidence::fact(de.cmdline.join(" ")),
    }
}

/// Edits replacing or removing kernel arguments everywhere the default
/// entry's command line comes from (grub.cfg's linux line, a BLS entry's
/// options or grubenv's kernelopts) and in /etc/default/grub, so that the
/// next update-grub does not bring the argument back.
fn cmdline_edits(
    ctx: &Context<'_>,
    de: &DefaultEntry,
    change: &dyn Fn(&str) -> Option<Option<String>>,
) -> Result<Vec<Edit>, rescue_io::Error> {
    let rewrite = |text: &str| -> Option<String> {
        let mut changed = false;
        let mut out: Vec<String> = Vec::new();
        for tok in text.split_whitespace() {
            match change(tok) {
                Some(Some(new)) => {
                    changed = true;
                    out.push(new);
                }
                Some(None) => changed = true,
                None => out.push(tok.to_owned()),
            }
        }
        changed.then(|| out.join(" "))
    };
    let mut edits = Vec::new();
    let b = &ctx.report.bootloader;
    let bls = de
        .bls
        .then(|| b.bls_entries.iter().find(|e| Some(&e.id) == de.id.as_ref()))
        .flatten();
    if let Some(entry) = bls {
        if entry.options.contains("$kernelopts") || entry.options.contains("${kernelopts}") {
            if let (Some(env), Some(opts)) = (
                &b.grubenv,
                b.grubenv.as_ref().and_then(|e| e.other.get("kernelopts")),
            ) {
                if let Some(new) = rewrite(opts) {
                    edits.push(Edit::SetGrubenv {
                        path: env.guest_path.clone().unwrap_or_else(|| env.path.clone()),
                        key: "kernelopts".into(),
                        value: new,
                    });
                }
            }
        } else {
            edits.extend(edit_lines(ctx, &entry.file, |l| {
                let rest = l.trim_start().strip_prefix("options")?;
                rest.starts_with(char::is_whitespace).then_some(())?;
                rewrite(rest).map(|new| format!("options {new}"))
            })?);
        }
    } else if let (Some(cfg), Some(line)) = (&b.grub_cfg, de.cmdline_line) {
        let path = cfg.guest_path.clone().unwrap_or_else(|| cfg.path.clone());
        let data = ctx
            .guest
            .read_file(&GuestPath::new(&path), MAX_CONFIG_FILE_BYTES)?;
        if let Some(before) = String::from_utf8_lossy(&data)
            .lines()
            .nth(line.saturating_sub(1))
        {
            let indent: String = before.chars().take_while(|c| c.is_whitespace()).collect();
            let mut toks = before.split_whitespace();
            let (cmd, kernel) = (toks.next().unwrap_or("linux"), toks.next().unwrap_or(""));
            let rest: Vec<&str> = toks.collect();
            if let Some(new) = rewrite(&rest.join(" ")) {
                edits.push(Edit::EditLine {
                    path,
                    line,
                    before: before.to_owned(),
                    after: format!("{indent}{cmd}\t{kernel} {new}")
                        .trim_end()
                        .to_owned(),
                });
            }
        }
    }
    // /etc/default/grub feeds update-grub / grub2-mkconfig.
    edits.extend(edit_lines(ctx, "/etc/default/grub", |l| {
        let (key, value) = l.split_once('=')?;
        if !matches!(
            key.trim(),
            "GRUB_CMDLINE_LINUX" | "GRUB_CMDLINE_LINUX_DEFAULT"
        ) {
            return None;
        }
        let quote = value.chars().next().filter(|c| *c == '"' || *c == '\'');
        let inner = match quote {
            Some(q) => value.trim_start_matches(q).trim_end().trim_end_matches(q),
            None => value.trim(),
        };
        let new = rewrite(inner)?;
        let q = quote.map(String::from).unwrap_or_else(|| "\"".into());
        Some(format!("{key}={q}{new}{q}"))
    })?);
    Ok(edits)
}

/// Line edits of `path` produced by `f` (None: leave the line alone).
fn edit_lines(
    ctx: &Context<'_>,
    path: &str,
    f: impl Fn(&str) -> Option<String>,
) -> Result<Vec<Edit>, rescue_io::Error> {
    let data = match ctx
        .guest
        .read_file(&GuestPath::new(path), MAX_CONFIG_FILE_BYTES)
    {
        Ok(d) => d,
        Err(e) if e.kind() == rescue_io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(String::from_utf8_lossy(&data)
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with('#'))
        .filter_map(|(i, l)| {
            f(l).map(|after| Edit::EditLine {
                path: path.to_owned(),
                line: i + 1,
                before: l.to_owned(),
                after,
            })
        })
        .collect())
}

pub(crate) fn cmdline(ctx: &Context<'_>) -> CheckResult {
    let Some(de) = default_entry(ctx) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let leftovers: Vec<&String> = de.cmdline.iter().filter(|a| maintenance_arg(a)).collect();
    if !leftovers.is_empty() {
        let list: Vec<&str> = leftovers.iter().map(|s| s.as_str()).collect();
        let edits = cmdline_edits(ctx, de, &|tok| maintenance_arg(tok).then_some(None))?;
        out.push(
            Finding::new(
                &CMDLINE,
                Severity::Error,
                format!("kernel command line of {:?}", de.title),
                format!(
                    "the default entry boots with {}, left over from maintenance",
                    list.join(" ")
                ),
            )
            .symptom(if list.iter().any(|a| a.starts_with("init=")) {
                "the VM boots to a root shell instead of the system; SSH never starts".to_owned()
            } else {
                "the VM stops in single-user or emergency mode; SSH never starts".to_owned()
            })
            .evidence(cmdline_evidence(ctx, de))
            .repair(Some(Repair {
                summary: format!("remove {} from the kernel command line", list.join(" ")),
                edits,
                manual: None,
            })),
        );
    }
    // root= can only be matched against the disk's volumes when the disk
    // itself is the target (not a mounted tree).
    let root_arg = de
        .cmdline
        .iter()
        .rev()
        .find(|a| a.starts_with("root="))
        .filter(|_| ctx.disk_known);
    if let Some(root_arg) = root_arg {
        let spec = &root_arg["root=".len()..];
        let source = rescue_config::fstab::classify_source(spec, "auto");
        let naming = rescue_guest::fstab::DiskNaming { this_disk: None };
        let resolution = rescue_guest::fstab::resolve_source(ctx.disk, &source, "auto", &naming);
        let root = ctx.report.root.as_ref().map(|r| r.volume_id.as_str());
        let points_at = resolution.volume_id();
        let plain_device = matches!(source, rescue_config::fstab::Source::Device { ref path } if !path.starts_with("/dev/mapper/") && path.split('/').count() == 3);
        if root.is_some() && points_at != root && !plain_device {
            let root_id = root.unwrap_or_default();
            let uuid = ctx
                .disk
                .volumes
                .iter()
                .find(|v| v.id == root_id)
                .and_then(|v| v.probe.uuid.clone());
            let cause = match points_at {
                Some(v) => format!("{root_arg} names {v}, but the root filesystem is on {root_id}"),
                None => format!(
                    "{root_arg} names no volume of this disk; the root filesystem is on {root_id}"
                ),
            };
            let repair = match uuid {
                Some(u) => {
                    let new = format!("root=UUID={u}");
                    let edits = cmdline_edits(ctx, de, &|tok| {
                        (tok == root_arg.as_str()).then(|| Some(new.clone()))
                    })?;
                    Repair {
                        summary: format!("set {new} on the kernel command line"),
                        edits,
                        manual: None,
                    }
                }
                None => Repair {
                    summary: "correct root=".into(),
                    edits: Vec::new(),
                    manual: Some(format!("point root= at {root_id}")),
                },
            };
            out.push(
                Finding::new(&CMDLINE, Severity::Error, format!("kernel command line of {:?}", de.title), cause)
                    .symptom("\"Gave up waiting for root file system device\"; \"ALERT! UUID=… does not exist. Dropping to a shell!\"")
                    .evidence(cmdline_evidence(ctx, de))
                    .repair(Some(repair)),
            );
        }
    }
    Ok(out)
}

pub(crate) fn serial_console(ctx: &Context<'_>) -> CheckResult {
    let Some(de) = default_entry(ctx) else {
        return Ok(Vec::new());
    };
    if de
        .cmdline
        .iter()
        .any(|a| a.starts_with("console=ttyS") || a.starts_with("console=ttyAMA"))
    {
        return Ok(Vec::new());
    }
    Ok(vec![Finding::new(
        &SERIAL_CONSOLE,
        Severity::Info,
        format!("kernel command line of {:?}", de.title),
        "the kernel does not write to a serial port (no console=ttyS0), so the cloud serial console shows nothing",
    )
    .evidence(cmdline_evidence(ctx, de))
    .repair(Some(Repair {
        summary: "add console=ttyS0,115200 (with --enable-serial-console)".into(),
        edits: Vec::new(),
        manual: Some("fix --enable-serial-console (planned) adds console=tty0 console=ttyS0,115200".into()),
    }))])
}
