//! Version ordering as boot tools see it.
//!
//! [`vercmp`] is the rpm-style comparison that GRUB's `blscfg` uses (and that
//! orders Debian kernel versions sensibly too): alternating numeric and
//! alphabetic segments, numbers compared by value (`6.1.0-28` > `6.1.0-9`),
//! `~` sorting before anything, `+` after the base version.
//! [`blscfg_cmp`] orders BLS entry ids the way RHEL's `blscfg` builds the menu.
//!
//! Pure functions over strings; must never panic.

use std::cmp::Ordering;

/// Compares two version strings rpm-style.
pub fn vercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0usize, 0usize);
    let is_sep = |c: u8| !c.is_ascii_alphanumeric() && c != b'~' && c != b'+';
    while i < a.len() || j < b.len() {
        while i < a.len() && is_sep(a[i]) {
            i += 1;
        }
        while j < b.len() && is_sep(b[j]) {
            j += 1;
        }
        let (ca, cb) = (a.get(i).copied(), b.get(j).copied());
        if ca == Some(b'~') || cb == Some(b'~') {
            if ca != Some(b'~') {
                return Ordering::Greater;
            }
            if cb != Some(b'~') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        if ca == Some(b'+') || cb == Some(b'+') {
            match (ca, cb) {
                (None, _) => return Ordering::Less,
                (_, None) => return Ordering::Greater,
                (Some(x), _) if x != b'+' => return Ordering::Greater,
                (_, Some(y)) if y != b'+' => return Ordering::Less,
                _ => {}
            }
            i += 1;
            j += 1;
            continue;
        }
        let (Some(first), Some(_)) = (ca, cb) else {
            break;
        };
        let numeric = first.is_ascii_digit();
        let class = |c: u8| {
            if numeric {
                c.is_ascii_digit()
            } else {
                c.is_ascii_alphabetic()
            }
        };
        let si = i;
        while i < a.len() && class(a[i]) {
            i += 1;
        }
        let sj = j;
        while j < b.len() && class(b[j]) {
            j += 1;
        }
        if sj == j {
            // Segments of different types: numeric beats alphabetic.
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        let (mut sa, mut sb) = (&a[si..i], &b[sj..j]);
        if numeric {
            while sa.first() == Some(&b'0') {
                sa = &sa[1..];
            }
            while sb.first() == Some(&b'0') {
                sb = &sb[1..];
            }
            match sa.len().cmp(&sb.len()) {
                Ordering::Equal => {}
                o => return o,
            }
        }
        match sa.cmp(sb) {
            Ordering::Equal => {}
            o => return o,
        }
    }
    match (i >= a.len(), j >= b.len()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        _ => Ordering::Greater,
    }
}

/// Splits `name-version-release` the way RHEL's `blscfg` does.
fn split_nvr(s: &str) -> (&str, &str, &str) {
    let (rest, release) = match s.rfind('-') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (name, version) = match rest.rfind('-') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    match version {
        Some(v) => (name, v, release.unwrap_or("")),
        None => (name, release.unwrap_or(""), ""),
    }
}

/// Orders two BLS entry ids (file names without `.conf`) as RHEL's `blscfg`
/// does: `Greater` means `a` is newer and comes first in the menu.
pub fn blscfg_cmp(a: &str, b: &str) -> Ordering {
    let (na, va, ra) = split_nvr(a);
    let (nb, vb, rb) = split_nvr(b);
    vercmp(na, nb)
        .then_with(|| vercmp(va, vb))
        .then_with(|| vercmp(ra, rb))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn rpm_rules() {
        assert_eq!(vercmp("6.1.0-28-amd64", "6.1.0-9-amd64"), Greater);
        assert_eq!(vercmp("6.1.0-9-amd64", "6.1.0-28-amd64"), Less);
        assert_eq!(vercmp("1.0", "1.0"), Equal);
        assert_eq!(vercmp("1.0", "1.0.1"), Less);
        assert_eq!(vercmp("1.0~rc1", "1.0"), Less);
        assert_eq!(vercmp("1.0+p1", "1.0"), Greater);
        assert_eq!(vercmp("1.a", "1.1"), Less);
        assert_eq!(vercmp("010", "9"), Greater);
        assert_eq!(
            vercmp("5.14.0-362.8.1.el9_3.x86_64", "5.14.0-70.13.1.el9_0.x86_64"),
            Greater
        );
        assert_eq!(vercmp("", "1"), Less);
        assert_eq!(vercmp("a", ""), Greater);
        assert_eq!(vercmp("1.", "1"), Equal);
    }

    #[test]
    fn blscfg_order() {
        let mid = "0123456789abcdef0123456789abcdef";
        let new = format!("{mid}-5.14.0-362.8.1.el9_3.x86_64");
        let old = format!("{mid}-5.14.0-70.13.1.el9_0.x86_64");
        let rescue = format!("{mid}-0-rescue");
        assert_eq!(blscfg_cmp(&new, &old), Greater);
        assert_eq!(blscfg_cmp(&rescue, &old), Less);
        assert_eq!(split_nvr("a-b"), ("a", "b", ""));
        assert_eq!(split_nvr("a"), ("a", "", ""));
    }

    #[test]
    fn never_panics() {
        let samples = [
            "", "~", "+", "~~+", "0", "00", "a0", "-", "--", "+a", "a+", "\u{e9}1", "1\u{e9}",
            "~1+",
        ];
        for a in samples {
            for b in samples {
                let x = vercmp(a, b);
                assert_eq!(x.reverse(), vercmp(b, a), "{a:?} {b:?}");
                let _ = blscfg_cmp(a, b);
            }
        }
    }
}
