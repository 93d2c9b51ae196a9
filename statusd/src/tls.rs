//! The TLS probe (`TLS_PROBE`): connects to the HTTPS front (nginx) as a client does, reads the
//! certificate it serves and keeps its expiry in the view, for `/metrics`
//! (`tls_certificate_expiry_seconds`), `/status` and the page's warning. What is read is what
//! clients get: a renewed certificate that nginx has not loaded yet still counts as the old one.
//!
//! The probe judges no trust (a forge's client does, with its own roots); it only reads the
//! certificate, so it accepts any, but still checks that the server holds the certificate's
//! key (the handshake's signature).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::Serialize;

/// Under this many days left, the page warns and an alert is raised.
pub const WARN_DAYS: i64 = 14;
/// An expiry alert is raised again after this long while it holds.
const ALERT_AGAIN: Duration = Duration::from_secs(24 * 3600);
/// After a failed probe, the next one is at most this far away.
const RETRY_FAILED: Duration = Duration::from_secs(30);
/// One probe, connection and handshake, at most this long.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how often to probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSettings {
    /// `host:port` (`nginx:443`).
    pub address: String,
    /// The name sent in the handshake (SNI): `TLS_PROBE_NAME`, else the address's host.
    pub name: String,
    /// `TLS_PROBE_INTERVAL`, default an hour.
    pub every: Duration,
}

/// What the last probe found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Probe {
    pub address: String,
    pub name: String,
    /// When it was probed, Unix milliseconds.
    pub checked_ms: u64,
    /// The served certificate, or why none was read.
    #[serde(flatten)]
    pub result: ProbeResult,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ProbeResult {
    Read(Certificate),
    Failed { error: String },
}

/// The served (leaf) certificate, as far as the page and metrics need it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Certificate {
    pub subject: String,
    pub issuer: String,
    /// Hex, as `openssl x509 -serial` prints it (upper case, no colons).
    pub serial: String,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
}

impl Probe {
    /// The certificate's days left at `now_ms`, if one was read.
    pub fn days_left(&self, now_ms: u64) -> Option<i64> {
        match &self.result {
            ProbeResult::Read(c) => Some((c.not_after - (now_ms / 1000) as i64).div_euclid(86_400)),
            ProbeResult::Failed { .. } => None,
        }
    }

    /// A warning for the page: the certificate expires within [`WARN_DAYS`] (or has), or it
    /// could not be read.
    pub fn warning(&self, now_ms: u64) -> Option<String> {
        match &self.result {
            ProbeResult::Failed { error } => Some(format!(
                "The TLS certificate at {} could not be read: {error}",
                self.address
            )),
            ProbeResult::Read(c) => {
                let left = c.not_after - (now_ms / 1000) as i64;
                if left <= 0 {
                    Some(format!(
                        "The TLS certificate for {} has expired: forges refuse to deliver webhooks",
                        self.name
                    ))
                } else if left < WARN_DAYS * 86_400 {
                    Some(format!(
                        "The TLS certificate for {} expires in {}: its renewal is not working",
                        self.name,
                        span(left)
                    ))
                } else {
                    None
                }
            }
        }
    }
}

/// Raises an alert through the supervisor (`raise tls ...`, critical) when the served
/// certificate expires within [`WARN_DAYS`]: the second line behind the renewal's own alert,
/// for a renewal that never runs at all. Once a day while it holds; never for a probe that
/// failed (nginx restarting is not the certificate's problem).
#[derive(Debug)]
pub struct ExpiryAlert {
    socket: std::path::PathBuf,
    /// When it was last raised; cleared when raising failed, to try again at the next probe.
    last: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

impl ExpiryAlert {
    pub fn new(socket: std::path::PathBuf) -> Self {
        Self {
            socket,
            last: Arc::default(),
        }
    }

