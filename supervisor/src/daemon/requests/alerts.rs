//! `alerts` and `raise`: the alerts kept, and a client's own.

use supervisor_proto::{ErrorBody, ErrorKind, Reply};

use super::super::Daemon;
use super::error;

/// The longest message `raise` takes, in characters.
const RAISE_MESSAGE_MAX: usize = 1500;

impl Daemon {
    /// `raise`: a client's alert, checked like everything else that ends up in a channel.
    pub(super) fn raise_request(
        &mut self,
        subject: String,
        message: String,
        severity: supervisor_proto::Severity,
        critical: bool,
    ) -> Result<Reply, ErrorBody> {
        supervisor_proto::ProgramName::new(&subject)
            .map_err(|e| error(ErrorKind::BadRequest, format!("subject: {e}")))?;
        let message = message.trim();
        if message.is_empty() {
            return Err(error(ErrorKind::BadRequest, "the message is empty"));
        }
        // Discord takes 2,000 characters; the bot prefixes a line of its own.
        if message.chars().count() > RAISE_MESSAGE_MAX {
            return Err(error(
                ErrorKind::BadRequest,
                format!("the message is longer than {RAISE_MESSAGE_MAX} characters"),
            ));
        }
        let alert = self.alerts.raise(
            subject,
            critical,
            supervisor_proto::AlertKind::Reported,
            severity,
            message.to_owned(),
        );
        Ok(Reply::Alerts {
            records: vec![alert],
        })
    }
}
