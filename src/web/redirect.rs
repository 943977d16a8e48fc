//! Owns redirect-target checks: only paths on this portal are followed.

/// Returns `target` when it is a local path (`/…`, not `//…` or `/\…`), else `None`.
pub fn local_path(target: &str) -> Option<&str> {
    let ok = target.starts_with('/')
        && !target.starts_with("//")
        && !target.starts_with("/\\")
        && !target.chars().any(|c| c.is_control() || c == '\\');
    ok.then_some(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_pass() {
        assert_eq!(
            local_path("/admin/audit?page=2"),
            Some("/admin/audit?page=2")
        );
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "evil",
            "",
            "/a\r\nb",
            "/a\\b",
        ] {
            assert_eq!(local_path(bad), None, "{bad}");
        }
    }
}
