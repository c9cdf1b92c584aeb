//! Helpers of the `check` end-to-end tests: run `check --json`, pick
//! findings, and build broken variants of a fixture with the real tools.

use std::path::Path;

use serde_json::Value;

use super::{layout_available, run_limited};

/// `rescue-disk check --json PATH EXTRA…` under the resource limits; the
/// exit code and the report. Never a panic.
pub fn check_json(path: &Path, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["check", "--json", path.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    let run = run_limited(&args);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    (run.code, run.json())
}

/// The findings of check `id`.
pub fn findings<'a>(report: &'a Value, id: &str) -> Vec<&'a Value> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["check"] == id)
        .collect()
}

/// Builds a variant of `layout` with `edit`, runs `check --json EXTRA…` on
/// its raw image and on the same disk converted to qcow2 (which must give
/// the same exit code and findings), and returns the raw image's verdict.
/// `None` when the layout cannot be built here (skipped loudly, or a
/// failure under `RESCUE_REQUIRE_TOOLS=1`).
pub fn variant_with(
    name: &str,
    layout: &str,
    extra: &[&str],
    edit: impl FnOnce(&mut xtask::Customize) -> anyhow::Result<()>,
) -> Option<(i32, Value, xtask::Custom)> {
    if !layout_available(layout) {
        return None;
    }
    let custom = xtask::build_custom(name, layout, edit).expect("building the broken variant");
    let (code, report) = check_json(&custom.raw, extra);
    let (qcode, qreport) = check_json(&custom.qcow2().expect("qemu-img convert"), extra);
    assert_eq!(qcode, code, "{name}: raw and qcow2 exit codes differ");
    assert_eq!(
        qreport["findings"], report["findings"],
        "{name}: raw and qcow2 findings differ"
    );
    Some((code, report, custom))
}

/// [`variant_with`] without extra arguments.
pub fn variant(
    name: &str,
    layout: &str,
    edit: impl FnOnce(&mut xtask::Customize) -> anyhow::Result<()>,
) -> Option<(i32, Value, xtask::Custom)> {
    variant_with(name, layout, &[], edit)
}
