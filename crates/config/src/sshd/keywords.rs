//! The sshd_config keywords of every modelled OpenSSH release: which exist,
//! how sshd treats each (normal, deprecated, unsupported, silently
//! ignored), whether it is allowed inside `Match`, what argument it takes,
//! and which come from distribution patches.
//!
//! The table was written from reading `servconf.c` at every release tag
//! from 7.4 to 10.0 and the Debian/Ubuntu packaging; each row carries the
//! release range it applies to, so a release between the named ones gets
//! exactly its own rules. Pure data and lookups; no I/O.

use serde::Serialize;

use super::version::{Distro, Target};

/// How sshd processes a keyword's arguments (one handler in servconf.c).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Flag,
    Multi(&'static [&'static str]),
    Int,
    Time,
    Port,
    ListenAddress,
    HostKey,
    HostKeyAgent,
    HostCertificate,
    Filename,
    KeyTypes,
    CaKeyTypes,
    PubkeyAuthOptions,
    PermitUserEnv,
    RekeyLimit,
    LogFacility,
    LogLevel,
    LogVerbose,
    AllowDenyUsers,
    AllowDenyGroups,
    Ciphers,
    Macs,
    KexAlgorithms,
    GssKexAlgorithms,
    Subsystem,
    MaxStartups,
    PerSourceNetBlockSize,
    PerSourceMaxStartups,
    PerSourcePenalties,
    PerSourcePenaltyExemptList,
    AuthorizedKeysFile,
    AuthorizedPrincipalsFile,
    AcceptEnv,
    SetEnv,
    PermitTunnel,
    Include,
    Match,
    PermitOpen,
    PermitListen,
    ForceCommand,
    ChrootDirectory,
    SecurityKeyProvider,
    IpQos,
    VersionAddendum,
    Command,
    LocalUser,
    AuthenticationMethods,
    StreamLocalBindMask,
    FingerprintHash,
    RDomain,
    ChannelTimeout,
    UnusedConnectionTimeout,
    PamServiceName,
    Deprecated,
    Ignore,
    Unsupported,
}

pub(crate) const MS_FLAG: &[&str] = &["yes", "no"];
pub(crate) const MS_IGNORE_RHOSTS: &[&str] = &["yes", "no", "shosts-only"];
pub(crate) const MS_ADDRESS_FAMILY: &[&str] = &["inet", "inet6", "any"];
pub(crate) const MS_PERMIT_ROOT_LOGIN: &[&str] = &[
    "without-password",
    "prohibit-password",
    "forced-commands-only",
    "yes",
    "no",
];
pub(crate) const MS_COMPRESSION: &[&str] = &["yes", "delayed", "no"];
pub(crate) const MS_GATEWAY_PORTS: &[&str] = &["clientspecified", "yes", "no"];
pub(crate) const MS_TCP_FWD: &[&str] = &["yes", "all", "no", "remote", "local"];
pub(crate) const MS_PRIVSEP: &[&str] = &["yes", "sandbox", "nosandbox", "no"];
/// `PermitTunnel` values (compared case-sensitively by sshd).
pub(crate) const TUN_MODES: &[&str] = &["no", "point-to-point", "ethernet", "yes"];

/// Which build adds the keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Portable OpenSSH itself.
    Upstream,
    /// The GSSAPI key-exchange patch Debian, Ubuntu and RHEL all carry.
    GssapiPatch,
    /// A Debian/Ubuntu-only patch.
    Debian,
    /// A RHEL/Fedora-only patch.
    Rhel,
}

type Release = (u32, u32);

/// One row: a keyword's behaviour over a release range.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kw {
    /// Lowercase name as sshd compares it.
    pub name: &'static str,
    /// The spelling sshd_config(5) uses.
    pub display: &'static str,
    /// Handler.
    pub op: Op,
    /// `SSHCFG_MATCH`: allowed inside a `Match` block.
    pub in_match: bool,
    /// First release with this row.
    pub since: Release,
    /// First release without it.
    pub until: Option<Release>,
    /// Which build provides it.
    pub origin: Origin,
    /// The setting it feeds (lowercase name of the main keyword).
    pub setting: &'static str,
}

const OLD: Release = (7, 4);

