//! `deploy` and `rollback`: checked here (the pushed branch, a commit held back), then handed
//! to the deploy machine (`daemon/deploy.rs`), which answers with the deploy's id at once.

use supervisor_proto::{DeployKind, ErrorBody, Reply};

use super::super::Daemon;

impl Daemon {
    pub(super) fn deploy_request(
        &mut self,
        uid: u32,
        name: &str,
        trigger: Option<String>,
        force: bool,
        commit: Option<String>,
        branch: Option<String>,
    ) -> Result<Reply, ErrorBody> {
        let trigger = trigger.unwrap_or_else(|| format!("uid {uid}"));
        if let Some(branch) = branch {
            self.refuse_other_branch(name, &branch)?;
        }
        if let (Some(commit), false) = (&commit, force) {
            self.refuse_held_back(name, commit)?;
        }
        self.request_deploy(name, DeployKind::Deploy, trigger, force, commit)
    }

    pub(super) fn rollback_request(&mut self, uid: u32, name: &str) -> Result<Reply, ErrorBody> {
        let trigger = format!("rollback by uid {uid}");
        self.request_deploy(name, DeployKind::Rollback, trigger, false, None)
    }
}
