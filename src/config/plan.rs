//! Which peers to wait for and where this pod stands among them: explicit
//! `--hosts`, or an indexed Job's `--peers`/`--indices` named by a template.

use super::pod::{PodView, non_empty};
use crate::cli::{Args, JobPeers, Mode, ServiceNaming, ids_of};
use crate::error::ConfigError;
use crate::peers::{self, Peer, Placeholder, Target, Template, TemplateVars};

/// The peers and what they say about this pod.
pub(super) struct PeerPlan {
    pub peers: Vec<Peer>,
    pub self_index: Option<u32>,
    /// This pod's own name as its peers resolve it, when known.
    pub self_target: Option<Target>,
    /// Identifies the group of pods (the barrier's hello carries it).
    pub job: String,
    /// The placeholder values the names were made from; `job` is the Job
    /// name when one was given or derived (not the `peergate` fallback).
    pub vars: TemplateVars,
    /// Whether the peers came from `--hosts`.
    pub explicit_hosts: bool,
    /// The headless Service's own name (`<subdomain>.<ns>.svc.<zone>.`),
    /// when every part of it is known.
    pub service: Option<String>,
}

/// The plan for `args`: `--hosts`, else an indexed Job.
pub(super) fn plan(args: &Args, pod: &mut PodView<'_>) -> Result<PeerPlan, ConfigError> {
    match non_empty(args.hosts.as_ref()) {
        Some(list) => explicit_hosts(args, pod, &list),
        None => indexed(args, pod),
    }
}

/// `--hosts a,b,c`: the peers are the list; no Job naming applies, so the
/// flags that name a Job's pods would be ignored: they are errors. (`--job`
/// still names the barrier's group.)
fn explicit_hosts(args: &Args, pod: &PodView<'_>, list: &str) -> Result<PeerPlan, ConfigError> {
    let naming = ids_of::<JobPeers>()
        .into_iter()
        .chain(ids_of::<ServiceNaming>());
    let job = (args.mode == Mode::Ping).then(|| "job".to_owned());
    for id in naming.chain(job) {
        if args.given(&id) {
            return Err(ConfigError::Conflict(format!(
                "{} conflicts with {}: give either explicit hosts or an indexed Job",
                args.name("hosts"),
                args.name(&id)
            )));
        }
    }
    let peers = peers::parse_hosts_list(list)
        .map_err(|reason| ConfigError::value(args.name("hosts"), list, reason))?;
    let job = non_empty(args.job.as_ref());
    Ok(PeerPlan {
        peers,
        self_index: pod.optional_index()?,
        self_target: None,
        job: job.clone().unwrap_or_else(|| "peergate".into()),
        vars: TemplateVars {
            job,
            ..TemplateVars::default()
        },
        explicit_hosts: true,
        service: None,
    })
}

/// Peers of an indexed Job: `--peers`/`--indices` with a template.
///
/// This pod is one of them (a member) when the template's name for its own
/// index is its own name: a JobSet leader that waits for another Job's pods
/// with `--template` is not worker 0 just because its index is 0. In barrier
/// mode the pod always takes part under its index (the protocol announces
/// it).
fn indexed(args: &Args, pod: &mut PodView<'_>) -> Result<PeerPlan, ConfigError> {
    let indices = indices(args)?;
    let index = pod.optional_index()?;
    let custom = custom_template(args, indices.len())?;
    let member = is_member(args, pod, custom.as_ref(), index)?;
    if let (true, Some(i), Some(n)) = (member, index, args.selection.peers)
        && i >= n
    {
        return Err(ConfigError::Index(format!(
            "this pod's index {i} is not below {} {n}: --peers is the Job's completions \
             count, this pod included",
            args.name("peers")
        )));
    }
    let (need_job, need_service) = match &custom {
        Some(t) => (
            t.placeholders().any(|p| p == Placeholder::Job),
            t.placeholders().any(|p| p == Placeholder::Subdomain),
        ),
        None => (true, true),
    };
    let mut vars = pod.template_vars(need_job, need_service)?;
    let template = match &custom {
        Some(t) => t.clone(),
        None => peers::default_template(&vars)?,
    };
    // Every input was checked on its own; what is left is a name made too
    // long or odd by their combination.
    let blame = |reason: String| match &custom {
        Some(_) => template_error(args, reason),
        None => ConfigError::Other(format!("cannot name the peers: {reason}")),
    };
    let peers = peers::indexed_peers(&indices, &template, &vars).map_err(blame)?;
    let (self_index, self_target) = match index {
        Some(i) if member => (
            Some(i),
            Some(Target::Name(template.render(i, &vars).map_err(blame)?)),
        ),
        _ => {
            // The diagnosis then asks for the name the kubelet gave this pod.
            let fqdn = pod.hosts_info(false)?.and_then(|info| info.fqdn);
            (None, fqdn.map(|name| Target::Name(format!("{name}."))))
        }
    };
    // The Job name for the barrier's group and for --dry-run, also when
    // the names do not use it.
    if vars.job.is_none() {
        vars.job = pod.job().ok();
    }
    let service = match (&vars.subdomain, &vars.namespace, &vars.zone) {
        (Some(svc), Some(ns), Some(zone)) => Some(format!("{svc}.{ns}.svc.{zone}.")),
        _ => None,
    };
    Ok(PeerPlan {
        peers,
        self_index,
        self_target,
        job: vars.job.clone().unwrap_or_else(|| "peergate".into()),
        vars,
        explicit_hosts: false,
        service,
    })
}