    /// After a probe: raises the alert (in a task of its own) when it is due.
    pub fn consider(&self, probe: &Probe) {
        if !matches!(probe.result, ProbeResult::Read(_)) {
            return;
        }
        let Some(warning) = probe.warning(probe.checked_ms) else {
            return;
        };
        let now = std::time::Instant::now();
        {
            let mut last = self
                .last
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.is_some_and(|at| now.duration_since(at) < ALERT_AGAIN) {
                return;
            }
            *last = Some(now);
        }
        let (socket, last) = (self.socket.clone(), self.last.clone());
        tokio::spawn(async move {
            let raised = async {
                let mut client = supervisor_proto::Client::connect(
                    &socket,
                    concat!("statusd/", env!("CARGO_PKG_VERSION")),
                )
                .await?;
                client
                    .raise("tls", &warning, supervisor_proto::Severity::Critical, true)
                    .await
            };
            let failed = match tokio::time::timeout(PROBE_TIMEOUT, raised).await {
                Ok(Ok(alert)) => {
                    tracing::warn!(id = %alert.id, %warning, "TLS expiry alert raised");
                    return;
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => "the supervisor did not answer in time".to_owned(),
            };
            tracing::error!(error = %failed, %warning, "cannot raise the TLS expiry alert; trying again at the next probe");
            *last
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        });
    }
}

/// `13 days`, `1 day`, `5 hours`, `less than an hour`.
fn span(secs: i64) -> String {
    match (secs / 86_400, secs / 3600) {
        (0, 0) => "less than an hour".into(),
        (0, 1) => "1 hour".into(),
        (0, h) => format!("{h} hours"),
        (1, _) => "1 day".into(),
        (d, _) => format!("{d} days"),
    }
}

/// Parses `TLS_PROBE`, `TLS_PROBE_NAME` and `TLS_PROBE_INTERVAL`; `None` without `TLS_PROBE`.
pub fn settings(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<ProbeSettings>, String> {
    let Some(address) = env("TLS_PROBE").filter(|a| !a.is_empty()) else {
        return Ok(None);
    };
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(format!(
            "TLS_PROBE={address:?} is not host:port (such as nginx:443)"
        ));
    };
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(format!(
            "TLS_PROBE={address:?} is not host:port (such as nginx:443)"
        ));
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = env("TLS_PROBE_NAME")
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| host.to_owned());
    if ServerName::try_from(name.clone()).is_err() {
        return Err(format!(
            "TLS_PROBE_NAME={name:?} is not a DNS name or an IP address"
        ));
    }
    let every = match env("TLS_PROBE_INTERVAL").filter(|i| !i.is_empty()) {
        None => Duration::from_secs(3600),
        Some(text) => interval(&text).ok_or_else(|| {
            format!(
                "TLS_PROBE_INTERVAL={text:?}: use seconds, minutes or hours, such as 30s, 10m, 1h"
            )
        })?,
    };
    Ok(Some(ProbeSettings {
        address,
        name,
        every,
    }))
}

/// `30s`, `10m`, `1h` (at least a second).
fn interval(text: &str) -> Option<Duration> {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = number.parse().ok()?;
    let seconds = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        _ => return None,
    };
    (seconds > 0).then(|| Duration::from_secs(seconds))
}

/// Probes every `settings.every` (the first at once; after a failure, within 30 s), calling
/// `found` with each result.
pub async fn run(settings: ProbeSettings, found: impl Fn(Probe)) {
    let config = match client_config() {
        Ok(c) => Arc::new(c),
        Err(error) => {
            tracing::error!(%error, "no TLS probe");
            found(Probe {
                address: settings.address.clone(),
                name: settings.name.clone(),
                checked_ms: now_ms(),
                result: ProbeResult::Failed { error },
            });
            return;
        }
    };
    loop {
        let result =
            match tokio::time::timeout(PROBE_TIMEOUT, read(&settings, config.clone())).await {
                Ok(Ok(cert)) => ProbeResult::Read(cert),
                Ok(Err(error)) => ProbeResult::Failed { error },
                Err(_) => ProbeResult::Failed {
                    error: format!("no TLS handshake within {}s", PROBE_TIMEOUT.as_secs()),
                },
            };
        // A failure (nginx still starting beside statusd) is tried again soon.
        let next = match &result {
            ProbeResult::Failed { error } => {
                tracing::warn!(address = %settings.address, %error, "TLS probe failed");
                settings.every.min(RETRY_FAILED)
            }
            ProbeResult::Read(_) => settings.every,
        };
        found(Probe {
            address: settings.address.clone(),
            name: settings.name.clone(),
            checked_ms: now_ms(),
            result,
        });
        tokio::time::sleep(next).await;
    }
}

/// Wall-clock now, Unix milliseconds.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One handshake: the served leaf certificate.
async fn read(
    settings: &ProbeSettings,
    config: Arc<rustls::ClientConfig>,
) -> Result<Certificate, String> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&settings.address)
        .await
        .map_err(|e| format!("cannot resolve {}: {e}", settings.address))?
        .collect();
    let mut last = format!("{} resolves to no address", settings.address);
    let mut tcp = None;
    for addr in addrs {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = format!("cannot connect to {addr}: {e}"),
        }
    }
    let tcp = tcp.ok_or(last)?;
    let name = ServerName::try_from(settings.name.clone())
        .map_err(|e| format!("{}: {e}", settings.name))?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let (_, session) = tls.get_ref();
    let leaf = session
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("the server sent no certificate")?;
    parse(leaf.as_ref())
}

