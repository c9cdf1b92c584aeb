//! The pattern and address matching sshd uses for `Match`, `AllowUsers`,
//! `DenyUsers`, `AllowGroups`, `DenyGroups` and `Include`: wildcard
//! patterns (`*`, `?`), comma lists with `!` negation
//! (`match_pattern_list`), host-and-address patterns (`match_user`,
//! `match_host_and_ip`), CIDR lists (`addr_match_list`), and glob(3) for
//! `Include`.
//!
//! Results that depend on what cannot be known offline (a client's DNS
//! name) are [`Tri::Unknown`], never a guess. Matching is iterative (no
//! exponential backtracking on hostile patterns) and never panics.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

/// A three-valued answer: offline, some questions have no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Tri {
    /// Definitely true.
    Yes,
    /// Definitely false.
    No,
    /// Depends on something not known offline.
    Unknown,
}

impl Tri {
    /// `Yes` for true, `No` for false.
    pub fn from_bool(b: bool) -> Tri {
        if b {
            Tri::Yes
        } else {
            Tri::No
        }
    }

    /// Logical and: `No` wins, then `Unknown`.
    pub fn and(self, other: Tri) -> Tri {
        match (self, other) {
            (Tri::No, _) | (_, Tri::No) => Tri::No,
            (Tri::Unknown, _) | (_, Tri::Unknown) => Tri::Unknown,
            _ => Tri::Yes,
        }
    }
}

