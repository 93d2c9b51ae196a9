//! Who may use which verb: root and the supervisor's own user may do everything; any other uid
//! only what `[control.allow]` grants it, for every program or (`"USER:PROGRAM"`) for the
//! programs named. `version` is open to every peer.

use std::collections::BTreeMap;

use supervisor_proto::{Request, Verb};

use crate::config::{ControlSection, Grant};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acl {
    own_uid: u32,
    allow: BTreeMap<Verb, Vec<Grant>>,
}

impl Acl {
    pub fn new(own_uid: u32, control: &ControlSection) -> Self {
        Self {
            own_uid,
            allow: control.allow.clone(),
        }
    }

    /// Whether `uid` may send `request`. A grant narrowed to programs covers a request only
    /// when it names programs, all of them in the grant (not `all`, not a group, not none).
    pub fn allows(&self, uid: u32, request: &Request) -> bool {
        let verb = request.verb();
        if uid == 0 || uid == self.own_uid || verb == Verb::Version {
            return true;
        }
        let Some(grants) = self.allow.get(&verb) else {
            return false;
        };
        grants
            .iter()
            .filter(|g| g.uid == uid)
            .any(|g| match &g.programs {
                None => true,
                Some(allowed) => request.targets().is_some_and(|names| {
                    !names.is_empty() && names.iter().all(|n| allowed.iter().any(|a| a == n))
                }),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(uid: u32) -> Grant {
        Grant {
            uid,
            programs: None,
        }
    }

    fn status() -> Request {
        Request::Status { names: Vec::new() }
    }

    fn deploy(name: &str) -> Request {
        Request::Deploy {
            name: name.into(),
            trigger: None,
            force: false,
            commit: None,
            branch: None,
        }
    }

    #[test]
    fn grants_per_verb() {
        let mut control = ControlSection::default();
        control
            .allow
            .insert(Verb::Status, vec![all(1001), all(1002)]);
        control.allow.insert(Verb::Deploy, vec![all(1001)]);
        let acl = Acl::new(500, &control);
        assert!(acl.allows(0, &Request::Shutdown), "root may do everything");
        assert!(
            acl.allows(500, &Request::Shutdown),
            "so may the supervisor's own user"
        );
        assert!(acl.allows(1001, &deploy("bot")));
        assert!(acl.allows(1002, &status()));
        assert!(!acl.allows(1002, &deploy("bot")));
        assert!(!acl.allows(1003, &status()));
        assert!(acl.allows(1003, &Request::Version));
    }

    #[test]
    fn grants_narrowed_to_programs() {
        let mut control = ControlSection::default();
        let narrowed = Grant {
            uid: 1001,
            programs: Some(vec!["bot".into(), "web".into()]),
        };
        control.allow.insert(Verb::Deploy, vec![narrowed.clone()]);
        control.allow.insert(Verb::Restart, vec![narrowed]);
        let acl = Acl::new(500, &control);
        assert!(acl.allows(1001, &deploy("bot")));
        assert!(!acl.allows(1001, &deploy("hookd")));
        let restart = |names: &[&str]| Request::Restart {
            names: names.iter().map(|n| (*n).to_owned()).collect(),
        };
        assert!(acl.allows(1001, &restart(&["bot", "web"])));
        assert!(!acl.allows(1001, &restart(&["bot", "hookd"])));
        assert!(!acl.allows(1001, &restart(&["all"])));
        assert!(!acl.allows(1001, &restart(&[])));
    }
}
