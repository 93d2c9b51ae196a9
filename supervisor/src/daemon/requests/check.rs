//! `check`: the configuration file as it is now, validated as a start would (on a blocking
//! thread: it reads files and looks up users and groups).

use supervisor_proto::Reply;

use super::super::Daemon;
use super::{Replier, off_thread};

impl Daemon {
    pub(super) fn check(&self, reply: Replier) {
        let path = self.config.path.clone();
        off_thread(reply, move || {
            let errors = match crate::config::load(&path) {
                Ok(_) => Vec::new(),
                Err(e) => e.0.iter().map(ToString::to_string).collect(),
            };
            Ok(Reply::Check {
                path: path.display().to_string(),
                errors,
            })
        });
    }
}