/// `match_pattern()`: `*` matches any run of bytes, `?` any one byte.
pub fn match_pattern(s: &[u8], pattern: &[u8]) -> bool {
    // Classic two-pointer wildcard matching: same answers as sshd's
    // recursive version, in O(len(s) * len(pattern)) at worst.
    let (mut si, mut pi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < pattern.len()
            && (pattern[pi] == b'?' || pattern[pi] == s[si])
            && pattern[pi] != b'*'
        {
            si += 1;
            pi += 1;
        } else if pi < pattern.len() && pattern[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    while pi < pattern.len() && pattern[pi] == b'*' {
        pi += 1;
    }
    pi == pattern.len()
}

/// `match_pattern_list()`: 1 for a positive match, -1 when a negated
/// (`!`) subpattern matched, 0 otherwise. With `dolower` the pattern is
/// lowercased first (the string must already be lowercase).
pub fn match_pattern_list(s: &[u8], pattern: &[u8], dolower: bool) -> i32 {
    let mut got_positive = false;
    let len = pattern.len();
    let mut i = 0usize;
    while i < len {
        let negated = pattern[i] == b'!';
        if negated {
            i += 1;
        }
        let start = i;
        while i < len && pattern[i] != b',' {
            i += 1;
        }
        // sshd copies into a 1024-byte buffer and fails on longer ones.
        if i - start >= 1023 {
            return 0;
        }
        let sub: Vec<u8> = pattern[start..i]
            .iter()
            .map(|&c| if dolower { c.to_ascii_lowercase() } else { c })
            .collect();
        if i < len && pattern[i] == b',' {
            i += 1;
        }
        if match_pattern(s, &sub) {
            if negated {
                return -1;
            }
            got_positive = true;
        }
    }
    i32::from(got_positive)
}

/// `match_hostname()`: case-insensitive [`match_pattern_list`].
pub fn match_hostname(host: &[u8], pattern: &[u8]) -> i32 {
    let lower: Vec<u8> = host.to_ascii_lowercase();
    match_pattern_list(&lower, pattern, true)
}

/// Parses an address the way `getaddrinfo(AI_NUMERICHOST)` does: IPv4 in
/// any `inet_aton` form (`10.1`, `0x7f.1`), IPv6 with an optional numeric
/// `%scope`.
pub fn parse_addr(s: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(s).ok()?;
    if let Some(v4) = inet_aton(text) {
        return Some(IpAddr::V4(v4));
    }
    let (addr, scope) = match text.split_once('%') {
        Some((a, sc)) => (a, Some(sc)),
        None => (text, None),
    };
    if let Some(sc) = scope {
        if sc.is_empty() || !sc.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
    }
    addr.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

fn inet_aton(s: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut nums = Vec::with_capacity(4);
    for p in &parts {
        let (digits, radix) = if let Some(h) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X"))
        {
            (h, 16)
        } else if p.len() > 1 && p.starts_with('0') {
            (&p[1..], 8)
        } else {
            (*p, 10)
        };
        if p.is_empty() {
            return None;
        }
        let v = if digits.is_empty() {
            0
        } else {
            if !digits.chars().all(|c| c.is_digit(radix)) {
                return None;
            }
            u64::from_str_radix(digits, radix).ok()?
        };
        nums.push(v);
    }
    let last = *nums.last()?;
    let head = &nums[..nums.len() - 1];
    if head.iter().any(|&n| n > 255) {
        return None;
    }
    let last_bits = 8 * (4 - head.len() as u32);
    if last_bits < 64 && last >= (1u64 << last_bits) {
        return None;
    }
    let mut v: u64 = 0;
    for (i, &n) in head.iter().enumerate() {
        v |= n << (24 - 8 * i as u32);
    }
    v |= last;
    Some(Ipv4Addr::from(u32::try_from(v).ok()?))
}

/// Result of `addr_pton_cidr()`.
enum Cidr {
    /// A network and its mask length.
    Net(IpAddr, u32),
    /// Not an address (sshd then tries a wildcard match), code -1.
    NotAnAddress,
    /// An address with a bad mask or host bits set, code -2.
    Inconsistent,
}

fn addr_pton_cidr(p: &[u8]) -> Cidr {
    if p.len() >= 64 {
        return Cidr::NotAnAddress;
    }
    let (addr, mask) = match p.iter().position(|&b| b == b'/') {
        Some(i) => (&p[..i], Some(&p[i + 1..])),
        None => (p, None),
    };
    let mut masklen: Option<u64> = None;
    if let Some(m) = mask {
        if !m.first().is_some_and(|b| b.is_ascii_digit()) || !m.iter().all(|b| b.is_ascii_digit()) {
            return Cidr::NotAnAddress;
        }
        let v = std::str::from_utf8(m)
            .ok()
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(u64::MAX);
        if v > 128 {
            return Cidr::NotAnAddress;
        }
        masklen = Some(v);
    }
    let Some(a) = parse_addr(addr) else {
        return Cidr::NotAnAddress;
    };
    let full = if a.is_ipv4() { 32 } else { 128 };
    let m = masklen.unwrap_or(full);
    if m > full {
        return Cidr::Inconsistent;
    }
    // OK to truncate: m <= 128.
    let m = m as u32;
    if host_bits(a, m) != 0 {
        return Cidr::Inconsistent;
    }
    Cidr::Net(a, m)
}

fn to_u128(a: IpAddr) -> (u128, u32) {
    match a {
        IpAddr::V4(v) => (u128::from(u32::from(v)), 32),
        IpAddr::V6(v) => (u128::from(v), 128),
    }
}

fn host_bits(a: IpAddr, masklen: u32) -> u128 {
    let (v, width) = to_u128(a);
    let host = width.saturating_sub(masklen);
    if host == 0 {
        0
    } else if host >= 128 {
        v
    } else {
        v & ((1u128 << host) - 1)
    }
}

fn net_match(host: IpAddr, net: IpAddr, masklen: u32) -> bool {
    if host.is_ipv4() != net.is_ipv4() {
        return false;
    }
    let (h, width) = to_u128(host);
    let (n, _) = to_u128(net);
    let shift = width.saturating_sub(masklen);
    if shift >= 128 {
        return true;
    }
    (h >> shift) == (n >> shift)
}

/// `addr_match_list()`: 1 on a match, 0 on none, -1 on a negated match,
/// -2 on a malformed list. With `addr = None` only the list is checked.
pub fn addr_match_list(addr: Option<&[u8]>, list: &[u8]) -> i32 {
    let try_addr = match addr {
        Some(a) => match parse_addr(a) {
            Some(ip) => Some((ip, a)),
            None => return 0,
        },
        None => None,
    };
    let mut ret = 0;
    for entry in list.split(|&b| b == b',') {
        let neg = entry.first() == Some(&b'!');
        let cp = if neg { &entry[1..] } else { entry };
        if cp.is_empty() {
            return -2;
        }
        let matched = match addr_pton_cidr(cp) {
            Cidr::Inconsistent => return -2,
            Cidr::Net(net, m) => try_addr.is_some_and(|(ip, _)| net_match(ip, net, m)),
            Cidr::NotAnAddress => try_addr.is_some_and(|(_, text)| match_pattern(text, cp)),
        };
        if matched {
            if neg {
                return -1;
            }
            ret = 1;
        }
    }
    ret
}

/// An address list sshd rejects (`addr_match_list()` returned -2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MalformedList;

impl std::fmt::Display for MalformedList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("matching a user pattern: the address list is malformed")
    }
}

impl std::error::Error for MalformedList {}

/// `match_host_and_ip()` with an unknown host name allowed (`None`).
pub fn match_host_and_ip(
    host: Option<&[u8]>,
    ip: &[u8],
    patterns: &[u8],
) -> Result<Tri, MalformedList> {
    let mip = addr_match_list(Some(ip), patterns);
    if mip == -2 {
        return Err(MalformedList);
    }
    if mip == -1 {
        return Ok(Tri::No);
    }
    let Some(host) = host else {
        // Only a negated host pattern could still refuse an address match.
        if mip == 1 && !patterns.contains(&b'!') {
            return Ok(Tri::Yes);
        }
        return Ok(Tri::Unknown);
    };
    let mhost = match_hostname(host, patterns);
    if mhost == -1 {
        return Ok(Tri::No);
    }
    Ok(Tri::from_bool(!(mhost == 0 && mip == 0)))
}

/// `match_user(NULL, NULL, NULL, pattern)`: false when sshd rejects the
/// pattern (`invalid AllowUsers pattern`).
pub fn user_pattern_valid(pattern: &[u8]) -> bool {
    match pattern.iter().position(|&b| b == b'@') {
        Some(i) => addr_match_list(None, &pattern[i + 1..]) != -2,
        None => true,
    }
}

/// `match_user()` for a connection: `user[@host-or-address-patterns]`.
pub fn match_user(
    user: &[u8],
    host: Option<&[u8]>,
    ip: Option<&[u8]>,
    pattern: &[u8],
) -> Result<Tri, MalformedList> {
    let Some(at) = pattern.iter().position(|&b| b == b'@') else {
        return Ok(Tri::from_bool(match_pattern(user, pattern)));
    };
    if !match_pattern(user, &pattern[..at]) {
        return Ok(Tri::No);
    }
    match ip {
        Some(ip) => match_host_and_ip(host, ip, &pattern[at + 1..]),
        None => {
            if addr_match_list(None, &pattern[at + 1..]) == -2 {
                return Err(MalformedList);
            }
            Ok(Tri::Unknown)
        }
    }
}

/// `ga_match_pattern_list()` (`Match Group`): a negated match on any group
/// wins, otherwise any positive match.
pub fn groups_match_pattern_list(groups: &[String], pattern: &[u8]) -> bool {
    let mut found = false;
    for g in groups {
        match match_pattern_list(g.as_bytes(), pattern, false) {
            -1 => return false,
            1 => found = true,
            _ => {}
        }
    }
    found
}

/// `ga_match()` (`AllowGroups`/`DenyGroups`): any group matches any single
/// pattern (no lists, no negation).
pub fn groups_match_any(groups: &[String], patterns: &[String]) -> bool {
    groups.iter().any(|g| {
        patterns
            .iter()
            .any(|p| match_pattern(g.as_bytes(), p.as_bytes()))
    })
}

/// fnmatch(3) for one path component as glob(3) uses it: `*`, `?`,
/// `[...]` (ranges, `!`/`^` negation), `\` escapes, and a leading `.` in
/// the name must be matched by a literal `.`.
pub fn glob_component_match(pattern: &[u8], name: &[u8]) -> bool {
    if name.first() == Some(&b'.') && pattern.first() != Some(&b'.') {
        return false;
    }
    fnmatch(pattern, name)
}

fn fnmatch(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    loop {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
            continue;
        }
        if si < s.len() {
            if let Some(np) = fn_single(p, pi, s[si]) {
                pi = np;
                si += 1;
                continue;
            }
        } else if pi == p.len() {
            return true;
        }
        match star {
            Some((sp, ss)) if ss < s.len() => {
                pi = sp + 1;
                si = ss + 1;
                star = Some((sp, ss + 1));
            }
            _ => return false,
        }
    }
}

