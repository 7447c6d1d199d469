//! Human durations for flags: `1s`, `250ms`, `1m30s`, `2h`; a bare number
//! means seconds, as in `sleep 1`.

use std::time::Duration;

/// Bounds of `--interval`: below 10 ms an unreachable peer turns the gate
/// into a DNS flood; above an hour it is no longer a gate.
pub const INTERVAL: Bounds = Bounds::new(Duration::from_millis(10), Duration::from_secs(3600));
/// Bounds of `--probe-timeout` and `--dns-timeout`: no probe or query needs
/// more than a minute, and below 10 ms nothing answers in time.
pub const ANSWER_TIMEOUT: Bounds = Bounds::new(Duration::from_millis(10), Duration::from_secs(60));
/// Bounds of `--timeout` (`0`/`never` aside): 30 days is longer than any Job
/// waits for its pods, and keeps every deadline far from `Instant` overflow.
pub const DEADLINE: Bounds = Bounds::new(
    Duration::from_millis(10),
    Duration::from_secs(30 * 24 * 3600),
);

/// Bounds of `peergate run --grace`: 0 kills at once; an hour matches the
/// longest grace the sidecar honours.
pub const GRACE: Bounds = Bounds::new(Duration::ZERO, Duration::from_secs(3600));

/// The accepted range of a duration flag, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub min: Duration,
    pub max: Duration,
}

impl Bounds {
    pub const fn new(min: Duration, max: Duration) -> Self {
        Self { min, max }
    }

    /// Parses `text` and checks it is within the bounds.
    pub fn parse(&self, text: &str) -> Result<Duration, String> {
        let secs = seconds(text)?;
        if secs > self.max.as_secs_f64() {
            return Err(format!("longer than the maximum of {}", human(self.max)));
        }
        let d = Duration::from_secs_f64(secs);
        if d < self.min {
            return Err(format!("shorter than the minimum of {}", human(self.min)));
        }
        Ok(d)
    }
}

/// `--interval`.
pub fn interval(text: &str) -> Result<Duration, String> {
    INTERVAL.parse(text)
}

/// `--probe-timeout` and `--dns-timeout`.
pub fn answer_timeout(text: &str) -> Result<Duration, String> {
    ANSWER_TIMEOUT.parse(text)
}

/// `peergate run --grace`.
pub fn grace(text: &str) -> Result<Duration, String> {
    GRACE.parse(text)
}

/// `--timeout`: when to give up, or never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(pub Option<Duration>);

/// Parses `--timeout`: `0`, `never`, `none` or `infinite` mean no deadline.
pub fn deadline(text: &str) -> Result<Deadline, String> {
    match text.trim() {
        "never" | "none" | "infinite" => Ok(Deadline(None)),
        other if seconds(other)? == 0.0 => Ok(Deadline(None)),
        other => DEADLINE.parse(other).map(|d| Deadline(Some(d))),
    }
}

/// `peergate get --wait`: how long to wait for a value; `0` not at all,
/// `None` forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait(pub Option<Duration>);

/// Parses `--wait`: `0` is no wait, `never`, `forever` or `infinite` wait
/// without end, anything else as `--timeout`.
pub fn wait(text: &str) -> Result<Wait, String> {
    match text.trim() {
        "never" | "forever" | "infinite" => Ok(Wait(None)),
        other if seconds(other)? == 0.0 => Ok(Wait(Some(Duration::ZERO))),
        other => DEADLINE.parse(other).map(|d| Wait(Some(d))),
    }
}

