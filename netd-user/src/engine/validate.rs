//! Name rules: Docker's for container and network names, RFC 1123 for
//! hostnames (they end up in generated files, so nothing else may pass).

use super::error::{Error, Result};

/// `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 64 characters (a container's
/// name is also its namespace file's name).
pub fn is_valid_name(name: &str) -> bool {
    let valid_start = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let valid_rest = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    !name.is_empty() && name.len() <= 64 && valid_start && valid_rest
}

pub fn container_name(name: &str) -> Result<()> {
    if !is_valid_name(name) {
        return Err(Error::invalid(format!(
            "invalid container name {name:?}: use 1-64 characters [a-zA-Z0-9_.-], starting with a letter or digit"
        )));
    }
    Ok(())
}

pub fn network_name(name: &str) -> Result<()> {
    if !is_valid_name(name) {
        return Err(Error::invalid(format!(
            "invalid network name {name:?}: use 1-64 characters [a-zA-Z0-9_.-], starting with a letter or digit"
        )));
    }
    Ok(())
}

/// Docker's rule for hostnames, which the kernel's HOST_NAME_MAX (64)
/// also bounds: dot-separated RFC 1123 labels.
pub const HOSTNAME_RULE: &str = "use at most 64 characters: labels of 1-63 characters [a-zA-Z0-9-], separated by dots, not starting or ending with '-'";

pub fn is_valid_hostname(name: &str) -> bool {
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    !name.is_empty() && name.len() <= 64 && name.split('.').all(valid_label)
}

pub fn hostname(name: &str) -> Result<()> {
    if !is_valid_hostname(name) {
        return Err(Error::invalid(format!(
            "invalid hostname {name:?}: {HOSTNAME_RULE}"
        )));
    }
    Ok(())
}

/// An extra hosts entry's name (it becomes a hosts file line).
pub fn extra_host(name: &str) -> Result<()> {
    if !is_valid_hostname(name) {
        return Err(Error::invalid(format!(
            "invalid hostname {name:?} of an extra hosts entry: {HOSTNAME_RULE}"
        )));
    }
    Ok(())
}

/// A bridge device name the kernel takes.
pub fn bridge_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 15 || name.contains(['/', ' ']) {
        return Err(Error::invalid(format!(
            "invalid bridge name {name:?}: use 1-15 characters without '/' or spaces"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_docker_rules() {
        for ok in ["c1", "web.1", "a_b-c", &"x".repeat(64)] {
            assert!(container_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "bad/name",
            "-lead",
            ".hidden",
            "sp ace",
            &"x".repeat(65),
            "ümlaut",
        ] {
            assert!(container_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hostnames_follow_rfc_1123_and_host_name_max() {
        let label63 = "a".repeat(63);
        let name64 = format!("{}.b", "a".repeat(62));
        for ok in ["web", "web-1.example", "A1", &label63, &name64] {
            assert!(hostname(ok).is_ok(), "{ok}");
        }
        let label64 = "a".repeat(64);
        let name65 = format!("{}.bc", "a".repeat(62));
        for bad in [
            "", "-web", "web-", "a..b", ".a", "a.", "sp ace", "web\nx", "a_b", &label64, &name65,
        ] {
            let err = hostname(bad).unwrap_err().to_string();
            assert!(err.contains("64 characters"), "{bad}: {err}");
        }
    }
}
