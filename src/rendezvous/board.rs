//! What a pod's workload has published in a round: values under keys
//! (`peergate put`) and the named barriers it has entered (`peergate
//! barrier`). A board travels inside its pod's record, so it floods with
//! the record and dies with the incarnation. Pure: the limits, the owner's
//! updates and the queries over a round's members.
//!
//! A board belongs to one round. Writing in a later round starts from an
//! empty board, and a query in round R only looks at boards of round R, so
//! a new round starts empty everywhere without anyone clearing anything.

use std::fmt;

/// Longest key or barrier name, in bytes.
pub const MAX_KEY: usize = 64;
/// Longest value, in bytes.
pub const MAX_VALUE: usize = 4096;
/// Most keys one pod holds in a round.
pub const MAX_KEYS: usize = 64;
/// Most bytes of keys and values one pod holds in a round.
pub const MAX_BYTES: usize = 16 * 1024;
/// Barrier names a pod keeps per round: entering one more drops the
/// oldest. A pod that enters its barriers one after another can only be one
/// barrier ahead of the slowest member (it passed the previous one, so
/// everybody entered that), so what it dropped is a barrier that everybody
/// has passed. Up to this many barriers can be open at once.
pub const MAX_BARRIERS: usize = 64;

/// One pod's board.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Board {
    /// The round it was written in; 0 when nothing was.
    pub round: u32,
    /// Sorted by key, keys unique.
    pub values: Vec<(String, String)>,
    /// Barrier names entered, oldest first, unique.
    pub barriers: Vec<String>,
}

/// Why a key, a value or a board is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    EmptyKey,
    KeyTooLong(usize),
    KeyCharacter(char),
    ValueTooLong(usize),
    TooManyKeys,
    TooManyBytes(usize),
    TooManyBarriers,
    Unsorted,
    Duplicate,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::EmptyKey => write!(f, "empty name"),
            Refused::KeyTooLong(n) => write!(f, "{n} bytes long (at most {MAX_KEY})"),
            Refused::KeyCharacter(c) => write!(
                f,
                "{:?} is not allowed (letters, digits and . _ / - only)",
                c
            ),
            Refused::ValueTooLong(n) => {
                write!(f, "the value is {n} bytes (at most {MAX_VALUE})")
            }
            Refused::TooManyKeys => write!(f, "more than {MAX_KEYS} keys in one round"),
            Refused::TooManyBytes(n) => write!(
                f,
                "{n} bytes of keys and values in one round (at most {MAX_BYTES})"
            ),
            Refused::TooManyBarriers => write!(f, "more than {MAX_BARRIERS} barrier names"),
            Refused::Unsorted => write!(f, "its keys are out of order"),
            Refused::Duplicate => write!(f, "a key or barrier name appears twice"),
        }
    }
}

/// A key or a barrier name: 1 to 64 bytes of `[A-Za-z0-9._/-]`.
pub fn check_key(key: &str) -> Result<(), Refused> {
    if key.is_empty() {
        return Err(Refused::EmptyKey);
    }
    if let Some(c) = key
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-')))
    {
        return Err(Refused::KeyCharacter(c));
    }
    if key.len() > MAX_KEY {
        return Err(Refused::KeyTooLong(key.len()));
    }
    Ok(())
}

/// A value: UTF-8 text (the type sees to that) of at most 4 KiB.
pub fn check_value(value: &str) -> Result<(), Refused> {
    if value.len() > MAX_VALUE {
        return Err(Refused::ValueTooLong(value.len()));
    }
    Ok(())
}

impl Board {
    /// Bytes of keys and values: what [`MAX_BYTES`] bounds.
    pub fn bytes(&self) -> usize {
        self.values.iter().map(|(k, v)| k.len() + v.len()).sum()
    }

