//! Wording shared by the ping gate and the barrier.

use std::fmt::Display;

/// How many missing peers a progress line names before "+N more".
const PROGRESS_NAMES: usize = 3;

/// `2/3 reachable; waiting on a: NXDOMAIN` (ping) or
/// `2/3 met; waiting on a: refused` (barrier).
pub fn progress_line<N: Display, C: Display>(
    done: usize,
    total: usize,
    word: &str,
    missing: &[(N, C)],
) -> String {
    let mut line = format!("{done}/{total} {word}");
    if !missing.is_empty() {
        let named: Vec<String> = missing
            .iter()
            .take(PROGRESS_NAMES)
            .map(|(name, cause)| format!("{name}: {cause}"))
            .collect();
        line.push_str("; waiting on ");
        line.push_str(&named.join(", "));
        if missing.len() > PROGRESS_NAMES {
            line.push_str(&format!(" (+{} more)", missing.len() - PROGRESS_NAMES));
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_at_most_three_missing_peers() {
        let none: [(&str, &str); 0] = [];
        assert_eq!(progress_line(3, 3, "met", &none), "3/3 met");
        let missing = [
            ("a", "NXDOMAIN"),
            ("b", "no reply"),
            ("c", "refused"),
            ("d", "x"),
            ("e", "y"),
        ];
        assert_eq!(
            progress_line(1, 6, "reachable", &missing),
            "1/6 reachable; waiting on a: NXDOMAIN, b: no reply, c: refused (+2 more)"
        );
    }
}