/// Parses a duration into seconds. Units: `ms`, `s`, `m`, `h`; components
/// may be chained (`1m30s`) and have decimal fractions (`1.5s`); a bare
/// number means seconds. Only digits and one `.` make a number: no signs,
/// exponents or `inf`.
fn seconds(text: &str) -> Result<f64, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty; expected e.g. 1s, 500ms, 2m".into());
    }
    if s.starts_with('-') {
        return Err("negative".into());
    }
    let is_number_char = |c: char| c.is_ascii_digit() || c == '.';
    let number = |n: &str| -> Result<f64, String> {
        if n.is_empty() || !n.bytes().any(|b| b.is_ascii_digit()) || n.matches('.').count() > 1 {
            return Err(format!("`{n}` is not a number"));
        }
        n.parse::<f64>()
            .map_err(|_| format!("`{n}` is not a number"))
    };
    if s.chars().all(is_number_char) {
        return number(s);
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !is_number_char(c))
            .ok_or_else(|| format!("`{rest}` has no unit (use ms, s, m or h)"))?;
        if num_len == 0 {
            return Err(format!("expected a number before `{rest}`"));
        }
        let value = number(&rest[..num_len])?;
        rest = &rest[num_len..];
        let unit_len = rest.find(is_number_char).unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => return Err(format!("unknown unit `{other}` (use ms, s, m or h)")),
        };
        total += value * factor;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// Formats a duration compactly for logs: `850ms`, `2.31s`, `1m05s`.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.2}s", d.as_secs_f64())
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!(
            "{}h{:02}m{:02}s",
            ms / 3_600_000,
            (ms / 60_000) % 60,
            (ms / 1000) % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANY: Bounds = Bounds::new(Duration::ZERO, Duration::from_secs(1 << 40));

    #[test]
    fn parses_units_and_chains() {
        let parse = |t| ANY.parse(t).unwrap();
        assert_eq!(parse("1s"), Duration::from_secs(1));
        assert_eq!(parse("250ms"), Duration::from_millis(250));
        assert_eq!(parse("1m30s"), Duration::from_secs(90));
        assert_eq!(parse("1.5s"), Duration::from_millis(1500));
        assert_eq!(parse("2h"), Duration::from_secs(7200));
        assert_eq!(parse("3"), Duration::from_secs(3));
        assert_eq!(parse("0.2"), Duration::from_millis(200));
        assert_eq!(parse(" .5s "), Duration::from_millis(500));
    }

    #[test]
    fn waits_are_none_some_or_forever() {
        assert_eq!(wait("0"), Ok(Wait(Some(Duration::ZERO))));
        assert_eq!(wait("0s"), Ok(Wait(Some(Duration::ZERO))));
        assert_eq!(wait("30s"), Ok(Wait(Some(Duration::from_secs(30)))));
        assert_eq!(wait("never"), Ok(Wait(None)));
        assert_eq!(wait("forever"), Ok(Wait(None)));
        assert!(wait("-1s").is_err());
        assert!(wait("1ms").is_err(), "below the deadline's least");
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "", "s", "1x", "1s2", "-1s", "-1", "1..2s", "inf", "NaN", "1e19", "+5", "1e3s", ".",
        ] {
            assert!(ANY.parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(
            ANY.parse("1x").unwrap_err(),
            "unknown unit `x` (use ms, s, m or h)"
        );
        assert_eq!(
            ANY.parse("1s2").unwrap_err(),
            "`2` has no unit (use ms, s, m or h)"
        );
    }

    #[test]
    fn interval_bounds() {
        assert_eq!(interval("10ms"), Ok(Duration::from_millis(10)));
        assert_eq!(interval("0.01"), Ok(Duration::from_millis(10)));
        assert_eq!(
            interval("9ms").unwrap_err(),
            "shorter than the minimum of 10ms"
        );
        assert_eq!(
            interval("0.00001").unwrap_err(),
            "shorter than the minimum of 10ms"
        );
        assert!(interval("0").is_err());
        assert_eq!(interval("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(interval("60m"), Ok(Duration::from_secs(3600)));
        assert_eq!(
            interval("1h1ms").unwrap_err(),
            "longer than the maximum of 1h00m00s"
        );
        // Once a panic: "overflow when adding duration to instant".
        assert!(interval("10000000000000000000").is_err());
    }

    #[test]
    fn answer_timeout_bounds() {
        assert_eq!(answer_timeout("10ms"), Ok(Duration::from_millis(10)));
        assert!(answer_timeout("9ms").is_err());
        assert_eq!(answer_timeout("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(
            answer_timeout("61s").unwrap_err(),
            "longer than the maximum of 1m00s"
        );
    }

    #[test]
    fn deadline_bounds() {
        for never in ["never", "none", "infinite", "0", "0s", "0ms", "0m0s"] {
            assert_eq!(deadline(never), Ok(Deadline(None)), "{never}");
        }
        assert_eq!(deadline("3s"), Ok(Deadline(Some(Duration::from_secs(3)))));
        assert_eq!(
            deadline("10ms"),
            Ok(Deadline(Some(Duration::from_millis(10))))
        );
        assert_eq!(
            deadline("1ms").unwrap_err(),
            "shorter than the minimum of 10ms"
        );
        assert_eq!(
            deadline("720h"),
            Ok(Deadline(Some(Duration::from_secs(30 * 86400))))
        );
        assert!(
            deadline("720h1s")
                .unwrap_err()
                .starts_with("longer than the maximum")
        );
        assert!(deadline("99999999999999h").is_err());
        assert!(deadline("soon").is_err());
        assert!(deadline("-3s").is_err());
    }

    #[test]
    fn human_format() {
        assert_eq!(human(Duration::from_millis(850)), "850ms");
        assert_eq!(human(Duration::from_millis(2310)), "2.31s");
        assert_eq!(human(Duration::from_secs(65)), "1m05s");
        assert_eq!(human(Duration::from_secs(30 * 86400 + 61)), "720h01m01s");
    }
}