/// Whether this pod, with completion index `index`, is one of the pods the
/// peers are named from: the template's host label for its index is its
/// hostname. Decided from the host label alone, which usually needs no file
/// (`{job}-{index}`, `train-workers-0-{index}`).
fn is_member(
    args: &Args,
    pod: &mut PodView<'_>,
    custom: Option<&Template>,
    index: Option<u32>,
) -> Result<bool, ConfigError> {
    let Some(i) = index else {
        return Ok(false);
    };
    if args.mode == Mode::Barrier {
        return Ok(true);
    }
    let Ok(hostname) = pod.hostname() else {
        // Nothing to tell by.
        return Ok(true);
    };
    let label = match custom {
        Some(t) => t.host_label(),
        None => Template::parse("{job}-{index}").map_err(ConfigError::Other)?,
    };
    let uses = |p| label.placeholders().any(|q| q == p);
    let vars = if label
        .placeholders()
        .all(|p| matches!(p, Placeholder::Job | Placeholder::Index))
    {
        TemplateVars {
            job: if uses(Placeholder::Job) {
                Some(pod.job()?)
            } else {
                None
            },
            ..TemplateVars::default()
        }
    } else {
        pod.template_vars(uses(Placeholder::Job), uses(Placeholder::Subdomain))?
    };
    let name = label.render(i, &vars).map_err(|reason| match custom {
        Some(_) => template_error(args, reason),
        None => ConfigError::Other(format!("cannot name this pod: {reason}")),
    })?;
    Ok(names_host(&name, &hostname))
}

/// The indices to wait for: `--indices`, within `--peers` when both are
/// given, else `0..--peers`.
fn indices(args: &Args) -> Result<Vec<u32>, ConfigError> {
    match (args.selection.peers, &args.selection.indices) {
        (None, None) => Err(ConfigError::Conflict(
            "no peers given: pass --peers N (the Job's completions), --indices, or --hosts".into(),
        )),
        (Some(n), None) => Ok((0..n).collect()),
        (None, Some(list)) => Ok(list.0.clone()),
        (Some(n), Some(list)) => match list.0.iter().find(|&&i| i >= n) {
            Some(bad) => Err(ConfigError::Invalid {
                what: args.name("indices"),
                reason: format!("index {bad} is not below {} {n}", args.name("peers")),
            }),
            None => Ok(list.0.clone()),
        },
    }
}

/// `--template`, parsed. Without `{index}` every peer gets the same name, so
/// it names exactly one peer.
fn custom_template(args: &Args, peer_count: usize) -> Result<Option<Template>, ConfigError> {
    let Some(text) = non_empty(args.selection.template.as_ref()) else {
        return Ok(None);
    };
    let template = Template::parse(&text).map_err(|reason| template_error(args, reason))?;
    if !template.has_index() && peer_count > 1 {
        return Err(template_error(
            args,
            format!("no {{index}}, so all {peer_count} peers would get the same name"),
        ));
    }
    Ok(Some(template))
}

/// Whether `name` (a peer name) is the host `hostname`: its first label is.
fn names_host(name: &str, hostname: &str) -> bool {
    let host = hostname.split('.').next().unwrap_or(hostname);
    name.split('.')
        .next()
        .is_some_and(|label| label.eq_ignore_ascii_case(host))
}

fn template_error(args: &Args, reason: String) -> ConfigError {
    let text = args
        .selection
        .template
        .as_deref()
        .unwrap_or_default()
        .trim();
    ConfigError::value(args.name("template"), text, reason)
}

#[cfg(test)]
mod tests {
    use super::names_host;

    #[test]
    fn a_peer_name_is_a_host_by_its_first_label() {
        assert!(names_host("job-0.svc.ns.svc.zone.", "job-0"));
        assert!(names_host("Job-0.svc", "job-0"));
        assert!(names_host("job-0", "job-0.example"));
        assert!(!names_host("train-workers-0-0.train.", "train-leader-0-0"));
        assert!(!names_host("job-10.svc", "job-1"));
    }
}