const fn kw(name: &'static str, display: &'static str, op: Op, in_match: bool) -> Kw {
    Kw {
        name,
        display,
        op,
        in_match,
        since: OLD,
        until: None,
        origin: Origin::Upstream,
        setting: name,
    }
}

impl Kw {
    const fn since(mut self, r: Release) -> Kw {
        self.since = r;
        self
    }
    const fn until(mut self, r: Release) -> Kw {
        self.until = Some(r);
        self
    }
    const fn feeds(mut self, setting: &'static str) -> Kw {
        self.setting = setting;
        self
    }
    const fn from(mut self, origin: Origin) -> Kw {
        self.origin = origin;
        self
    }
}

use Op::*;

const G: bool = false;
const A: bool = true;

/// Every row. Later rows never overlap earlier rows for the same name.
pub(crate) const TABLE: &[Kw] = &[
    kw("usepam", "UsePAM", Flag, G),
    kw("pamservicename", "PAMServiceName", PamServiceName, A).since((9, 8)),
    kw(
        "pamauthenticationviakbdint",
        "PAMAuthenticationViaKbdInt",
        Deprecated,
        G,
    ),
    kw("port", "Port", Port, G),
    kw("hostkey", "HostKey", HostKey, G),
    kw("hostdsakey", "HostDSAKey", HostKey, G).feeds("hostkey"),
    kw("hostkeyagent", "HostKeyAgent", HostKeyAgent, G),
    kw("pidfile", "PidFile", Filename, G),
    kw("modulifile", "ModuliFile", Filename, G).since((8, 6)),
    kw("serverkeybits", "ServerKeyBits", Deprecated, G),
    kw("logingracetime", "LoginGraceTime", Time, G),
    kw(
        "keyregenerationinterval",
        "KeyRegenerationInterval",
        Deprecated,
        G,
    ),
    kw(
        "permitrootlogin",
        "PermitRootLogin",
        Multi(MS_PERMIT_ROOT_LOGIN),
        A,
    ),
    kw("syslogfacility", "SyslogFacility", LogFacility, G),
    kw("loglevel", "LogLevel", LogLevel, G).until((7, 6)),
    kw("loglevel", "LogLevel", LogLevel, A).since((7, 6)),
    kw("logverbose", "LogVerbose", LogVerbose, A).since((8, 5)),
    kw(
        "rhostsauthentication",
        "RhostsAuthentication",
        Deprecated,
        G,
    ),
    kw(
        "rhostsrsaauthentication",
        "RhostsRSAAuthentication",
        Deprecated,
        A,
    ),
    kw(
        "hostbasedauthentication",
        "HostbasedAuthentication",
        Flag,
        A,
    ),
    kw(
        "hostbasedusesnamefrompacketonly",
        "HostbasedUsesNameFromPacketOnly",
        Flag,
        A,
    ),
    kw(
        "hostbasedacceptedalgorithms",
        "HostbasedAcceptedAlgorithms",
        KeyTypes,
        A,
    )
    .since((8, 5)),
    kw(
        "hostbasedacceptedkeytypes",
        "HostbasedAcceptedKeyTypes",
        KeyTypes,
        A,
    )
    .feeds("hostbasedacceptedalgorithms"),
    kw("hostkeyalgorithms", "HostKeyAlgorithms", KeyTypes, G),
    kw("rsaauthentication", "RSAAuthentication", Deprecated, A),
    kw("pubkeyauthentication", "PubkeyAuthentication", Flag, A),
    kw(
        "pubkeyacceptedalgorithms",
        "PubkeyAcceptedAlgorithms",
        KeyTypes,
        A,
    )
    .since((8, 5)),
    kw(
        "pubkeyacceptedkeytypes",
        "PubkeyAcceptedKeyTypes",
        KeyTypes,
        A,
    )
    .feeds("pubkeyacceptedalgorithms"),
    kw(
        "pubkeyauthoptions",
        "PubkeyAuthOptions",
        PubkeyAuthOptions,
        A,
    )
    .since((8, 2)),
    kw("dsaauthentication", "DSAAuthentication", Flag, G).feeds("pubkeyauthentication"),
    kw("kerberosauthentication", "KerberosAuthentication", Flag, A),
    kw("kerberosorlocalpasswd", "KerberosOrLocalPasswd", Flag, G),
    kw("kerberosticketcleanup", "KerberosTicketCleanup", Flag, G),
    kw("kerberosgetafstoken", "KerberosGetAFSToken", Unsupported, G),
    kw("kerberostgtpassing", "KerberosTgtPassing", Unsupported, G),
    kw("afstokenpassing", "AFSTokenPassing", Unsupported, G),
    kw("gssapiauthentication", "GSSAPIAuthentication", Flag, A),
    kw(
        "gssapicleanupcredentials",
        "GSSAPICleanupCredentials",
        Flag,
        G,
    ),
    kw(
        "gssapistrictacceptorcheck",
        "GSSAPIStrictAcceptorCheck",
        Flag,
        G,
    ),
    kw("passwordauthentication", "PasswordAuthentication", Flag, A),
    kw(
        "kbdinteractiveauthentication",
        "KbdInteractiveAuthentication",
        Flag,
        A,
    ),
    kw(
        "challengeresponseauthentication",
        "ChallengeResponseAuthentication",
        Flag,
        G,
    )
    .until((8, 7)),
    kw(
        "challengeresponseauthentication",
        "ChallengeResponseAuthentication",
        Flag,
        A,
    )
    .since((8, 7))
    .feeds("kbdinteractiveauthentication"),
    kw("skeyauthentication", "SkeyAuthentication", Flag, G)
        .until((7, 8))
        .feeds("challengeresponseauthentication"),
    kw("skeyauthentication", "SkeyAuthentication", Deprecated, G)
        .since((7, 8))
        .until((8, 7)),
    kw("skeyauthentication", "SkeyAuthentication", Flag, A)
        .since((8, 7))
        .feeds("kbdinteractiveauthentication"),
    kw("checkmail", "CheckMail", Deprecated, G),
    kw("listenaddress", "ListenAddress", ListenAddress, G),
    kw(
        "addressfamily",
        "AddressFamily",
        Multi(MS_ADDRESS_FAMILY),
        G,
    ),
    kw("printmotd", "PrintMotd", Flag, G),
    kw("printlastlog", "PrintLastLog", Flag, G),
    kw("ignorerhosts", "IgnoreRhosts", Flag, G).until((8, 3)),
    kw("ignorerhosts", "IgnoreRhosts", Multi(MS_IGNORE_RHOSTS), A).since((8, 3)),
    kw("ignoreuserknownhosts", "IgnoreUserKnownHosts", Flag, G),
    kw("x11forwarding", "X11Forwarding", Flag, A),
    kw("x11displayoffset", "X11DisplayOffset", Int, A),
    kw("x11uselocalhost", "X11UseLocalhost", Flag, A),
    kw("xauthlocation", "XAuthLocation", Filename, G),
    kw("strictmodes", "StrictModes", Flag, G),
    kw("permitemptypasswords", "PermitEmptyPasswords", Flag, A),
    kw("permituserenvironment", "PermitUserEnvironment", Flag, G).until((7, 8)),
    kw(
        "permituserenvironment",
        "PermitUserEnvironment",
        PermitUserEnv,
        G,
    )
    .since((7, 8)),
    kw("uselogin", "UseLogin", Deprecated, G),
    kw("compression", "Compression", Multi(MS_COMPRESSION), G),
    kw("rekeylimit", "RekeyLimit", RekeyLimit, A),
    kw("tcpkeepalive", "TCPKeepAlive", Flag, G),
    kw("keepalive", "KeepAlive", Flag, G).feeds("tcpkeepalive"),
    kw(
        "allowtcpforwarding",
        "AllowTcpForwarding",
        Multi(MS_TCP_FWD),
        A,
    ),
    kw("allowagentforwarding", "AllowAgentForwarding", Flag, A),
    kw("allowusers", "AllowUsers", AllowDenyUsers, A),
    kw("denyusers", "DenyUsers", AllowDenyUsers, A),
    kw("allowgroups", "AllowGroups", AllowDenyGroups, A),
    kw("denygroups", "DenyGroups", AllowDenyGroups, A),
    kw("ciphers", "Ciphers", Ciphers, G),
    kw("macs", "MACs", Macs, G),
    kw("protocol", "Protocol", Ignore, G),
    kw("gatewayports", "GatewayPorts", Multi(MS_GATEWAY_PORTS), A),
    kw("subsystem", "Subsystem", Subsystem, G).until((9, 5)),
    kw("subsystem", "Subsystem", Subsystem, A).since((9, 5)),
    kw("maxstartups", "MaxStartups", MaxStartups, G),
    kw(
        "persourcemaxstartups",
        "PerSourceMaxStartups",
        PerSourceMaxStartups,
        G,
    )
    .since((8, 5)),
    kw(
        "persourcenetblocksize",
        "PerSourceNetBlockSize",
        PerSourceNetBlockSize,
        G,
    )
    .since((8, 5)),
    kw(
        "persourcepenalties",
        "PerSourcePenalties",
        PerSourcePenalties,
        G,
    )
    .since((9, 8)),
    kw(
        "persourcepenaltyexemptlist",
        "PerSourcePenaltyExemptList",
        PerSourcePenaltyExemptList,
        G,
    )
    .since((9, 8)),
    kw("maxauthtries", "MaxAuthTries", Int, A),
    kw("maxsessions", "MaxSessions", Int, A),
    kw("banner", "Banner", Filename, A),
    kw("usedns", "UseDNS", Flag, G),
    kw(
        "verifyreversemapping",
        "VerifyReverseMapping",
        Deprecated,
        G,
    ),
    kw("reversemappingcheck", "ReverseMappingCheck", Deprecated, G),
    kw("clientaliveinterval", "ClientAliveInterval", Time, A),
    kw("clientalivecountmax", "ClientAliveCountMax", Int, A),
    kw(
        "authorizedkeysfile",
        "AuthorizedKeysFile",
        AuthorizedKeysFile,
        A,
    ),
    kw("authorizedkeysfile2", "AuthorizedKeysFile2", Deprecated, A),
    kw(
        "useprivilegeseparation",
        "UsePrivilegeSeparation",
        Multi(MS_PRIVSEP),
        G,
    )
    .until((7, 5)),
    kw(
        "useprivilegeseparation",
        "UsePrivilegeSeparation",
        Deprecated,
        G,
    )
    .since((7, 5)),
    kw("acceptenv", "AcceptEnv", AcceptEnv, A),
    kw("setenv", "SetEnv", SetEnv, A).since((7, 8)),
    kw("permittunnel", "PermitTunnel", PermitTunnel, A),
    kw("permittty", "PermitTTY", Flag, A),
    kw("permituserrc", "PermitUserRC", Flag, A),
    kw("match", "Match", Match, A),
    kw("permitopen", "PermitOpen", PermitOpen, A),
    kw("permitlisten", "PermitListen", PermitListen, A).since((7, 8)),
    kw("forcecommand", "ForceCommand", ForceCommand, A),
    kw("chrootdirectory", "ChrootDirectory", ChrootDirectory, A),
    kw("hostcertificate", "HostCertificate", HostCertificate, G),
    kw("revokedkeys", "RevokedKeys", Filename, A),
    kw("trustedusercakeys", "TrustedUserCAKeys", Filename, A),
    kw(
        "authorizedprincipalsfile",
        "AuthorizedPrincipalsFile",
        AuthorizedPrincipalsFile,
        A,
    ),
    kw("kexalgorithms", "KexAlgorithms", KexAlgorithms, G),
    kw("include", "Include", Include, A).since((8, 2)),
    kw("ipqos", "IPQoS", IpQos, A),
    kw("authorizedkeyscommand", "AuthorizedKeysCommand", Command, A),
    kw(
        "authorizedkeyscommanduser",
        "AuthorizedKeysCommandUser",
        LocalUser,
        A,
    ),
    kw(
        "authorizedprincipalscommand",
        "AuthorizedPrincipalsCommand",
        Command,
        A,
    ),
    kw(
        "authorizedprincipalscommanduser",
        "AuthorizedPrincipalsCommandUser",
        LocalUser,
        A,
    ),
    kw("versionaddendum", "VersionAddendum", VersionAddendum, G),
    kw(
        "authenticationmethods",
        "AuthenticationMethods",
        AuthenticationMethods,
        A,
    ),
    kw(
        "streamlocalbindmask",
        "StreamLocalBindMask",
        StreamLocalBindMask,
        A,
    ),
    kw("streamlocalbindunlink", "StreamLocalBindUnlink", Flag, A),
    kw(
        "allowstreamlocalforwarding",
        "AllowStreamLocalForwarding",
        Multi(MS_TCP_FWD),
        A,
    ),
    kw("fingerprinthash", "FingerprintHash", FingerprintHash, G),
    kw("disableforwarding", "DisableForwarding", Flag, A),
    kw("exposeauthinfo", "ExposeAuthInfo", Flag, A).since((7, 6)),
    kw("rdomain", "RDomain", RDomain, A).since((7, 7)),
    kw(
        "casignaturealgorithms",
        "CASignatureAlgorithms",
        KeyTypes,
        A,
    )
    .since((7, 9))
    .until((9, 4)),
    kw(
        "casignaturealgorithms",
        "CASignatureAlgorithms",
        CaKeyTypes,
        A,
    )
    .since((9, 4)),
    kw(
        "securitykeyprovider",
        "SecurityKeyProvider",
        SecurityKeyProvider,
        G,
    )
    .since((8, 2)),
    kw("requiredrsasize", "RequiredRSASize", Int, A).since((9, 1)),
    kw("channeltimeout", "ChannelTimeout", ChannelTimeout, A).since((9, 2)),
    kw(
        "unusedconnectiontimeout",
        "UnusedConnectionTimeout",
        UnusedConnectionTimeout,
        A,
    )
    .since((9, 2)),
    kw("sshdsessionpath", "SshdSessionPath", Filename, G).since((9, 8)),
    kw("refuseconnection", "RefuseConnection", Flag, A).since((9, 9)),
    kw("sshdauthpath", "SshdAuthPath", Filename, G).since((10, 0)),
    // The GSSAPI key-exchange patch (Debian, Ubuntu, RHEL, Fedora).
    kw("gssapikeyexchange", "GSSAPIKeyExchange", Flag, G).from(Origin::GssapiPatch),
    kw(
        "gssapistorecredentialsonrekey",
        "GSSAPIStoreCredentialsOnRekey",
        Flag,
        G,
    )
    .from(Origin::GssapiPatch),
    kw(
        "gssapikexalgorithms",
        "GSSAPIKexAlgorithms",
        GssKexAlgorithms,
        G,
    )
    .since((8, 0))
    .from(Origin::GssapiPatch),
    // Debian and Ubuntu.
    kw("gssapicleanupcreds", "GSSAPICleanupCreds", Flag, G)
        .from(Origin::Debian)
        .feeds("gssapicleanupcredentials"),
    kw("gssusesessionccache", "GSSUseSessionCCache", Unsupported, G).from(Origin::Debian),
    kw(
        "gssapiusesessioncredcache",
        "GSSAPIUseSessionCredCache",
        Unsupported,
        G,
    )
    .from(Origin::Debian),
    kw(
        "permitblacklistedkeys",
        "PermitBlacklistedKeys",
        Deprecated,
        G,
    )
    .from(Origin::Debian),
    kw("debianbanner", "DebianBanner", Flag, G).from(Origin::Debian),
    // RHEL and Fedora.
    kw("gssapienablek5users", "GSSAPIEnablek5users", Flag, A).from(Origin::Rhel),
    kw("kerberosusekuserok", "KerberosUseKuserok", Flag, A).from(Origin::Rhel),
    // RHEL 9 backported RequiredRSASize to 8.7p1.
    kw("requiredrsasize", "RequiredRSASize", Int, A)
        .since((8, 7))
        .until((9, 1))
        .from(Origin::Rhel),
];

