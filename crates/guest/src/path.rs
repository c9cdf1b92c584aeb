//! Guest paths: absolute paths inside the guest, a different type from host
//! paths so the two can never be mixed up.
//!
//! A [`GuestPath`] is only ever interpreted against a guest filesystem (see
//! [`crate::Guest`]); nothing here touches the host.

use std::fmt;

use serde::{Serialize, Serializer};

/// An absolute path inside the guest, as bytes (guest names need not be UTF-8).
///
/// Normalised on construction: always starts with `/`, no empty components,
/// no trailing `/` except for the root. `.` and `..` components are kept and
/// resolved during lookup, because `..` after a symlink depends on the link.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GuestPath(Vec<u8>);

impl GuestPath {
    /// The root directory `/`.
    pub fn root() -> GuestPath {
        GuestPath(b"/".to_vec())
    }

    /// A guest path from bytes; a relative input is taken from the root.
    pub fn new(path: impl AsRef<[u8]>) -> GuestPath {
        let mut out = Vec::with_capacity(path.as_ref().len() + 1);
        for c in path
            .as_ref()
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty())
        {
            out.push(b'/');
            out.extend_from_slice(c);
        }
        if out.is_empty() {
            out.push(b'/');
        }
        GuestPath(out)
    }

    /// The path as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// True for `/`.
    pub fn is_root(&self) -> bool {
        self.0 == b"/"
    }

    /// The components (no separators, never empty).
    pub fn components(&self) -> impl DoubleEndedIterator<Item = &[u8]> {
        self.0.split(|&b| b == b'/').filter(|c| !c.is_empty())
    }

    /// Appends a relative path (an absolute `rel` is appended too: `join` never
    /// jumps to the root, unlike `std::path::Path::join`).
    pub fn join(&self, rel: impl AsRef<[u8]>) -> GuestPath {
        let mut v = self.0.clone();
        v.push(b'/');
        v.extend_from_slice(rel.as_ref());
        GuestPath::new(v)
    }

    /// The last component.
    pub fn file_name(&self) -> Option<&[u8]> {
        self.components().last()
    }

    /// The parent directory (lexically); `None` for the root.
    pub fn parent(&self) -> Option<GuestPath> {
        if self.is_root() {
            return None;
        }
        let comps: Vec<&[u8]> = self.components().collect();
        let parent = comps.get(..comps.len().saturating_sub(1)).unwrap_or(&[]);
        Some(GuestPath::new(parent.join(&b'/')))
    }

    /// True when `prefix`'s components are a prefix of this path's.
    pub fn starts_with(&self, prefix: &GuestPath) -> bool {
        let mut mine = self.components();
        prefix.components().all(|p| mine.next() == Some(p))
    }

    /// This path relative to `prefix`, as an absolute path from it.
    pub fn strip_prefix(&self, prefix: &GuestPath) -> Option<GuestPath> {
        if !self.starts_with(prefix) {
            return None;
        }
        let rest: Vec<&[u8]> = self
            .components()
            .skip(prefix.components().count())
            .collect();
        Some(GuestPath::new(rest.join(&b'/')))
    }

    /// True when no component is `.` or `..`.
    pub fn is_normal(&self) -> bool {
        self.components().all(|c| c != b"." && c != b"..")
    }

    /// Lossy UTF-8 text for messages and JSON.
    pub fn to_string_lossy(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

impl fmt::Display for GuestPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Debug for GuestPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GuestPath({:?})", String::from_utf8_lossy(&self.0))
    }
}

impl Serialize for GuestPath {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string_lossy())
    }
}

impl From<&str> for GuestPath {
    fn from(s: &str) -> GuestPath {
        GuestPath::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_and_prefixes() {
        assert_eq!(GuestPath::new("").as_bytes(), b"/");
        assert_eq!(GuestPath::new("//etc///fstab/").as_bytes(), b"/etc/fstab");
        assert_eq!(GuestPath::new("etc").as_bytes(), b"/etc");
        let p = GuestPath::new("/boot/efi/EFI/debian/grub.cfg");
        let boot = GuestPath::new("/boot");
        assert!(p.starts_with(&boot));
        assert!(!GuestPath::new("/bootx").starts_with(&boot));
        assert!(p.starts_with(&GuestPath::root()));
        assert_eq!(
            p.strip_prefix(&boot).unwrap().as_bytes(),
            b"/efi/EFI/debian/grub.cfg"
        );
        assert_eq!(boot.strip_prefix(&boot).unwrap().as_bytes(), b"/");
        assert_eq!(p.parent().unwrap().as_bytes(), b"/boot/efi/EFI/debian");
        assert_eq!(boot.parent().unwrap().as_bytes(), b"/");
        assert!(GuestPath::root().parent().is_none());
        assert_eq!(boot.join("/x/y").as_bytes(), b"/boot/x/y");
        assert_eq!(p.file_name(), Some(&b"grub.cfg"[..]));
        assert!(!GuestPath::new("/a/../b").is_normal());
    }
}
