//! Who this pod is, from what the Job controller gives every Indexed Job
//! pod: the completion index (`JOB_COMPLETION_INDEX`) and the hostname
//! `<job>-<index>`.

use crate::error::ConfigError;
use crate::peers::MAX_PEERS;

/// Parses a completion index as the Job controller writes it: a plain
/// non-negative decimal below [`MAX_PEERS`] (no Indexed Job has more pods).
pub fn completion_index(text: &str) -> Result<u32, String> {
    let trimmed = text.trim();
    if trimmed.starts_with('-') {
        return Err("negative; a completion index is 0 or more".into());
    }
    match trimmed.parse::<u64>() {
        Ok(i) if i < u64::from(MAX_PEERS) => Ok(i as u32),
        Ok(_) => Err(format!("not below the maximum of {MAX_PEERS}")),
        Err(_) => Err("not a number; expected the pod's completion index, e.g. 0".into()),
    }
}

/// The Job name from a pod hostname: the Job controller sets the hostname
/// to `<job>-<index>`.
pub fn job_from_hostname(hostname: &str, index: u32) -> Result<String, ConfigError> {
    let suffix = format!("-{index}");
    match hostname.strip_suffix(&suffix) {
        Some(job) if !job.is_empty() => Ok(job.to_owned()),
        _ => Err(ConfigError::Hostname(format!(
            "hostname `{hostname}` does not end in `-{index}` (JOB_COMPLETION_INDEX={index}); \
             is this an Indexed Job pod? Pass --job to name the Job explicitly"
        ))),
    }
}

/// Trims what the kernel or a file gives as hostname (trailing newline).
pub fn clean_hostname(raw: &str) -> Option<String> {
    let name = raw.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_parsing() {
        assert_eq!(completion_index("7"), Ok(7));
        assert_eq!(completion_index(" 0\n"), Ok(0));
        assert_eq!(completion_index("99999"), Ok(99999));
        assert!(completion_index("-1").unwrap_err().starts_with("negative"));
        assert!(
            completion_index("two")
                .unwrap_err()
                .starts_with("not a number")
        );
        assert!(completion_index("100000").unwrap_err().contains("maximum"));
        assert!(
            completion_index("99999999999")
                .unwrap_err()
                .contains("maximum")
        );
        assert!(completion_index("").is_err());
    }

    #[test]
    fn job_name_from_hostname() {
        assert_eq!(
            job_from_hostname("example-job-2", 2).unwrap(),
            "example-job"
        );
        assert_eq!(job_from_hostname("a-b-c-10", 10).unwrap(), "a-b-c");
        assert!(job_from_hostname("example-job-2", 3).is_err());
        assert!(job_from_hostname("-2", 2).is_err());
        assert!(job_from_hostname("job-12", 2).is_err());
        assert_eq!(clean_hostname("pod-1\n").as_deref(), Some("pod-1"));
        assert_eq!(clean_hostname("  \n"), None);
    }
}