fn applies(k: &Kw, t: &Target) -> bool {
    let r = (t.rules.major, t.rules.minor);
    if r < k.since || k.until.is_some_and(|u| r >= u) {
        return false;
    }
    match k.origin {
        Origin::Upstream => true,
        Origin::GssapiPatch => t.distro != Distro::Upstream,
        Origin::Debian => t.distro == Distro::Debian,
        Origin::Rhel => t.distro == Distro::Rhel,
    }
}

/// The row sshd's `parse_token()` finds for `name` (case-insensitive).
pub(crate) fn lookup(name: &[u8], t: &Target) -> Option<&'static Kw> {
    TABLE
        .iter()
        .find(|k| applies(k, t) && k.name.as_bytes().eq_ignore_ascii_case(name))
}

/// The row for the canonical setting `name` (used to label settings).
pub(crate) fn by_setting(setting: &str, t: &Target) -> Option<&'static Kw> {
    TABLE
        .iter()
        .find(|k| applies(k, t) && k.name == setting)
        .or_else(|| TABLE.iter().find(|k| k.name == setting))
}

/// How sshd treats a known keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeywordClass {
    /// Parsed and used.
    Normal,
    /// Accepted with an INFO log line "Deprecated option …".
    Deprecated,
    /// Compiled out: accepted with "Unsupported option …".
    Unsupported,
    /// Accepted and ignored without any message (`Protocol`).
    Ignored,
}

