//! Target platforms (`linux/<arch>[/<variant>]`) and how they match manifest-list entries.
//! The default is the host; `--arch`/`--arch-variant` override it. Apptainer also accepts
//! Docker Hub's prefixed spellings such as `arm32v7` and `arm64v8`.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of this machine.
    pub fn host() -> Platform {
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "x86" => ("386", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            "powerpc64" => ("ppc64", None),
            "loongarch64" => ("loong64", None),
            other => (other, None),
        };
        Platform {
            os: "linux".into(),
            architecture: arch.into(),
            variant: variant.map(String::from),
        }
    }

    /// The platform for `--arch` (and `--arch-variant`), or the host when neither is given.
    pub fn select(arch: Option<&str>, variant: Option<&str>) -> Result<Platform, PlatformError> {
        let Some(arch) = arch.filter(|a| !a.is_empty()) else {
            let mut p = Platform::host();
            if let Some(v) = variant.filter(|v| !v.is_empty()) {
                p.variant = Some(v.to_string());
            }
            return Ok(p);
        };
        let (a, v) = match arch {
            "amd64" | "x86_64" => ("amd64", None),
            "386" | "i386" => ("386", None),
            "arm64" | "aarch64" => ("arm64", Some("v8")),
            "arm64v8" => ("arm64", Some("v8")),
            "arm" | "arm32v7" => ("arm", Some("v7")),
            "arm32v6" => ("arm", Some("v6")),
            "arm32v5" => ("arm", Some("v5")),
            "ppc64le" | "s390x" | "riscv64" | "loong64" | "mips64le" => (arch, None),
            other => return Err(PlatformError(other.to_string())),
        };
        let variant = variant.filter(|v| !v.is_empty()).or(v).map(String::from);
        Ok(Platform {
            os: "linux".into(),
            architecture: a.into(),
            variant,
        })
    }

    /// Whether a manifest-list entry for `os/arch/variant` suits this platform. An entry
    /// without a variant suits any variant (arm64 images rarely name `v8`).
    pub fn matches(&self, os: &str, arch: &str, variant: Option<&str>) -> bool {
        if os != self.os || arch != self.architecture {
            return false;
        }
        match (variant.filter(|v| !v.is_empty()), self.variant.as_deref()) {
            (None, _) | (_, None) => true,
            (Some(a), Some(b)) => a == b,
        }
    }

    /// The variant as it goes into cache keys (empty when none).
    pub fn variant_str(&self) -> &str {
        self.variant.as_deref().unwrap_or("")
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unsupported architecture {0:?}: use amd64, 386, arm64, arm, arm32v5, arm32v6, arm32v7, arm64v8, ppc64le, s390x, riscv64 or loong64")]
pub struct PlatformError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_arch_spellings_map_to_variants() {
        let p = Platform::select(Some("arm32v6"), None).unwrap();
        assert_eq!(p.to_string(), "linux/arm/v6");
        let p = Platform::select(Some("arm64"), None).unwrap();
        assert!(p.matches("linux", "arm64", None));
        assert!(p.matches("linux", "arm64", Some("v8")));
        let p = Platform::select(Some("arm"), Some("v6")).unwrap();
        assert!(!p.matches("linux", "arm", Some("v7")));
        assert!(Platform::select(Some("vax"), None).is_err());
    }
}
