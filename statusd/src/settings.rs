//! statusd's settings, from the environment.

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Clone)]
pub struct Settings {
    /// `STATUSD_LISTEN`, default `127.0.0.1:8000` (`0.0.0.0:8000` in the container).
    pub listen: SocketAddr,
    /// `SUPERVISOR_SOCKET`, default `data/supervisor.sock`.
    pub socket: PathBuf,
    /// `STATUSD_TOKEN`: when set, every endpoint but `/ping` and `/health` wants
    /// `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// `ALERT_WEBHOOK_URL` (with `ALERT_PROGRAMS`, `ALERT_WEBHOOK_FORMAT`): where alerts about
    /// the bot go when the bot cannot post them.
    pub alerts: Option<crate::alerts::AlertSettings>,
    /// `TLS_PROBE` (with `TLS_PROBE_NAME`, `TLS_PROBE_INTERVAL`): the HTTPS front whose
    /// certificate's expiry to watch.
    pub tls: Option<crate::tls::ProbeSettings>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("socket", &self.socket)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("alerts", &self.alerts)
            .field("tls", &self.tls)
            .finish()
    }
}

impl Settings {
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        let listen = env("STATUSD_LISTEN").unwrap_or_else(|| "127.0.0.1:8000".into());
        let listen = listen.parse().map_err(|_| {
            format!("STATUSD_LISTEN={listen:?} is not an address such as 127.0.0.1:8000")
        })?;
        Ok(Self {
            listen,
            socket: PathBuf::from(
                env("SUPERVISOR_SOCKET").unwrap_or_else(|| "data/supervisor.sock".into()),
            ),
            token: env("STATUSD_TOKEN").filter(|t| !t.is_empty()),
            alerts: alert_settings(env)?,
            tls: crate::tls::settings(env)?,
        })
    }
}

fn alert_settings(
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<crate::alerts::AlertSettings>, String> {
    use crate::alerts::{AlertSettings, Format};
    let Some(url) = env("ALERT_WEBHOOK_URL").filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err("ALERT_WEBHOOK_URL must be an http(s):// URL".into());
    }
    let format = match env("ALERT_WEBHOOK_FORMAT").as_deref() {
        None | Some("") | Some("discord") => Format::Discord,
        Some("json") => Format::Json,
        Some(other) => {
            return Err(format!(
                "ALERT_WEBHOOK_FORMAT={other:?}: use \"discord\" (the default) or \"json\""
            ));
        }
    };
    // Empty: every program's alerts.
    let programs = env("ALERT_PROGRAMS")
        .unwrap_or_else(|| "bot".into())
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    Ok(Some(AlertSettings {
        url,
        programs,
        format,
    }))
}