/// Matches one pattern element at `p[pi]` against `c`; the index after it.
fn fn_single(p: &[u8], pi: usize, c: u8) -> Option<usize> {
    let &pc = p.get(pi)?;
    match pc {
        b'?' => Some(pi + 1),
        b'[' => match bracket(p, pi, c) {
            Some((true, next)) => Some(next),
            Some((false, _)) => None,
            // An unterminated bracket is a literal '['.
            None => (c == b'[').then_some(pi + 1),
        },
        b'\\' => match p.get(pi + 1) {
            Some(&e) => (e == c).then_some(pi + 2),
            None => (c == b'\\').then_some(pi + 1),
        },
        _ => (pc == c).then_some(pi + 1),
    }
}

/// Evaluates a bracket expression at `p[start] == '['` against `c`:
/// `Some((matched, index after ']'))`, or `None` when it is unterminated.
fn bracket(p: &[u8], start: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(p.get(i), Some(b'!') | Some(b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let &ch = p.get(i)?;
        if ch == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        let (lo, after) = if ch == b'\\' {
            (*p.get(i + 1)?, i + 2)
        } else {
            (ch, i + 1)
        };
        if p.get(after) == Some(&b'-') && p.get(after + 1).is_some_and(|&b| b != b']') {
            let (hi, next) = if p[after + 1] == b'\\' {
                (*p.get(after + 2)?, after + 3)
            } else {
                (p[after + 1], after + 2)
            };
            if lo <= c && c <= hi {
                matched = true;
            }
            i = next;
        } else {
            if lo == c {
                matched = true;
            }
            i = after;
        }
    }
}

/// True when `pattern` has glob(3) magic characters.
pub fn has_glob_magic(pattern: &[u8]) -> bool {
    pattern.iter().any(|&b| matches!(b, b'*' | b'?' | b'['))
}

/// glob(3) over a directory tree the caller lists: `list_dir(dir)` returns
/// the names in `dir` (or `None` when it cannot be read). Results are sorted
/// bytewise like glob(3) in the C locale sshd runs in. Components without
/// magic are not listed, only checked by the caller's read later, matching
/// glob(3) which returns them only if they exist; `exists(path)` answers that.
pub fn glob_with(
    pattern: &str,
    list_dir: &dyn Fn(&str) -> Option<Vec<String>>,
    exists: &dyn Fn(&str) -> bool,
) -> Vec<String> {
    const MAX_RESULTS: usize = 4096;
    if !pattern.starts_with('/') {
        return Vec::new();
    }
    let comps: Vec<&str> = pattern.split('/').filter(|c| !c.is_empty()).collect();
    let mut current: Vec<String> = vec![String::new()];
    for (idx, comp) in comps.iter().enumerate() {
        let last = idx + 1 == comps.len();
        let mut next = Vec::new();
        for base in &current {
            let dir = if base.is_empty() {
                "/".to_owned()
            } else {
                base.clone()
            };
            if has_glob_magic(comp.as_bytes()) {
                let Some(mut names) = list_dir(&dir) else {
                    continue;
                };
                names.sort();
                for n in names {
                    if n == "." || n == ".." {
                        continue;
                    }
                    if glob_component_match(comp.as_bytes(), n.as_bytes()) {
                        next.push(format!("{base}/{n}"));
                        if next.len() >= MAX_RESULTS {
                            break;
                        }
                    }
                }
            } else {
                let unescaped: String = unescape_glob(comp);
                let path = format!("{base}/{unescaped}");
                if !last || exists(&path) {
                    next.push(path);
                }
            }
        }
        current = next;
        if current.is_empty() {
            break;
        }
    }
    current.retain(|p| !p.is_empty() && exists(p));
    current.sort();
    current
}

fn unescape_glob(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut esc = false;
    for c in s.chars() {
        if c == '\\' && !esc {
            esc = true;
            continue;
        }
        esc = false;
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(match_pattern(b"alice", b"a*"));
        assert!(match_pattern(b"alice", b"?lic?"));
        assert!(!match_pattern(b"alice", b"?lic"));
        assert!(match_pattern(b"", b"*"));
        assert!(!match_pattern(b"", b"?"));
        assert!(match_pattern(b"abcabc", b"*c*c"));
        assert!(!match_pattern(b"abcab", b"*c*c"));
        let long = vec![b'a'; 5000];
        assert!(!match_pattern(&long, b"*a*a*a*a*a*a*a*a*b"));
    }

    #[test]
    fn lists() {
        assert_eq!(match_pattern_list(b"bob", b"alice,b*", false), 1);
        assert_eq!(match_pattern_list(b"bob", b"*,!bob", false), -1);
        assert_eq!(match_pattern_list(b"carol", b"alice,bob", false), 0);
        assert_eq!(match_pattern_list(b"bob", b"BOB", false), 0);
        assert_eq!(match_hostname(b"Host.Example.COM", b"*.example.com"), 1);
        let mut big = vec![b'a'; 1100];
        big.push(b',');
        big.push(b'*');
        assert_eq!(match_pattern_list(b"x", &big, false), 0);
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_addr(b"10.1"), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(parse_addr(b"0x7f.1"), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(parse_addr(b"256.1.1.1"), None);
        assert_eq!(parse_addr(b"::1"), Some("::1".parse().unwrap()));
        assert_eq!(parse_addr(b"fe80::1%2"), Some("fe80::1".parse().unwrap()));
        assert_eq!(parse_addr(b"host"), None);
        assert_eq!(addr_match_list(Some(b"192.168.1.5"), b"192.168.1.0/24"), 1);
        assert_eq!(addr_match_list(Some(b"192.168.2.5"), b"192.168.1.0/24"), 0);
        assert_eq!(
            addr_match_list(Some(b"192.168.1.5"), b"!192.168.1.0/24,*"),
            -1
        );
        assert_eq!(addr_match_list(Some(b"192.168.1.5"), b"192.168.1.*"), 1);
        assert_eq!(addr_match_list(None, b"192.168.1.1/24"), -2);
        assert_eq!(addr_match_list(None, b"10.0.0.0/33"), -2);
        assert_eq!(addr_match_list(None, b"a,,b"), -2);
        assert_eq!(addr_match_list(None, b"*.example.com,10.0.0.0/8"), 0);
        assert_eq!(addr_match_list(Some(b"2001:db8::1"), b"2001:db8::/32"), 1);
        assert_eq!(addr_match_list(Some(b"not-an-ip"), b"*"), 0);
    }

    #[test]
    fn users() {
        assert_eq!(
            match_user(b"bob", None, Some(b"10.0.0.1"), b"bob"),
            Ok(Tri::Yes)
        );
        assert_eq!(
            match_user(b"bob", None, Some(b"10.0.0.1"), b"bob@10.0.0.0/8"),
            Ok(Tri::Yes)
        );
        assert_eq!(
            match_user(b"bob", None, Some(b"11.0.0.1"), b"bob@10.0.0.0/8"),
            Ok(Tri::Unknown)
        );
        assert_eq!(
            match_user(
                b"bob",
                Some(b"11.0.0.1"),
                Some(b"11.0.0.1"),
                b"bob@10.0.0.0/8"
            ),
            Ok(Tri::No)
        );
        assert_eq!(
            match_user(
                b"bob",
                Some(b"h.example.com"),
                Some(b"11.0.0.1"),
                b"bob@*.example.com"
            ),
            Ok(Tri::Yes)
        );
        assert_eq!(match_user(b"al", None, None, b"bob@x"), Ok(Tri::No));
        assert!(match_user(b"bob", None, Some(b"1.1.1.1"), b"bob@1.1.1.1/8").is_err());
        assert!(!user_pattern_valid(b"bob@1.1.1.1/8"));
        assert!(user_pattern_valid(b"bob@*.x"));
        let g = vec!["wheel".to_owned(), "users".to_owned()];
        assert!(groups_match_pattern_list(&g, b"wh*"));
        assert!(!groups_match_pattern_list(&g, b"*,!users"));
        assert!(groups_match_any(&g, &["users".to_owned()]));
    }

    #[test]
    fn globbing() {
        assert!(glob_component_match(b"*.conf", b"a.conf"));
        assert!(!glob_component_match(b"*.conf", b".hidden.conf"));
        assert!(glob_component_match(b".*.conf", b".hidden.conf"));
        assert!(glob_component_match(b"[a-c]x", b"bx"));
        assert!(!glob_component_match(b"[!a-c]x", b"bx"));
        assert!(glob_component_match(b"a\\*", b"a*"));
        assert!(!glob_component_match(b"a\\*", b"ab"));
        assert!(glob_component_match(b"[x", b"[x"));
        let list = |d: &str| -> Option<Vec<String>> {
            match d {
                "/etc/ssh/sshd_config.d" => Some(vec![
                    "b.conf".into(),
                    "a.conf".into(),
                    ".x.conf".into(),
                    "c.txt".into(),
                ]),
                _ => None,
            }
        };
        let exists = |p: &str| p.starts_with("/etc/ssh");
        assert_eq!(
            glob_with("/etc/ssh/sshd_config.d/*.conf", &list, &exists),
            [
                "/etc/ssh/sshd_config.d/a.conf",
                "/etc/ssh/sshd_config.d/b.conf"
            ]
        );
        assert_eq!(glob_with("/etc/ssh/x", &list, &exists), ["/etc/ssh/x"]);
        assert!(glob_with("/nope/x", &list, &exists).is_empty());
    }
}
