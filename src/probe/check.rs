//! What every probe is: something that checks one address.

use std::net::IpAddr;
use std::time::Duration;

use crate::cause::Cause;

/// Something that checks one address; the gate is generic over it so its
/// timing can be tested without a network.
pub trait Probe: Send + Sync + 'static {
    /// `Ok` with the round-trip time when the address proves the host up.
    fn probe(
        &self,
        addr: IpAddr,
    ) -> impl std::future::Future<Output = Result<Duration, Cause>> + Send;
}
