//! supervisord's namespecs: `name`, `group:name`, `group:*` (a program outside any group is a
//! group of its own name, as in supervisord).

use dxr::Fault;
use supervisor_proto::ProgramState;

use super::faults::Code;
use crate::config::Config;

/// `group:name` → (`group`, `Some(name)`); `group:*` and `group:` → (`group`, `None`);
/// `name` → (`name`, `Some(name)`), as supervisord's `split_namespec`.
pub fn split(spec: &str) -> (String, Option<String>) {
    match spec.split_once(':') {
        Some((group, "" | "*")) => (group.to_owned(), None),
        Some((group, name)) => (group.to_owned(), Some(name.to_owned())),
        None => (spec.to_owned(), Some(spec.to_owned())),
    }
}

/// A program's group as supervisord sees it: its `group`, or its own name.
pub fn group_of(cfg: &crate::config::ProgramConfig) -> &str {
    cfg.group.as_deref().unwrap_or(cfg.name.as_str())
}

/// The one program a namespec names, or BAD_NAME.
pub fn one_program(config: &Config, spec: &str) -> Result<Vec<String>, Fault> {
    let (group, name) = split(spec);
    let name = name.ok_or_else(|| Code::BadName.fault(spec))?;
    config
        .programs
        .iter()
        .find(|p| p.name.as_str() == name && group_of(p) == group)
        .map(|p| vec![p.name.to_string()])
        .ok_or_else(|| Code::BadName.fault(spec))
}

/// The programs of a group (every program for `None`), or BAD_NAME for an unknown group.
pub fn members(config: &Config, group: Option<&str>) -> Result<Vec<String>, Fault> {
    let names: Vec<String> = config
        .programs
        .iter()
        .filter(|p| group.is_none_or(|g| group_of(p) == g))
        .map(|p| p.name.to_string())
        .collect();
    match (group, names.is_empty()) {
        (Some(g), true) => Err(Code::BadName.fault(g)),
        _ => Ok(names),
    }
}

pub fn running(state: ProgramState) -> bool {
    matches!(
        state,
        ProgramState::Starting | ProgramState::Running | ProgramState::Backoff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespecs_split_as_supervisord_splits_them() {
        assert_eq!(split("web"), ("web".into(), Some("web".into())));
        assert_eq!(
            split("ds:docservice"),
            ("ds".into(), Some("docservice".into()))
        );
        assert_eq!(split("ds:*"), ("ds".into(), None));
        assert_eq!(split("ds:"), ("ds".into(), None));
    }
}