/// The kind of argument a keyword takes, for callers that build values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ArgKind {
    /// `yes` or `no`.
    Flag,
    /// One of a fixed set of words.
    Choice {
        /// The accepted words.
        values: Vec<String>,
    },
    /// A non-negative integer.
    Integer,
    /// A time (`30`, `2m`, `1h30m`).
    Time,
    /// A TCP port (1–65535 or a service name).
    Port,
    /// `host|IPv4|[IPv6][:port] [rdomain name]`.
    ListenAddress,
    /// One path.
    Path,
    /// One or more paths or patterns.
    PathList,
    /// One or more user or group patterns.
    PatternList,
    /// One comma-separated algorithm list (optionally `+`, `-`, `^` prefixed).
    AlgorithmList,
    /// The rest of the line, as a command.
    Command,
    /// Match criteria.
    MatchCriteria,
    /// Anything (deprecated and unsupported keywords).
    Any,
    /// Another keyword-specific syntax.
    Special,
}

/// What a keyword is for a given sshd build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct KeywordInfo {
    /// The spelling sshd_config(5) uses.
    pub name: String,
    /// How sshd treats it.
    pub class: KeywordClass,
    /// Allowed inside a `Match` block.
    pub allowed_in_match: bool,
    /// The argument it takes.
    pub arg: ArgKind,
    /// Which build adds it.
    pub origin: Origin,
}