    /// Whether a peer's board keeps every limit (its owner checked them;
    /// a board that does not is rejected whole).
    pub fn check(&self) -> Result<(), Refused> {
        if self.values.len() > MAX_KEYS {
            return Err(Refused::TooManyKeys);
        }
        if self.barriers.len() > MAX_BARRIERS {
            return Err(Refused::TooManyBarriers);
        }
        for (key, value) in &self.values {
            check_key(key)?;
            check_value(value)?;
        }
        if self.values.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(if self.values.windows(2).any(|w| w[0].0 == w[1].0) {
                Refused::Duplicate
            } else {
                Refused::Unsorted
            });
        }
        for (i, name) in self.barriers.iter().enumerate() {
            check_key(name)?;
            if self.barriers[..i].contains(name) {
                return Err(Refused::Duplicate);
            }
        }
        let bytes = self.bytes();
        if bytes > MAX_BYTES {
            return Err(Refused::TooManyBytes(bytes));
        }
        Ok(())
    }

    /// The board as it is in `round`: itself, or empty if written earlier.
    fn in_round(&self, round: u32) -> Board {
        if self.round == round {
            self.clone()
        } else {
            Board {
                round,
                ..Board::default()
            }
        }
    }

    /// This board with `key` set to `value` in `round` (a later round
    /// starts empty; a key put again takes the new value).
    pub fn put(&self, round: u32, key: &str, value: &str) -> Result<Board, Refused> {
        check_key(key)?;
        check_value(value)?;
        let mut next = self.in_round(round);
        match next.values.binary_search_by(|(k, _)| k.as_str().cmp(key)) {
            Ok(i) => next.values[i].1 = value.to_owned(),
            Err(i) => {
                if next.values.len() == MAX_KEYS {
                    return Err(Refused::TooManyKeys);
                }
                next.values.insert(i, (key.to_owned(), value.to_owned()));
            }
        }
        let bytes = next.bytes();
        if bytes > MAX_BYTES {
            return Err(Refused::TooManyBytes(bytes));
        }
        Ok(next)
    }

    /// This board with barrier `name` entered in `round`; the oldest name
    /// goes when [`MAX_BARRIERS`] are kept. `None` when already entered.
    pub fn enter(&self, round: u32, name: &str) -> Result<Option<Board>, Refused> {
        check_key(name)?;
        if self.round == round && self.barriers.iter().any(|b| b == name) {
            return Ok(None);
        }
        let mut next = self.in_round(round);
        if next.barriers.len() == MAX_BARRIERS {
            next.barriers.remove(0);
        }
        next.barriers.push(name.to_owned());
        Ok(Some(next))
    }

    /// The value of `key` written in `round`.
    pub fn value(&self, round: u32, key: &str) -> Option<&str> {
        if self.round != round {
            return None;
        }
        self.values
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| self.values[i].1.as_str())
    }

    /// Whether barrier `name` was entered in `round`.
    pub fn entered(&self, round: u32, name: &str) -> bool {
        self.round == round && self.barriers.iter().any(|b| b == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_grammar() {
        for good in [
            "a",
            "nccl/unique-id",
            "coordinator.port",
            "A_9",
            &"k".repeat(64),
        ] {
            assert_eq!(check_key(good), Ok(()), "{good}");
        }
        assert_eq!(check_key(""), Err(Refused::EmptyKey));
        assert_eq!(check_key(&"k".repeat(65)), Err(Refused::KeyTooLong(65)));
        assert_eq!(check_key("a b"), Err(Refused::KeyCharacter(' ')));
        assert_eq!(check_key("é"), Err(Refused::KeyCharacter('é')));
        assert_eq!(check_key("a=b"), Err(Refused::KeyCharacter('=')));
        assert!(check_value(&"v".repeat(MAX_VALUE)).is_ok());
        assert_eq!(
            check_value(&"v".repeat(MAX_VALUE + 1)),
            Err(Refused::ValueTooLong(MAX_VALUE + 1))
        );
    }

    #[test]
    fn puts_replace_and_stay_sorted_within_the_limits() {
        let b = Board::default().put(1, "b", "2").unwrap();
        let b = b.put(1, "a", "1").unwrap().put(1, "b", "3").unwrap();
        assert_eq!(
            b.values,
            vec![("a".into(), "1".into()), ("b".into(), "3".into())]
        );
        assert_eq!(b.value(1, "b"), Some("3"));
        assert_eq!(b.value(2, "b"), None, "a value belongs to its round");
        assert_eq!(b.check(), Ok(()));

        let mut full = Board::default();
        for i in 0..MAX_KEYS {
            full = full.put(1, &format!("k{i:02}"), "x").unwrap();
        }
        assert_eq!(full.put(1, "one-more", "x"), Err(Refused::TooManyKeys));
        assert!(full.put(1, "k00", "replacing is fine").is_ok());

        let mut heavy = Board::default();
        for i in 0..3 {
            heavy = heavy
                .put(1, &format!("v{i}"), &"x".repeat(MAX_VALUE))
                .unwrap();
        }
        let err = heavy.put(1, "v3", &"x".repeat(MAX_VALUE)).unwrap_err();
        assert!(
            matches!(err, Refused::TooManyBytes(n) if n > MAX_BYTES),
            "{err}"
        );
    }

    #[test]
    fn a_later_round_starts_empty() {
        let b = Board::default()
            .put(1, "port", "1234")
            .unwrap()
            .enter(1, "staged")
            .unwrap()
            .unwrap();
        assert!(b.entered(1, "staged"));
        let next = b.put(2, "other", "x").unwrap();
        assert_eq!(next.round, 2);
        assert_eq!(next.value(2, "port"), None);
        assert!(!next.entered(2, "staged"));
        let again = b.enter(2, "staged").unwrap().unwrap();
        assert!(again.entered(2, "staged") && again.values.is_empty());
        assert_eq!(
            b.enter(1, "staged"),
            Ok(None),
            "entering twice changes nothing"
        );
    }

    #[test]
    fn the_oldest_barrier_name_goes_first() {
        let mut b = Board::default();
        for i in 0..=MAX_BARRIERS {
            b = b.enter(1, &format!("phase-{i}")).unwrap().unwrap();
        }
        assert_eq!(b.barriers.len(), MAX_BARRIERS);
        assert!(!b.entered(1, "phase-0"));
        assert!(b.entered(1, &format!("phase-{MAX_BARRIERS}")));
        assert_eq!(b.check(), Ok(()));
    }

    #[test]
    fn a_peers_board_over_the_limits_is_refused() {
        let over = |f: fn(&mut Board)| {
            let mut b = Board::default().put(1, "a", "1").unwrap();
            f(&mut b);
            b.check()
        };
        assert_eq!(
            over(|b| b.values.push(("a".into(), "2".into()))),
            Err(Refused::Duplicate)
        );
        assert_eq!(
            over(|b| b.values.insert(0, ("b".into(), "2".into()))),
            Err(Refused::Unsorted)
        );
        assert_eq!(
            over(|b| b.values[0].1 = "x".repeat(MAX_VALUE + 1)),
            Err(Refused::ValueTooLong(MAX_VALUE + 1))
        );
        assert_eq!(
            over(|b| b.values[0].0 = "a b".into()),
            Err(Refused::KeyCharacter(' '))
        );
        assert_eq!(
            over(|b| b.barriers = vec!["x".into(), "x".into()]),
            Err(Refused::Duplicate)
        );
        assert_eq!(
            over(|b| b.barriers = (0..=MAX_BARRIERS).map(|i| i.to_string()).collect()),
            Err(Refused::TooManyBarriers)
        );
        assert_eq!(
            over(|b| {
                b.values = (0..=MAX_KEYS)
                    .map(|i| (format!("k{i:03}"), String::new()))
                    .collect()
            }),
            Err(Refused::TooManyKeys)
        );
        assert!(matches!(
            over(|b| {
                b.values = (0..5)
                    .map(|i| (format!("k{i}"), "x".repeat(MAX_VALUE)))
                    .collect()
            }),
            Err(Refused::TooManyBytes(_))
        ));
    }
}
