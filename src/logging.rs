//! Where log lines go and which pass: stderr, text or JSON, filtered by
//! `--log-level` or by what `RUST_LOG` says about peergate.
//!
//! Two rules keep peergate's output from vanishing:
//!
//! - peergate's own errors always pass, whatever the filter says (a usage
//!   error that prints nothing is an exit 2 nobody can explain);
//! - `RUST_LOG` is usually the workload's: the container sets it and
//!   `-- COMMAND` shares the environment. So peergate takes from it only
//!   `TARGET=LEVEL` directives; its bare level (`RUST_LOG=debug`) and
//!   directives it cannot read are the workload's business. Targets nobody
//!   names stay at `info`. `--log-level` (`PEERGATE_LOG_LEVEL`) is peergate's
//!   own and is read strictly.
//!
//! A bare level sets peergate's level; libraries follow it down but not up
//! past `info` unless a directive names them: `--log-level debug` shows every
//! failed attempt, not every DNS packet hickory sends
//! (`debug,hickory=debug` shows those too).
//!
//! Filtering uses `tracing_subscriber`'s `Targets` rather than `EnvFilter`,
//! which would bring a regex engine into a binary that must stay small.

use std::io::IsTerminal;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::values::LogFormat;

/// The level names `--log-level` accepts, for messages and help.
pub const LEVEL_NAMES: &str = "error, warn, info, debug, trace, off";

/// The level of targets no directive names.
const DEFAULT_LEVEL: LevelFilter = LevelFilter::INFO;

/// The target of every event peergate itself logs (its crate name).
const OWN_TARGET: &str = "peergate";

/// A parsed log filter: a level for unnamed targets and per-target levels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSpec {
    default: Option<LevelFilter>,
    targets: Vec<(String, LevelFilter)>,
}

impl LogSpec {
    /// Parses `--log-level`: comma-separated directives, each a level
    /// (peergate's, see the module documentation) or `TARGET=LEVEL`.
    /// Anything else is an error naming the valid forms.
    pub fn parse_flag(text: &str) -> Result<LogSpec, String> {
        let mut spec = LogSpec {
            default: None,
            targets: Vec::new(),
        };
        let forms = || {
            format!(
                "expected a level ({LEVEL_NAMES}) or TARGET=LEVEL directives, \
                 e.g. `debug` or `info,hickory=debug`"
            )
        };
        if text.trim().is_empty() {
            return Err(format!("empty; {}", forms()));
        }
        for directive in text.split(',').map(str::trim) {
            match directive.split_once('=') {
                None => {
                    let level = level(directive)
                        .ok_or_else(|| format!("`{directive}` is not a level; {}", forms()))?;
                    spec.default = Some(level);
                }
                Some((target, value)) => {
                    let level = level(value).ok_or_else(|| {
                        format!("`{value}` in `{directive}` is not a level; {}", forms())
                    })?;
                    if !is_target(target) {
                        return Err(format!(
                            "`{target}` in `{directive}` is not a target (a module path such \
                             as `peergate` or `hickory_proto`); {}",
                            forms()
                        ));
                    }
                    spec.targets.push((target.trim().to_owned(), level));
                }
            }
        }
        Ok(spec)
    }

    /// Takes from `RUST_LOG` what it says about specific targets (see the
    /// module documentation). Returns the spec and one note per directive
    /// aimed at peergate that could not be read.
    pub fn from_rust_log(text: &str) -> (LogSpec, Vec<String>) {
        let mut spec = LogSpec {
            default: None,
            targets: Vec::new(),
        };
        let mut notes = Vec::new();
        for directive in text.split(',').map(str::trim) {
            let Some((target, value)) = directive.split_once('=') else {
                continue;
            };
            match (is_target(target), level(value)) {
                (true, Some(level)) => spec.targets.push((target.trim().to_owned(), level)),
                _ if is_own(target.trim()) => notes.push(format!(
                    "ignoring `{directive}` in RUST_LOG: expected {OWN_TARGET}=LEVEL with a \
                     level out of {LEVEL_NAMES}"
                )),
                _ => {}
            }
        }
        (spec, notes)
    }