fn class_of(op: Op) -> KeywordClass {
    match op {
        Deprecated => KeywordClass::Deprecated,
        Unsupported => KeywordClass::Unsupported,
        Ignore => KeywordClass::Ignored,
        _ => KeywordClass::Normal,
    }
}

fn arg_of(op: Op) -> ArgKind {
    match op {
        Flag => ArgKind::Flag,
        Multi(v) => ArgKind::Choice {
            values: v.iter().map(|s| (*s).to_owned()).collect(),
        },
        PermitTunnel => ArgKind::Choice {
            values: TUN_MODES.iter().map(|s| (*s).to_owned()).collect(),
        },
        Int | PerSourceMaxStartups => ArgKind::Integer,
        Time | UnusedConnectionTimeout => ArgKind::Time,
        Port => ArgKind::Port,
        ListenAddress => ArgKind::ListenAddress,
        HostKey
        | HostKeyAgent
        | HostCertificate
        | Filename
        | ChrootDirectory
        | AuthorizedPrincipalsFile
        | SecurityKeyProvider => ArgKind::Path,
        AuthorizedKeysFile | Include => ArgKind::PathList,
        AllowDenyUsers | AllowDenyGroups | AcceptEnv | SetEnv => ArgKind::PatternList,
        KeyTypes | CaKeyTypes | Ciphers | Macs | KexAlgorithms | GssKexAlgorithms => {
            ArgKind::AlgorithmList
        }
        ForceCommand | Command | VersionAddendum => ArgKind::Command,
        Match => ArgKind::MatchCriteria,
        Deprecated | Ignore | Unsupported => ArgKind::Any,
        _ => ArgKind::Special,
    }
}