/// A serial number as `openssl x509 -serial` prints it: upper-case hex of the number, without
/// the zero byte DER puts before one whose first bit is set (half of all random serials).
fn openssl_serial(raw: &[u8]) -> String {
    let first = raw
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    raw[first..].iter().map(|b| format!("{b:02X}")).collect()
}

/// The fields of a DER certificate.
pub fn parse(der: &[u8]) -> Result<Certificate, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("the served certificate cannot be read: {e}"))?;
    let validity = cert.validity();
    Ok(Certificate {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: openssl_serial(cert.raw_serial()),
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
    })
}

fn client_config() -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(ReadOnly(provider.clone()));
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS client: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // Every probe a full handshake: a resumed session carries no certificate, and the one it
    // reports is the one of the session's first handshake, so that a renewed certificate would
    // stay unseen for as long as nginx honours the old session.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

/// Accepts any certificate (reading it is the point), but checks the handshake's signatures:
/// the server must hold the key of the certificate it serves.
#[derive(Debug)]
struct ReadOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for ReadOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // in a test, an unwrap is an assertion
    use super::*;

    #[test]
    fn serials_read_as_openssl_prints_them() {
        assert_eq!(openssl_serial(&[0x00, 0xEC, 0x96, 0x0A]), "EC960A");
        assert_eq!(openssl_serial(&[0x5E, 0x01]), "5E01");
        assert_eq!(openssl_serial(&[0x00]), "00");
        assert_eq!(openssl_serial(&[0x01]), "01");
    }

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn settings_read_and_refuse_with_the_variable_named() {
        assert_eq!(settings(&env(&[])).unwrap(), None);
        let s = settings(&env(&[("TLS_PROBE", "nginx:443")]))
            .unwrap()
            .unwrap();
        assert_eq!(
            (s.name.as_str(), s.every),
            ("nginx", Duration::from_secs(3600))
        );
        let s = settings(&env(&[
            ("TLS_PROBE", "[::1]:8443"),
            ("TLS_PROBE_NAME", "bot.example.org"),
            ("TLS_PROBE_INTERVAL", "10m"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            (s.name.as_str(), s.every),
            ("bot.example.org", Duration::from_secs(600))
        );
        for (pairs, says) in [
            (&[("TLS_PROBE", "nginx")][..], "TLS_PROBE="),
            (&[("TLS_PROBE", "nginx:0")][..], "TLS_PROBE="),
            (&[("TLS_PROBE", ":443")][..], "TLS_PROBE="),
            (
                &[("TLS_PROBE", "nginx:443"), ("TLS_PROBE_NAME", "a b")][..],
                "TLS_PROBE_NAME=",
            ),
            (
                &[("TLS_PROBE", "nginx:443"), ("TLS_PROBE_INTERVAL", "0s")][..],
                "TLS_PROBE_INTERVAL=",
            ),
            (
                &[("TLS_PROBE", "nginx:443"), ("TLS_PROBE_INTERVAL", "1d")][..],
                "TLS_PROBE_INTERVAL=",
            ),
        ] {
            let pairs: &'static [(&str, &str)] = Box::leak(pairs.to_vec().into_boxed_slice());
            let e = settings(&env(pairs)).unwrap_err();
            assert!(e.starts_with(says), "{pairs:?}: {e}");
        }
    }

    #[test]
    fn warns_under_fourteen_days_and_when_unreadable() {
        let now_ms = 1_795_520_000_000u64;
        let now = (now_ms / 1000) as i64;
        let probe = |not_after: i64| Probe {
            address: "nginx:443".into(),
            name: "bot.example.org".into(),
            checked_ms: now_ms,
            result: ProbeResult::Read(Certificate {
                subject: "CN=bot.example.org".into(),
                issuer: "CN=Pebble".into(),
                serial: "01".into(),
                not_before: now - 86_400,
                not_after,
            }),
        };
        assert_eq!(probe(now + 20 * 86_400).warning(now_ms), None);
        assert_eq!(probe(now + 20 * 86_400).days_left(now_ms), Some(20));
        let soon = probe(now + 13 * 86_400).warning(now_ms).unwrap();
        assert!(soon.contains("expires in 13 days:"), "{soon}");
        let hours = probe(now + 5 * 3600 + 10).warning(now_ms).unwrap();
        assert!(hours.contains("expires in 5 hours:"), "{hours}");
        let gone = probe(now - 1).warning(now_ms).unwrap();
        assert!(gone.contains("has expired"), "{gone}");
        let failed = Probe {
            result: ProbeResult::Failed {
                error: "cannot connect".into(),
            },
            ..probe(0)
        };
        assert!(
            failed
                .warning(now_ms)
                .unwrap()
                .contains("could not be read")
        );
        assert_eq!(failed.days_left(now_ms), None);
    }
}