    /// The filter: peergate at the bare level (else `info`), unnamed
    /// targets at that level but at most `info`, named targets as named;
    /// every peergate target at `error` or more verbose.
    pub fn filter(&self) -> Targets {
        let level = self.default.unwrap_or(DEFAULT_LEVEL);
        let own = self
            .targets
            .iter()
            .rev()
            .find(|(target, _)| target == OWN_TARGET)
            .map_or(level, |(_, l)| *l);
        let mut filter = Targets::new()
            .with_default(level.min(DEFAULT_LEVEL))
            .with_target(OWN_TARGET, own.max(LevelFilter::ERROR));
        for (target, level) in &self.targets {
            if target == OWN_TARGET {
                continue;
            }
            let level = if is_own(target) {
                (*level).max(LevelFilter::ERROR)
            } else {
                *level
            };
            filter = filter.with_target(target.clone(), level);
        }
        filter
    }
}

fn level(text: &str) -> Option<LevelFilter> {
    let text = text.trim();
    [
        ("error", LevelFilter::ERROR),
        ("warn", LevelFilter::WARN),
        ("info", LevelFilter::INFO),
        ("debug", LevelFilter::DEBUG),
        ("trace", LevelFilter::TRACE),
        ("off", LevelFilter::OFF),
    ]
    .into_iter()
    .find(|(name, _)| name.eq_ignore_ascii_case(text))
    .map(|(_, level)| level)
}

/// A module path: letters, digits, `_`, `-` and `::` separators.
fn is_target(text: &str) -> bool {
    let text = text.trim();
    !text.is_empty()
        && text.split("::").all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
}

fn is_own(target: &str) -> bool {
    target == OWN_TARGET
        || target
            .strip_prefix(OWN_TARGET)
            .is_some_and(|rest| rest.starts_with("::"))
}

/// The spec in force: `--log-level` if given, else what `RUST_LOG` says
/// about specific targets, else `info` for everything.
pub fn effective(flag: Option<&LogSpec>, rust_log: Option<&str>) -> (LogSpec, Vec<String>) {
    match (flag, rust_log) {
        (Some(spec), _) => (spec.clone(), Vec::new()),
        (None, Some(text)) => LogSpec::from_rust_log(text),
        (None, None) => (
            LogSpec {
                default: None,
                targets: Vec::new(),
            },
            Vec::new(),
        ),
    }
}

