//! Who this pod is, from what the Job controller gives every Indexed Job
//! pod: the completion index (`JOB_COMPLETION_INDEX`) and the hostname
//! `<job>-<index>`.

use crate::error::ConfigError;

/// Parses a completion index as the Job controller writes it: a plain
/// non-negative decimal.
pub fn parse_index(source: &str, text: &str) -> Result<u32, ConfigError> {
    let trimmed = text.trim();
    if trimmed.starts_with('-') {
        return Err(ConfigError::Index(format!(
            "{source}={text:?} is negative; a completion index is 0 or more"
        )));
    }
    trimmed.parse::<u32>().map_err(|_| {
        ConfigError::Index(format!(
            "{source}={text:?} is not a number; expected the pod's completion index, e.g. 0"
        ))
    })
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
        assert_eq!(parse_index("JOB_COMPLETION_INDEX", "7").unwrap(), 7);
        assert_eq!(parse_index("JOB_COMPLETION_INDEX", " 0\n").unwrap(), 0);
        let neg = parse_index("JOB_COMPLETION_INDEX", "-1")
            .unwrap_err()
            .to_string();
        assert!(neg.contains("negative"), "{neg}");
        let nan = parse_index("JOB_COMPLETION_INDEX", "two")
            .unwrap_err()
            .to_string();
        assert!(nan.contains("not a number"), "{nan}");
        assert!(parse_index("X", "").is_err());
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
