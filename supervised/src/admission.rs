//! Who gets one of a server's connection places. A global cap alone lets one client take them
//! all (a thousand idle connections, and `/health` and the forge's next delivery are refused);
//! so each source holds at most [`Limits::max_per_source`](crate::http::Limits), and the last
//! [`Limits::reserve`](crate::http::Limits) places go only to sources that hold almost none,
//! so that a health probe or a real webhook still gets in while several sources fill the rest.
//!
//! A source is an IPv4 address, or an IPv6 /64 (one host is routinely given a whole /64, and
//! counting its addresses one by one would let it open as many places as it likes). Behind a
//! proxy every connection comes from the proxy: the proxy then limits per client (the shipped
//! nginx has `limit_conn`), and the cap per source bounds the proxy as a whole.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// A source holding fewer connections than this may take a reserved place.
const LIGHT: usize = 4;

/// The address a connection is counted against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    V4(u32),
    /// The upper 64 bits of the address.
    V6(u64),
}

impl Source {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Source::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::V4(u32::from(v4)),
                None => Source::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// Why a connection was closed at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Every place is taken.
    Full,
    /// This source holds its share already.
    SourceFull,
    /// Only the reserve is left, and this source is not light.
    Reserved,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Full => "the connection limit is reached",
            Refusal::SourceFull => "this source holds its share of connections",
            Refusal::Reserved => "the places left are reserved for new sources",
        }
    }
}

/// The counts: all places, and per source.
#[derive(Debug)]
pub struct Admission {
    max: usize,
    per_source: usize,
    reserve: usize,
    total: usize,
    held: HashMap<Source, usize>,
}

impl Admission {
    /// `reserve` is taken at most as an eighth of `max`, so that a small cap stays usable.
    pub fn new(max: usize, per_source: usize, reserve: usize) -> Self {
        Self {
            max,
            per_source: per_source.max(1),
            reserve: reserve.min(max / 8),
            total: 0,
            held: HashMap::new(),
        }
    }

    /// Takes a place for `source`, or says why not.
    pub fn admit(&mut self, source: Source) -> Result<(), Refusal> {
        let holds = self.held.get(&source).copied().unwrap_or(0);
        if self.total >= self.max {
            return Err(Refusal::Full);
        }
        if holds >= self.per_source {
            return Err(Refusal::SourceFull);
        }
        if self.total >= self.max - self.reserve && holds >= LIGHT {
            return Err(Refusal::Reserved);
        }
        self.total += 1;
        *self.held.entry(source).or_default() += 1;
        Ok(())
    }

    /// Gives a place back.
    pub fn release(&mut self, source: Source) {
        if let Some(n) = self.held.get_mut(&source) {
            *n -= 1;
            self.total -= 1;
            if *n == 0 {
                self.held.remove(&source);
            }
        }
    }

    pub fn total(&self) -> usize {
        self.total
    }
}

/// A place held by one connection; dropping it gives the place back.
#[derive(Debug)]
pub struct Place {
    admission: Arc<Mutex<Admission>>,
    source: Source,
}

impl Place {
    /// Takes a place in the shared counts.
    pub fn take(admission: &Arc<Mutex<Admission>>, ip: IpAddr) -> Result<Self, Refusal> {
        let source = Source::of(ip);
        admission
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit(source)?;
        Ok(Self {
            admission: admission.clone(),
            source,
        })
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.admission
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .release(self.source);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Source {
        Source::of(s.parse().unwrap())
    }

    #[test]
    fn one_source_gets_its_share_and_the_reserve_is_kept_for_light_ones() {
        // 16 places, 10 per source, the last 2 for sources holding fewer than 4.
        let mut a = Admission::new(16, 10, 2);
        let (heavy, other, probe) = (ip("192.0.2.1"), ip("192.0.2.2"), ip("192.0.2.3"));
        for _ in 0..10 {
            assert_eq!(a.admit(heavy), Ok(()));
        }
        assert_eq!(a.admit(heavy), Err(Refusal::SourceFull));
        for _ in 0..4 {
            assert_eq!(a.admit(other), Ok(()));
        }
        // 14 taken: the 2 left are the reserve, and `other` holds 4.
        assert_eq!(a.admit(other), Err(Refusal::Reserved));
        assert_eq!(a.admit(probe), Ok(()));
        assert_eq!(a.admit(probe), Ok(()));
        assert_eq!(a.admit(ip("192.0.2.4")), Err(Refusal::Full));
        a.release(heavy);
        assert_eq!(a.total(), 15);
        assert_eq!(a.admit(ip("192.0.2.4")), Ok(()));
        // Releasing what a source does not hold changes nothing.
        a.release(ip("198.51.100.1"));
        assert_eq!(a.total(), 16);
    }

    #[test]
    fn a_small_cap_keeps_no_reserve() {
        let mut a = Admission::new(3, 1024, 64);
        let one = ip("127.0.0.1");
        for _ in 0..3 {
            assert_eq!(a.admit(one), Ok(()));
        }
        assert_eq!(a.admit(one), Err(Refusal::Full));
    }

    #[test]
    fn an_ipv6_host_is_its_64_and_a_mapped_ipv4_is_the_ipv4() {
        assert_eq!(ip("2001:db8:1:2::1"), ip("2001:db8:1:2:ffff::9"));
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_eq!(ip("::ffff:192.0.2.1"), ip("192.0.2.1"));
    }

    #[test]
    fn places_are_given_back_when_dropped() {
        let shared = Arc::new(Mutex::new(Admission::new(2, 2, 0)));
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        let a = Place::take(&shared, ip).unwrap();
        let _b = Place::take(&shared, ip).unwrap();
        assert_eq!(Place::take(&shared, ip).unwrap_err(), Refusal::Full);
        drop(a);
        assert!(Place::take(&shared, ip).is_ok());
    }
}
