//! The enumerations stored in SIF headers and descriptors. Every enum keeps unknown raw
//! values (`Unknown(..)`) instead of failing, because the reference reads them and prints
//! `Unknown`; `Display` gives the strings siftool prints.

use std::fmt;

macro_rules! int_enum {
    (
        $(#[$meta:meta])* $name:ident, $unknown:literal,
        { $($(#[$vmeta:meta])* $variant:ident = $value:literal => $text:literal,)* }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
            /// A value this crate does not know; kept so it can be shown and rewritten as is.
            Unknown(i32),
        }

        impl $name {
            /// The value as stored on disk.
            pub fn from_raw(raw: i32) -> Self {
                match raw {
                    $($value => Self::$variant,)*
                    other => Self::Unknown(other),
                }
            }

            /// The on-disk value.
            pub fn raw(self) -> i32 {
                match self {
                    $(Self::$variant => $value,)*
                    Self::Unknown(other) => other,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self {
                    $(Self::$variant => $text,)*
                    Self::Unknown(_) => $unknown,
                })
            }
        }
    };
}

int_enum!(
    /// Type of a data object (descriptor field `DataType`).
    DataType, "Unknown", {
        Deffile = 0x4001 => "Def.FILE",
        EnvVar = 0x4002 => "Env.Vars",
        Labels = 0x4003 => "JSON.Labels",
        Partition = 0x4004 => "FS",
        Signature = 0x4005 => "Signature",
        GenericJson = 0x4006 => "JSON.Generic",
        Generic = 0x4007 => "Generic/Raw",
        CryptoMessage = 0x4008 => "Cryptographic Message",
        Sbom = 0x4009 => "SBOM",
        OciRootIndex = 0x400a => "OCI.RootIndex",
        OciBlob = 0x400b => "OCI.Blob",
    }
);

int_enum!(
    /// File system of a partition object.
    FsType, "Unknown", {
        Squash = 1 => "Squashfs",
        Ext3 = 2 => "Ext3",
        ImmuObj = 3 => "Archive",
        Raw = 4 => "Raw",
        EncryptedSquashfs = 5 => "Encrypted squashfs",
    }
);

int_enum!(
    /// Role of a partition object.
    PartType, "Unknown", {
        System = 1 => "System",
        /// The primary system partition: the container's root file system.
        PrimSys = 2 => "*System",
        Data = 3 => "Data",
        Overlay = 4 => "Overlay",
    }
);

int_enum!(
    /// Hash of a signature object, shown with Go's `crypto.Hash` names.
    HashType, "Unknown", {
        Sha256 = 1 => "SHA-256",
        Sha384 = 2 => "SHA-384",
        Sha512 = 3 => "SHA-512",
        Blake2s256 = 4 => "BLAKE2s-256",
        Blake2b256 = 5 => "BLAKE2b-256",
    }
);

int_enum!(
    /// Format of a cryptographic message object.
    FormatType, "Unknown", {
        OpenPgp = 1 => "OpenPGP",
        Pem = 2 => "PEM",
    }
);

int_enum!(
    /// Kind of a cryptographic message object.
    MessageType, "Unknown", {
        ClearSignature = 0x100 => "Clear Signature",
        RsaOaep = 0x200 => "RSA-OAEP",
    }
);

int_enum!(
    /// Format of an SBOM object.
    SbomFormat, "unknown", {
        CycloneDxJson = 1 => "cyclonedx-json",
        CycloneDxXml = 2 => "cyclonedx-xml",
        GitHubJson = 3 => "github-json",
        SpdxJson = 4 => "spdx-json",
        SpdxRdf = 5 => "spdx-rdf",
        SpdxTagValue = 6 => "spdx-tag-value",
        SpdxYaml = 7 => "spdx-yaml",
        SyftJson = 8 => "syft-json",
    }
);

impl SbomFormat {
    /// Parses the names `siftool add --sbomformat` accepts (`github` is an alias).
    pub fn from_name(name: &str) -> Option<Self> {
        let known = (1..=8).map(Self::from_raw);
        if name == "github" {
            return Some(Self::GitHubJson);
        }
        known.into_iter().find(|f| f.to_string() == name)
    }
}

/// Architecture code of the header and of partitions: three bytes, two ASCII digits and a NUL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    X386,
    Amd64,
    Arm,
    Arm64,
    Ppc64,
    Ppc64le,
    Mips,
    Mipsle,
    Mips64,
    Mips64le,
    S390x,
    Riscv64,
    Loong64,
    /// `00\0` or any code this crate does not know; shown as `unknown`.
    Unknown([u8; 3]),
}

const ARCHES: [(Arch, &str); 13] = [
    (Arch::X386, "386"),
    (Arch::Amd64, "amd64"),
    (Arch::Arm, "arm"),
    (Arch::Arm64, "arm64"),
    (Arch::Ppc64, "ppc64"),
    (Arch::Ppc64le, "ppc64le"),
    (Arch::Mips, "mips"),
    (Arch::Mipsle, "mipsle"),
    (Arch::Mips64, "mips64"),
    (Arch::Mips64le, "mips64le"),
    (Arch::S390x, "s390x"),
    (Arch::Riscv64, "riscv64"),
    (Arch::Loong64, "loong64"),
];

impl Arch {
    /// The header code meaning "no primary partition".
    pub const NONE: Arch = Arch::Unknown(*b"00\0");

    /// Decodes a three-byte code.
    pub fn from_code(code: [u8; 3]) -> Self {
        Self::from_number_code(code).unwrap_or(Self::Unknown(code))
    }

    fn from_number_code(code: [u8; 3]) -> Option<Self> {
        if code[2] != 0 || !code[0].is_ascii_digit() || !code[1].is_ascii_digit() {
            return None;
        }
        let n = usize::from(code[0] - b'0') * 10 + usize::from(code[1] - b'0');
        Self::from_index(n)
    }

    /// The architecture numbered `n` (1 = 386 … 13 = loong64), as `siftool add --partarch`.
    pub fn from_index(n: usize) -> Option<Self> {
        n.checked_sub(1)
            .and_then(|i| ARCHES.get(i))
            .map(|(a, _)| *a)
    }

    /// The three-byte code written to disk.
    pub fn code(self) -> [u8; 3] {
        match ARCHES.iter().position(|(a, _)| *a == self) {
            Some(i) => {
                let n = (i + 1) as u8;
                [b'0' + n / 10, b'0' + n % 10, 0]
            }
            None => match self {
                Self::Unknown(code) => code,
                _ => *b"00\0",
            },
        }
    }

    /// The Go architecture name (`GOARCH`), as siftool prints it.
    pub fn go_name(self) -> &'static str {
        ARCHES
            .iter()
            .find(|(a, _)| *a == self)
            .map_or("unknown", |(_, n)| n)
    }

    /// Parses a Go architecture name such as `amd64`.
    pub fn from_go_name(name: &str) -> Option<Self> {
        ARCHES.iter().find(|(_, n)| *n == name).map(|(a, _)| *a)
    }

    /// Whether this is one of the known architectures.
    pub fn is_known(self) -> bool {
        !matches!(self, Self::Unknown(_))
    }

    /// The architecture of the machine this program runs on, if SIF has a code for it.
    pub fn host() -> Option<Self> {
        Self::from_go_name(host_go_arch())
    }
}

fn host_go_arch() -> &'static str {
    if cfg!(target_arch = "x86_64") {
        "amd64"
    } else if cfg!(target_arch = "x86") {
        "386"
    } else if cfg!(target_arch = "aarch64") {
        "arm64"
    } else if cfg!(target_arch = "arm") {
        "arm"
    } else if cfg!(all(target_arch = "powerpc64", target_endian = "little")) {
        "ppc64le"
    } else if cfg!(target_arch = "powerpc64") {
        "ppc64"
    } else if cfg!(all(target_arch = "mips", target_endian = "little")) {
        "mipsle"
    } else if cfg!(target_arch = "mips") {
        "mips"
    } else if cfg!(all(target_arch = "mips64", target_endian = "little")) {
        "mips64le"
    } else if cfg!(target_arch = "mips64") {
        "mips64"
    } else if cfg!(target_arch = "s390x") {
        "s390x"
    } else if cfg!(target_arch = "riscv64") {
        "riscv64"
    } else if cfg!(target_arch = "loongarch64") {
        "loong64"
    } else {
        "unknown"
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.go_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_codes_round_trip() {
        for n in 1..=13 {
            let a = Arch::from_index(n).unwrap();
            assert_eq!(Arch::from_code(a.code()), a);
        }
        assert_eq!(Arch::X386.code(), *b"01\0");
        assert_eq!(Arch::Loong64.code(), *b"13\0");
        assert_eq!(Arch::from_code(*b"00\0").go_name(), "unknown");
        assert_eq!(Arch::from_code(*b"14\0").go_name(), "unknown");
        assert!(Arch::host().is_some());
    }

    #[test]
    fn sbom_names() {
        assert_eq!(
            SbomFormat::from_name("github"),
            Some(SbomFormat::GitHubJson)
        );
        assert_eq!(
            SbomFormat::from_name("syft-json"),
            Some(SbomFormat::SyftJson)
        );
        assert_eq!(SbomFormat::from_name("nope"), None);
        assert_eq!(SbomFormat::Unknown(9).to_string(), "unknown");
    }
}
