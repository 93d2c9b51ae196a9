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
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("socket", &self.socket)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
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
        })
    }
}