/// What `name` (any case) is for the sshd described by `target`, or `None`
/// when sshd would say "Bad configuration option".
pub fn keyword_info(name: &str, target: &Target) -> Option<KeywordInfo> {
    lookup(name.as_bytes(), target).map(info)
}

fn info(k: &Kw) -> KeywordInfo {
    KeywordInfo {
        name: k.display.to_owned(),
        class: class_of(k.op),
        allowed_in_match: k.in_match,
        arg: arg_of(k.op),
        origin: k.origin,
    }
}

/// Every keyword the sshd described by `target` knows.
pub fn keywords(target: &Target) -> Vec<KeywordInfo> {
    TABLE
        .iter()
        .filter(|k| applies(k, target))
        .map(info)
        .collect()
}

/// Damerau-Levenshtein (optimal string alignment) distance, ASCII
/// case-insensitive, capped: returns `cap + 1` as soon as it must exceed
/// `cap`. Words longer than 64 bytes are never close to a keyword.
pub(crate) fn edit_distance(a: &[u8], b: &[u8], cap: usize) -> usize {
    const W: usize = 66;
    let (n, m) = (a.len(), b.len());
    if n.abs_diff(m) > cap || n >= W || m >= W {
        return cap + 1;
    }
    let mut prev2 = [0usize; W];
    let mut prev = [0usize; W];
    let mut cur = [0usize; W];
    for (j, p) in prev.iter_mut().enumerate().take(m + 1) {
        *p = j;
    }
    for i in 1..=n {
        cur[0] = i;
        let mut row_min = i;
        let ai = a[i - 1].to_ascii_lowercase();
        for j in 1..=m {
            let bj = b[j - 1].to_ascii_lowercase();
            let cost = usize::from(ai != bj);
            let mut v = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1
                && j > 1
                && ai == b[j - 2].to_ascii_lowercase()
                && a[i - 2].to_ascii_lowercase() == bj
            {
                v = v.min(prev2[j - 2] + 1);
            }
            cur[j] = v;
            row_min = row_min.min(v);
        }
        if row_min > cap {
            return cap + 1;
        }
        prev2 = prev;
        prev = cur;
    }
    prev[m]
}

