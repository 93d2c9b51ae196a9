//! What a child's environment holds: least privilege by default (DESIGN.md decision 4).
//!
//! A program or build step does not inherit the supervisor's environment. It gets:
//! 1. the supervisor's variables named by [`BASE`] (locale, time zone, `PATH`), and those its
//!    `pass_env` names (exact names, `PREFIX*` patterns, or `*` for all: supervisord's way,
//!    which `supervisor import` writes);
//! 2. `HOME`, `USER` and `LOGNAME`: when it runs as another `user`, that user's (as systemd's
//!    `User=` does), else the supervisor's; unless step 1 or 3 set them, or `pass_env` is `*`
//!    (then, as under supervisord, exactly the supervisor's environment);
//! 3. what its own configuration gives it (the variables of the global `env_file` that
//!    `pass_env` names, its own `env_file`, its `environment` table), in that order.
//!
//! So a secret reaches only the programs whose configuration names it.

use std::ffi::OsString;

/// Passed to every child: what any program needs to run and to read and write text.
pub const BASE: &[&str] = &["PATH", "LANG", "LANGUAGE", "LC_*", "TZ"];

/// Whether `name` is selected by `pattern` (`NAME`, `PREFIX*` or `*`).
pub fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// Whether `pattern` is a usable `pass_env` entry; the reason when not.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    let name = pattern.strip_suffix('*').unwrap_or(pattern);
    let valid = name
        .bytes()
        .enumerate()
        .all(|(i, b)| b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()));
    if valid && (!name.is_empty() || pattern == "*") {
        Ok(())
    } else {
        Err(format!(
            "{pattern:?} is not a variable name, NAME*, or * (pass_env names the supervisor's variables a program receives)"
        ))
    }
}

/// The account a child runs as, for `HOME`, `USER` and `LOGNAME`.
#[derive(Clone, Copy, Debug)]
pub struct Account<'a> {
    pub name: &'a str,
    pub home: &'a str,
}

/// The whole environment of a child, from the supervisor's own (`inherited`, e.g.
/// `std::env::vars_os()`), its `pass_env`, the account it runs as (None: the supervisor's) and
/// what its configuration sets. Later entries win over earlier ones with the same name.
pub fn child(
    inherited: impl IntoIterator<Item = (OsString, OsString)>,
    pass_env: &[String],
    account: Option<Account<'_>>,
    configured: &[(String, String)],
) -> Vec<(OsString, OsString)> {
    let passes = |name: &str| {
        BASE.iter().any(|p| matches(p, name))
            || pass_env.iter().any(|p| matches(p, name))
            || (account.is_none() && matches!(name, "HOME" | "USER" | "LOGNAME"))
    };
    let mut env: Vec<(OsString, OsString)> = inherited
        .into_iter()
        .filter(|(k, _)| k.to_str().is_some_and(passes))
        .collect();
    let everything = pass_env.iter().any(|p| p == "*");
    if let Some(account) = account.filter(|_| !everything) {
        for (k, v) in [
            ("HOME", account.home),
            ("USER", account.name),
            ("LOGNAME", account.name),
        ] {
            let set = env.iter().any(|(name, _)| name == k)
                || configured.iter().any(|(name, _)| name == k);
            if !set {
                env.push((k.into(), v.into()));
            }
        }
    }
    for (k, v) in configured {
        env.retain(|(name, _)| name != k.as_str());
        env.push((k.into(), v.into()));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        list.iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    fn strs(env: &[(OsString, OsString)]) -> Vec<(String, String)> {
        env.iter()
            .map(|(k, v)| (k.to_string_lossy().into(), v.to_string_lossy().into()))
            .collect()
    }

    const SUPERVISOR: &[(&str, &str)] = &[
        ("PATH", "/usr/bin"),
        ("LANG", "C.UTF-8"),
        ("LC_ALL", "C"),
        ("HOME", "/root"),
        ("DISCORD_TOKEN", "secret-token"),
        ("HOOKD_SECRET", "secret-hook"),
        ("RUST_LOG", "debug"),
    ];

    #[test]
    fn by_default_only_the_base_and_no_secret() {
        let env = strs(&child(vars(SUPERVISOR), &[], None, &[]));
        let names: Vec<_> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["PATH", "LANG", "LC_ALL", "HOME"]);
    }

    #[test]
    fn pass_env_names_patterns_and_all() {
        let named = strs(&child(
            vars(SUPERVISOR),
            &["HOOKD_SECRET".into()],
            None,
            &[],
        ));
        assert!(named.contains(&("HOOKD_SECRET".into(), "secret-hook".into())));
        assert!(!named.iter().any(|(k, _)| k == "DISCORD_TOKEN"));
        let prefix = strs(&child(vars(SUPERVISOR), &["DISCORD_*".into()], None, &[]));
        assert!(prefix.iter().any(|(k, _)| k == "DISCORD_TOKEN"));
        let all = child(vars(SUPERVISOR), &["*".into()], None, &[]);
        assert_eq!(all.len(), SUPERVISOR.len());
    }

    #[test]
    fn another_user_gets_its_own_home_unless_configured() {
        let account = Some(Account {
            name: "bot",
            home: "/home/bot",
        });
        let env = strs(&child(vars(SUPERVISOR), &[], account, &[]));
        assert!(env.contains(&("HOME".into(), "/home/bot".into())));
        assert!(env.contains(&("USER".into(), "bot".into())));
        let configured = [("HOME".to_owned(), "/srv".to_owned())];
        let env = strs(&child(vars(SUPERVISOR), &[], account, &configured));
        let homes: Vec<_> = env.iter().filter(|(k, _)| k == "HOME").collect();
        assert_eq!(homes, [&("HOME".to_owned(), "/srv".to_owned())]);
        // pass_env = ["*"] (supervisord's way): the supervisor's environment, no more.
        let env = strs(&child(vars(SUPERVISOR), &["*".into()], account, &[]));
        assert!(env.contains(&("HOME".into(), "/root".into())));
        assert!(!env.iter().any(|(k, _)| k == "USER"));
    }

    #[test]
    fn configuration_wins_over_the_inherited() {
        let configured = [("PATH".to_owned(), "/opt/bin".to_owned())];
        let env = strs(&child(vars(SUPERVISOR), &[], None, &configured));
        let paths: Vec<_> = env.iter().filter(|(k, _)| k == "PATH").collect();
        assert_eq!(paths, [&("PATH".to_owned(), "/opt/bin".to_owned())]);
    }

    #[test]
    fn patterns_are_checked() {
        for ok in ["*", "RUST_LOG", "LC_*", "_X1"] {
            assert!(check_pattern(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1X", "A-B", "*X", "A*B", "A B"] {
            assert!(check_pattern(bad).is_err(), "{bad}");
        }
    }
}
