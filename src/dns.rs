//! Name resolution through hickory, configured from the pod's resolv.conf
//! and tuned for polling: no answer is cached between attempts (a record
//! that appears must be seen by the next attempt, a replacement pod's new
//! address too), one query per name and family, no retries inside hickory
//! (the gate's loop is the retry), and never the hosts file (the kubelet
//! lists this pod's own name there, which would hide a missing DNS record).

use std::net::IpAddr;
use std::time::Duration;

use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::Name;
use hickory_resolver::{Resolver, TokioResolver};

use crate::cause::Cause;
use crate::config::{DnsSettings, Family};
use crate::error::ConfigError;
use crate::peers::Target;

/// Something that turns a name into addresses; the gate is generic over it
/// so its timing can be tested without a DNS server.
pub trait Resolve: Send + Sync + 'static {
    fn resolve(
        &self,
        name: &str,
    ) -> impl std::future::Future<Output = Result<Vec<IpAddr>, Cause>> + Send;
}

/// The addresses of `target`: the address itself for an IP literal, else
/// a fresh lookup of the name. The one resolve step of every attempt, in
/// ping and barrier mode alike.
pub async fn addresses<R: Resolve>(
    target: &Target,
    resolver: Option<&R>,
) -> Result<Vec<IpAddr>, Cause> {
    match target {
        Target::Addr(a) => Ok(vec![*a]),
        Target::Name(name) => match resolver {
            Some(r) => r.resolve(name).await,
            None => Err(Cause::Dns("no resolver configured".into())),
        },
    }
}

pub struct Dns {
    resolver: TokioResolver,
}

impl Dns {
    pub fn new(settings: &DnsSettings) -> Result<Self, ConfigError> {
        let servers = settings
            .nameservers
            .iter()
            .map(|ip| NameServerConfig::udp_and_tcp(*ip))
            .collect();
        let search = settings
            .search
            .iter()
            .filter_map(|d| Name::from_ascii(d).ok())
            .collect();
        let config = ResolverConfig::from_parts(None, search, servers);
        let mut opts = ResolverOpts::default();
        opts.ndots = settings.ndots;
        opts.timeout = settings.timeout;
        opts.attempts = 0;
        opts.num_concurrent_reqs = 1;
        opts.ip_strategy = match settings.family {
            Family::V4 => LookupIpStrategy::Ipv4Only,
            Family::V6 => LookupIpStrategy::Ipv6Only,
            Family::Dual => LookupIpStrategy::Ipv4AndIpv6,
        };
        opts.use_hosts_file = ResolveHosts::Never;
        opts.positive_max_ttl = Some(Duration::ZERO);
        opts.negative_max_ttl = Some(Duration::ZERO);
        opts.cache_size = 0;
        opts.edns0 = true;
        let resolver = Resolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(opts)
            .build()
            .map_err(|e| ConfigError::Other(format!("cannot set up the DNS resolver: {e}")))?;
        Ok(Self { resolver })
    }
}

impl Resolve for Dns {
    async fn resolve(&self, name: &str) -> Result<Vec<IpAddr>, Cause> {
        match self.resolver.lookup_ip(name).await {
            Ok(lookup) => {
                let mut addrs: Vec<IpAddr> = Vec::new();
                for ip in lookup.iter() {
                    if !addrs.contains(&ip) {
                        addrs.push(ip);
                    }
                }
                if addrs.is_empty() {
                    Err(Cause::NoRecords)
                } else {
                    Ok(addrs)
                }
            }
            Err(e) => Err(classify(&e)),
        }
    }
}

/// Maps a hickory error to the cause users read in logs.
pub fn classify(err: &NetError) -> Cause {
    match err {
        NetError::Dns(DnsError::NoRecordsFound(nr)) => match nr.response_code {
            ResponseCode::NXDomain => Cause::NxDomain,
            ResponseCode::NoError => Cause::NoRecords,
            other => Cause::DnsFailure(rcode_name(other)),
        },
        NetError::Dns(DnsError::ResponseCode(code)) => Cause::DnsFailure(rcode_name(*code)),
        NetError::Timeout => Cause::DnsTimeout,
        NetError::NoConnections => Cause::DnsUnreachable("no connection".into()),
        NetError::Io(io) => Cause::DnsUnreachable(io.kind().to_string()),
        other => Cause::Dns(other.to_string()),
    }
}

fn rcode_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::Refused => "REFUSED".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        other => format!("{other:?}").to_uppercase(),
    }
}

#[cfg(test)]
mod tests {
    use hickory_resolver::net::NoRecords;
    use hickory_resolver::proto::op::Query;
    use hickory_resolver::proto::rr::RecordType;

    use super::*;

    fn no_records(code: ResponseCode) -> NetError {
        let query = Query::query(
            Name::from_ascii("example-job-2.svc.").unwrap(),
            RecordType::A,
        );
        NetError::Dns(DnsError::NoRecordsFound(NoRecords::new(query, code)))
    }

    #[test]
    fn resolver_errors_become_the_causes_users_read() {
        assert_eq!(
            classify(&no_records(ResponseCode::NXDomain)),
            Cause::NxDomain
        );
        assert_eq!(
            classify(&no_records(ResponseCode::NoError)),
            Cause::NoRecords
        );
        // An offline Docker engine forwards unknown names upstream and gets
        // SERVFAIL: a server failure, not a missing name.
        let servfail = classify(&NetError::Dns(DnsError::ResponseCode(
            ResponseCode::ServFail,
        )));
        assert_eq!(servfail, Cause::DnsFailure("SERVFAIL".into()));
        assert_eq!(servfail.to_string(), "DNS server failure (SERVFAIL)");
        assert_eq!(
            classify(&NetError::Dns(DnsError::ResponseCode(
                ResponseCode::Refused
            ))),
            Cause::DnsFailure("REFUSED".into())
        );
        assert_eq!(classify(&NetError::Timeout), Cause::DnsTimeout);
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(matches!(
            classify(&NetError::Io(std::sync::Arc::new(refused))),
            Cause::DnsUnreachable(_)
        ));
    }
}
