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
use crate::error::ConfigError;
use crate::peers::Target;
use crate::values::{DnsSettings, Family};

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
    /// Bounds the lookups in flight (see [`MAX_LOOKUPS`]).
    lookups: tokio::sync::Semaphore,
}

/// Lookups in flight at once, whatever `--concurrency` allows for probes:
/// each costs the resolver a socket and its buffers (about 20 KB), and
/// this many keep a DNS server's round trip busy. Measured at 1000 peers:
/// the same wall time as 256 and 3 MB less memory.
pub const MAX_LOOKUPS: usize = 64;

impl Dns {
    pub fn new(settings: &DnsSettings) -> Result<Self, ConfigError> {
        Self::with_port(settings, 53)
    }

    /// A resolver asking the nameservers on `port` (tests run a server on
    /// an ephemeral one).
    fn with_port(settings: &DnsSettings, port: u16) -> Result<Self, ConfigError> {
        let servers = settings
            .nameservers
            .iter()
            .map(|ip| {
                let mut server = NameServerConfig::udp_and_tcp(*ip);
                for connection in &mut server.connections {
                    connection.port = port;
                }
                server
            })
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
        // Ipv4AndIpv6 sends the A and the AAAA query at once (a join inside
        // one lookup), so one attempt costs one slot of --concurrency
        // whatever the families; tested below.
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
        Ok(Self {
            resolver,
            lookups: tokio::sync::Semaphore::new(MAX_LOOKUPS),
        })
    }
}

impl Resolve for Dns {
    async fn resolve(&self, name: &str) -> Result<Vec<IpAddr>, Cause> {
        let _slot = self
            .lookups
            .acquire()
            .await
            .expect("the semaphore is never closed");
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
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::sync::{Arc, Mutex};

    use hickory_resolver::net::NoRecords;
    use hickory_resolver::proto::op::{Message, Query};
    use hickory_resolver::proto::rr::rdata::{A, AAAA};
    use hickory_resolver::proto::rr::{RData, Record, RecordType};
    use tokio::net::UdpSocket;
    use tokio::time::Instant;

    use super::*;
    use crate::gate::Gate;
    use crate::peers::{Peer, Target};
    use crate::probe::Prober;

    /// What the test server saw.
    #[derive(Default)]
    struct Seen {
        /// (record type, arrival), in arrival order.
        queries: Vec<(RecordType, Instant)>,
        /// Queries received and not answered yet, now and at most.
        outstanding: usize,
        max_outstanding: usize,
    }

    /// A DNS server on 127.0.0.1 that answers every A query with 10.0.0.1
    /// and every AAAA query with fd00::1, each after `delay`.
    async fn slow_server(delay: Duration) -> (u16, Arc<Mutex<Seen>>) {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let port = socket.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let state = Arc::clone(&seen);
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let (len, from) = socket.recv_from(&mut buf).await.unwrap();
                let query = Message::from_vec(&buf[..len]).unwrap();
                let question = query.queries[0].clone();
                {
                    let mut s = state.lock().unwrap();
                    s.queries.push((question.query_type(), Instant::now()));
                    s.outstanding += 1;
                    s.max_outstanding = s.max_outstanding.max(s.outstanding);
                }
                let (socket, state) = (Arc::clone(&socket), Arc::clone(&state));
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
                    reply.metadata.recursion_desired = true;
                    reply.metadata.recursion_available = true;
                    let rdata = match question.query_type() {
                        RecordType::AAAA => {
                            RData::AAAA(AAAA(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)))
                        }
                        _ => RData::A(A(Ipv4Addr::new(10, 0, 0, 1))),
                    };
                    reply.add_answer(Record::from_rdata(question.name().clone(), 5, rdata));
                    reply.add_query(question);
                    state.lock().unwrap().outstanding -= 1;
                    socket
                        .send_to(&reply.to_vec().unwrap(), from)
                        .await
                        .unwrap();
                });
            }
        });
        (port, seen)
    }

    fn settings(family: Family) -> DnsSettings {
        DnsSettings {
            nameservers: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            search: Vec::new(),
            ndots: 1,
            timeout: Duration::from_secs(5),
            family,
        }
    }

    const DELAY: Duration = Duration::from_millis(300);

    /// A gate over `n` names served by the test server on `port`, where
    /// resolving is enough, with `concurrency` attempts at once.
    fn resolving_gate(
        settings: &DnsSettings,
        port: u16,
        n: u32,
        concurrency: usize,
    ) -> Gate<Dns, Prober> {
        let dns = Arc::new(Dns::with_port(settings, port).unwrap());
        let peers: Vec<Peer> = (0..n)
            .map(|i| Peer {
                index: Some(i),
                target: Target::Name(format!("job-{i}.svc.test.")),
            })
            .collect();
        Gate::new(
            peers,
            None,
            Some(dns),
            Arc::new(Prober::Dns),
            Duration::from_secs(1),
            concurrency,
        )
    }

    #[tokio::test]
    async fn both_families_are_asked_at_once() {
        let (port, seen) = slow_server(DELAY).await;
        let dns = Dns::with_port(&settings(Family::Dual), port).unwrap();
        let start = Instant::now();
        let addrs = dns.resolve("job-0.svc.test.").await.unwrap();
        let took = start.elapsed();
        assert_eq!(addrs.len(), 2, "{addrs:?}");
        let seen = seen.lock().unwrap();
        let types: Vec<RecordType> = seen.queries.iter().map(|(t, _)| *t).collect();
        assert_eq!(types.len(), 2, "{types:?}");
        assert!(types.contains(&RecordType::A) && types.contains(&RecordType::AAAA));
        // The second query left before the first was answered...
        assert_eq!(seen.max_outstanding, 2);
        // ...so the lookup took one server delay, not two.
        assert!(took < 2 * DELAY, "{took:?}");
    }

    /// With both families a gate attempt sends two queries at once, and
    /// --concurrency still counts attempts (peers), not queries.
    #[tokio::test]
    async fn both_families_do_not_halve_the_gates_concurrency() {
        for (family, per_attempt) in [(Family::V4, 1), (Family::Dual, 2)] {
            let (port, seen) = slow_server(DELAY).await;
            let mut gate = resolving_gate(&settings(family), port, 8, 4);
            tokio::time::timeout(Duration::from_secs(10), gate.run())
                .await
                .expect("every peer resolves");
            let seen = seen.lock().unwrap();
            assert_eq!(seen.queries.len(), 8 * per_attempt, "{family:?}");
            assert_eq!(seen.max_outstanding, 4 * per_attempt, "{family:?}");
        }
    }

    /// However many attempts --concurrency lets run, at most MAX_LOOKUPS
    /// lookups are outstanding at the server (each costs a socket and its
    /// buffers).
    #[tokio::test]
    async fn lookups_in_flight_are_bounded() {
        let (port, seen) = slow_server(DELAY).await;
        let n = 2 * MAX_LOOKUPS as u32;
        let mut gate = resolving_gate(&settings(Family::V4), port, n, 256);
        let start = Instant::now();
        tokio::time::timeout(Duration::from_secs(10), gate.run())
            .await
            .expect("every peer resolves");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.queries.len(), n as usize);
        assert_eq!(seen.max_outstanding, MAX_LOOKUPS);
        // Two rounds of the server's delay, not one per peer.
        assert!(start.elapsed() < 3 * DELAY, "{:?}", start.elapsed());
    }

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
