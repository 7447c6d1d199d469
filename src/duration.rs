//! Human durations for flags: `1s`, `250ms`, `1m30s`, `2h`; a bare number
//! means seconds, as in `sleep 1`.

use std::time::Duration;

/// Parses a duration. Units: `ms`, `s`, `m`, `h`; components may be chained
/// (`1m30s`) and may have fractions (`1.5s`).
pub fn parse(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration; expected e.g. 1s, 500ms, 2m".into());
    }
    if let Ok(secs) = s.parse::<f64>() {
        return from_secs(secs, text);
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("`{text}`: number without a unit"))?;
        if num_len == 0 {
            return Err(format!("`{text}`: expected a number before `{rest}`"));
        }
        let value: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("`{text}`: `{}` is not a number", &rest[..num_len]))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => {
                return Err(format!(
                    "`{text}`: unknown unit `{other}` (use ms, s, m or h)"
                ));
            }
        };
        total += value * factor;
        rest = &rest[unit_len..];
    }
    from_secs(total, text)
}

fn from_secs(secs: f64, text: &str) -> Result<Duration, String> {
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("`{text}` is not a non-negative duration"));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{text}` is too long"))
}

/// Parses `--timeout`: `0`, `never` or `none` mean no deadline.
pub fn parse_deadline(text: &str) -> Result<Option<Duration>, String> {
    match text.trim() {
        "never" | "none" | "infinite" => Ok(None),
        other => parse(other).map(|d| (!d.is_zero()).then_some(d)),
    }
}

/// Formats a duration compactly for logs: `850ms`, `2.31s`, `1m05s`.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.2}s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_chains() {
        assert_eq!(parse("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse("0.2").unwrap(), Duration::from_millis(200));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "s", "1x", "1s2", "-1s", "-1", "1..2s", "inf", "NaN"] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn deadlines() {
        assert_eq!(parse_deadline("never").unwrap(), None);
        assert_eq!(parse_deadline("0").unwrap(), None);
        assert_eq!(parse_deadline("0s").unwrap(), None);
        assert_eq!(parse_deadline("3s").unwrap(), Some(Duration::from_secs(3)));
        assert!(parse_deadline("soon").is_err());
    }

    #[test]
    fn human_format() {
        assert_eq!(human(Duration::from_millis(850)), "850ms");
        assert_eq!(human(Duration::from_millis(2310)), "2.31s");
        assert_eq!(human(Duration::from_secs(65)), "1m05s");
    }
}
