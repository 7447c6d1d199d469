//! Whether this run is a CI run, where a skipped test is a failure.
//!
//! CI systems spell it differently (`CI=true` on GitHub and GitLab, `CI=1`,
//! `CI=TRUE`, `CI=yes`), so any non-empty value counts except `false` and
//! `0`. One file for every test binary (the library's unit tests, the e2e
//! and container tests, the benchmark) so the rule cannot drift.

/// True when `CI` says this is a CI run.
pub fn under_ci() -> bool {
    is_ci(std::env::var("CI").ok().as_deref())
}

/// The rule, on the variable's value (`None`: unset).
pub fn is_ci(value: Option<&str>) -> bool {
    match value.map(str::trim) {
        None | Some("") => false,
        Some(v) => !(v.eq_ignore_ascii_case("false") || v == "0"),
    }
}

#[cfg(test)]
mod tests {
    // Paths spelled out: the benchmark (no test harness) compiles this
    // module without its tests, which would leave a `use` unused.
    #[test]
    fn any_non_empty_value_but_false_or_0_is_ci() {
        for yes in ["true", "TRUE", "True", "1", "yes", "woodpecker"] {
            assert!(super::is_ci(Some(yes)), "CI={yes}");
        }
        for no in ["false", "FALSE", "False", "0", "", "  "] {
            assert!(!super::is_ci(Some(no)), "CI={no:?}");
        }
        assert!(!super::is_ci(None));
    }
}