/// Sends log lines to stderr: text (ANSI colours only on a terminal) or one
/// JSON object per line, filtered as the module documentation says.
pub fn init(format: LogFormat, flag: Option<&LogSpec>) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let (spec, notes) = effective(flag, rust_log.as_deref());
    let filter = spec.filter();
    // The fmt subscriber has its own level ceiling (INFO by default) that
    // would hide debug and trace before the filter is asked.
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(LevelFilter::TRACE)
        .with_target(false);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .finish()
            .with(filter)
            .init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .finish()
            .with(filter)
            .init(),
    }
    for note in notes {
        tracing::warn!("{note}");
    }
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::*;

    /// Whether `filter` lets an event of `level` from `target` through.
    fn passes(filter: &Targets, target: &str, level: Level) -> bool {
        filter.would_enable(target, &level)
    }

    fn rust_log(text: &str) -> Targets {
        effective(None, Some(text)).0.filter()
    }

    fn flag(text: &str) -> Targets {
        LogSpec::parse_flag(text).unwrap().filter()
    }

    #[test]
    fn default_is_info_for_everything() {
        let f = effective(None, None).0.filter();
        assert!(passes(&f, "peergate::gate", Level::INFO));
        assert!(!passes(&f, "peergate::gate", Level::DEBUG));
        assert!(passes(&f, "hickory_proto::udp", Level::INFO));
    }

    #[test]
    fn a_rust_log_for_other_targets_leaves_peergate_at_info() {
        for text in [
            "myapp=debug",
            "warn,myapp=debug",
            "off",
            "debug",
            "loud",
            "a=b=c",
            "myapp[span{x=1}]=trace",
        ] {
            let f = rust_log(text);
            assert!(passes(&f, "peergate::run", Level::INFO), "RUST_LOG={text}");
            assert!(passes(&f, "peergate", Level::ERROR), "RUST_LOG={text}");
            assert!(
                !passes(&f, "peergate::gate", Level::DEBUG),
                "RUST_LOG={text}"
            );
        }
        let f = rust_log("myapp=debug");
        assert!(passes(&f, "myapp::x", Level::DEBUG));
    }

    #[test]
    fn a_rust_log_that_names_peergate_is_followed() {
        let f = rust_log("myapp=info,peergate=debug,hickory_proto=trace");
        assert!(passes(&f, "peergate::gate", Level::DEBUG));
        assert!(!passes(&f, "peergate::gate", Level::TRACE));
        assert!(passes(&f, "hickory_proto::udp", Level::TRACE));
        let f = rust_log("peergate=warn");
        assert!(!passes(&f, "peergate::run", Level::INFO));
        assert!(passes(&f, "peergate::run", Level::WARN));
    }

    #[test]
    fn unreadable_peergate_directives_in_rust_log_are_noted() {
        let (spec, notes) = LogSpec::from_rust_log("peergate=loud,other=loud,peergate::gate=x");
        assert!(spec.targets.is_empty(), "{spec:?}");
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].contains("`peergate=loud`"), "{}", notes[0]);
    }

    #[test]
    fn peergate_errors_always_pass() {
        for text in [
            "off",
            "peergate=off",
            "error,peergate::gate=off",
            "off,hickory=debug",
        ] {
            let f = flag(text);
            assert!(passes(&f, "peergate", Level::ERROR), "--log-level {text}");
            assert!(
                passes(&f, "peergate::gate", Level::ERROR),
                "--log-level {text}"
            );
        }
        let f = rust_log("peergate=off");
        assert!(passes(&f, "peergate::run", Level::ERROR));
        // Other targets are silenced as asked.
        assert!(!passes(&flag("off"), "hickory_proto", Level::ERROR));
    }

    #[test]
    fn a_bare_flag_level_is_peergates_and_libraries_follow_down_to_it() {
        let f = flag("debug");
        assert!(passes(&f, "peergate::gate", Level::DEBUG));
        assert!(!passes(&f, "peergate::gate", Level::TRACE));
        assert!(passes(&f, "hickory_proto", Level::INFO));
        assert!(
            !passes(&f, "hickory_proto", Level::DEBUG),
            "not past info unless named"
        );
        let f = flag("debug,hickory=debug");
        assert!(passes(&f, "hickory_proto::udp", Level::DEBUG));
        let f = flag("warn");
        assert!(!passes(&f, "hickory_proto", Level::INFO));
        assert!(!passes(&f, "peergate::run", Level::INFO));
        let f = flag("trace,peergate=info");
        assert!(
            !passes(&f, "peergate::run", Level::DEBUG),
            "a peergate directive wins"
        );
        let f = flag("WARN, peergate::gate=trace");
        assert!(passes(&f, "peergate::gate", Level::TRACE));
        assert!(!passes(&f, "peergate::run", Level::INFO));
        assert!(passes(&f, "peergate::run", Level::WARN));
    }

    #[test]
    fn flag_rejects_what_is_not_a_level_and_names_the_forms() {
        for bad in [
            "warning",
            "loud",
            "",
            "peergate=loud",
            "=debug",
            "a b=info",
            "info,,debug",
        ] {
            let err = LogSpec::parse_flag(bad).unwrap_err();
            assert!(err.contains(LEVEL_NAMES), "{bad:?}: {err}");
            assert!(!err.contains('\n'), "{bad:?}: {err}");
        }
        assert!(
            LogSpec::parse_flag("warning")
                .unwrap_err()
                .starts_with("`warning` is not a level")
        );
    }
}