/// The real keyword an unknown `name` is a near miss of: edit distance at
/// most 2 to exactly one keyword of this build that sshd fully supports
/// (deprecated, unsupported and ignored ones are never proposed).
pub fn suggest_keyword(name: &[u8], target: &Target) -> Option<&'static str> {
    const CAP: usize = 2;
    if name.is_empty() || name.len() > 64 {
        return None;
    }
    let mut best: Option<(usize, &'static str)> = None;
    let mut tie = false;
    for k in TABLE {
        if k.name.len().abs_diff(name.len()) > CAP
            || !applies(k, target)
            || class_of(k.op) != KeywordClass::Normal
        {
            continue;
        }
        let d = edit_distance(name, k.name.as_bytes(), CAP);
        if d > CAP {
            continue;
        }
        match best {
            Some((bd, _)) if d > bd => {}
            // The same keyword can have several rows.
            Some((bd, b)) if d == bd => tie |= b != k.display,
            _ => {
                best = Some((d, k.display));
                tie = false;
            }
        }
    }
    match best {
        Some((_, name)) if !tie => Some(name),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::version::OpensshVersion;
    use super::*;

    fn t(a: u32, b: u32, d: Distro) -> Target {
        Target::new(OpensshVersion::new(a, b), d)
    }

    #[test]
    fn rows_never_overlap() {
        for (i, a) in TABLE.iter().enumerate() {
            for b in &TABLE[i + 1..] {
                if a.name != b.name || a.origin != b.origin {
                    continue;
                }
                let a_end = a.until.unwrap_or((999, 0));
                let b_end = b.until.unwrap_or((999, 0));
                assert!(a_end <= b.since || b_end <= a.since, "{} overlaps", a.name);
            }
            assert_eq!(a.name, a.name.to_ascii_lowercase());
            assert_eq!(a.name, a.display.to_ascii_lowercase());
        }
    }

    #[test]
    fn known_differences_between_releases() {
        let deb = Distro::Debian;
        let c = |name: &str, a, b| keyword_info(name, &t(a, b, deb)).map(|i| i.class);
        // UsePrivilegeSeparation became deprecated in 7.5.
        assert_eq!(
            c("UsePrivilegeSeparation", 7, 4),
            Some(KeywordClass::Normal)
        );
        assert_eq!(
            c("UsePrivilegeSeparation", 7, 5),
            Some(KeywordClass::Deprecated)
        );
        assert_eq!(
            c("UsePrivilegeSeparation", 9, 2),
            Some(KeywordClass::Deprecated)
        );
        // PubkeyAcceptedKeyTypes was renamed in 8.5 and kept as an alias.
        assert_eq!(c("PubkeyAcceptedAlgorithms", 8, 4), None);
        assert_eq!(
            c("PubkeyAcceptedAlgorithms", 8, 5),
            Some(KeywordClass::Normal)
        );
        assert_eq!(
            c("PubkeyAcceptedKeyTypes", 9, 6),
            Some(KeywordClass::Normal)
        );
        // ChallengeResponseAuthentication: its own global option before
        // 8.7, an alias of KbdInteractiveAuthentication usable in Match after.
        let cr = |a, b| keyword_info("ChallengeResponseAuthentication", &t(a, b, deb)).unwrap();
        assert!(!cr(8, 4).allowed_in_match);
        assert!(cr(8, 7).allowed_in_match);
        assert_eq!(
            lookup(b"challengeresponseauthentication", &t(8, 7, deb))
                .unwrap()
                .setting,
            "kbdinteractiveauthentication"
        );
        // Protocol is silently ignored everywhere.
        assert_eq!(c("Protocol", 7, 4), Some(KeywordClass::Ignored));
        assert_eq!(c("Protocol", 10, 0), Some(KeywordClass::Ignored));
        // Include arrived in 8.2; Subsystem became Match-able in 9.5.
        assert_eq!(c("Include", 8, 0), None);
        assert_eq!(c("Include", 8, 2), Some(KeywordClass::Normal));
        assert!(
            !keyword_info("Subsystem", &t(9, 2, deb))
                .unwrap()
                .allowed_in_match
        );
        assert!(
            keyword_info("Subsystem", &t(9, 6, deb))
                .unwrap()
                .allowed_in_match
        );
        // Distribution patches.
        assert!(keyword_info("DebianBanner", &t(9, 2, deb)).is_some());
        assert!(keyword_info("DebianBanner", &t(9, 2, Distro::Rhel)).is_none());
        assert!(keyword_info("GSSAPIEnablek5users", &t(8, 7, Distro::Rhel)).is_some());
        assert!(keyword_info("GSSAPIKexAlgorithms", &t(8, 7, Distro::Rhel)).is_some());
        assert!(keyword_info("GSSAPIKexAlgorithms", &t(9, 2, Distro::Upstream)).is_none());
        assert_eq!(
            c("KerberosGetAFSToken", 9, 2),
            Some(KeywordClass::Unsupported)
        );
        assert_eq!(c("RequiredRSASize", 8, 7), None);
        assert!(keyword_info("RequiredRSASize", &t(8, 7, Distro::Rhel)).is_some());
    }

    #[test]
    fn suggestions() {
        let tt = t(9, 2, Distro::Debian);
        assert_eq!(
            suggest_keyword(b"asswordAuthentication", &tt),
            Some("PasswordAuthentication")
        );
        assert_eq!(
            suggest_keyword(b"PermitRootLgoin", &tt),
            Some("PermitRootLogin")
        );
        assert_eq!(suggest_keyword(b"prot", &tt), Some("Port"));
        assert_eq!(suggest_keyword(b"Foo", &tt), None);
        // "AllowUser" is one edit from AllowUsers only.
        assert_eq!(suggest_keyword(b"AllowUser", &tt), Some("AllowUsers"));
        // Equidistant from AllowGroups and DenyGroups? No: only AllowGroups.
        assert_eq!(suggest_keyword(b"AlowGroups", &tt), Some("AllowGroups"));
        assert_eq!(edit_distance(b"ab", b"ba", 2), 1);
        assert_eq!(edit_distance(b"abc", b"abc", 2), 0);
        assert_eq!(edit_distance(b"a", b"abcdef", 2), 3);
    }
}
