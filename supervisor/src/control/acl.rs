//! Who may use which verb: root and the supervisor's own user may do everything; any other uid
//! only what `[control.allow]` grants it. `version` is open to every peer.

use std::collections::BTreeMap;

use crate::config::ControlSection;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acl {
    own_uid: u32,
    allow: BTreeMap<String, Vec<u32>>,
}

impl Acl {
    pub fn new(own_uid: u32, control: &ControlSection) -> Self {
        Self {
            own_uid,
            allow: control.allow.clone(),
        }
    }

    pub fn allows(&self, uid: u32, verb: &str) -> bool {
        uid == 0
            || uid == self.own_uid
            || verb == "version"
            || self.allow.get(verb).is_some_and(|uids| uids.contains(&uid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_per_verb() {
        let mut control = ControlSection::default();
        control.allow.insert("status".into(), vec![1001, 1002]);
        control.allow.insert("deploy".into(), vec![1001]);
        let acl = Acl::new(500, &control);
        assert!(acl.allows(0, "shutdown"), "root may do everything");
        assert!(
            acl.allows(500, "shutdown"),
            "so may the supervisor's own user"
        );
        assert!(acl.allows(1001, "deploy"));
        assert!(acl.allows(1002, "status"));
        assert!(!acl.allows(1002, "deploy"));
        assert!(!acl.allows(1003, "status"));
        assert!(acl.allows(1003, "version"));
    }
}
