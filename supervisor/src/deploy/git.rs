//! The commands a deploy runs and how their output reads: git's argument lists (never through a
//! shell), the release step, the steps' environment, and what the deploy log may show of them.

use std::path::Path;

use std::time::Duration;

use crate::config::{DeployConfig, Download};

/// A commit and its subject line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    pub id: String,
    pub subject: Option<String>,
}

fn git(args: &[&str]) -> Vec<String> {
    std::iter::once("git")
        .chain(args.iter().copied())
        .map(str::to_owned)
        .collect()
}

pub fn init() -> Vec<String> {
    git(&["init", "-q"])
}

/// `git fetch` of the branch into `refs/remotes/REMOTE/BRANCH`, from `url` when set.
pub fn fetch(cfg: &DeployConfig) -> Vec<String> {
    let refspec = format!(
        "+refs/heads/{0}:refs/remotes/{1}/{0}",
        cfg.branch, cfg.remote
    );
    let from = cfg.url.as_deref().unwrap_or(&cfg.remote);
    // A repository on this machine is usually another user's (root's, or a mounted forge's),
    // which git refuses to read as the deploy's user ("dubious ownership"). Its reader is
    // trusted for this one fetch; git clears `-c` and GIT_CONFIG_* for local transports, so it
    // goes on the upload-pack command.
    if cfg.url.as_deref().is_some_and(is_local) {
        let pack = "--upload-pack=git -c 'safe.directory=*' upload-pack";
        git(&["fetch", "--no-tags", pack, "--", from, &refspec])
    } else {
        git(&["fetch", "--no-tags", "--", from, &refspec])
    }
}

/// `git ls-remote` of the branch: what a poll asks, without fetching anything. With
/// `artifact_url` and an http(s) remote, the supervisor asks itself (`supervisor ls-remote`):
/// the small image has no git.
pub fn ls_remote(cfg: &DeployConfig) -> Vec<String> {
    let from = cfg.url.as_deref().unwrap_or(&cfg.remote);
    let head = format!("refs/heads/{}", cfg.branch);
    if cfg.download.is_some() && (from.starts_with("https://") || from.starts_with("http://")) {
        let ask = [self_exe(), "ls-remote", "--", from, &head];
        return ask.iter().map(|a| (*a).to_owned()).collect();
    }
    if cfg.url.as_deref().is_some_and(is_local) {
        let pack = "--upload-pack=git -c 'safe.directory=*' upload-pack";
        git(&["ls-remote", pack, "--", from, &head])
    } else {
        git(&["ls-remote", "--", from, &head])
    }
}

/// The commit id in `git ls-remote` output for one ref.
pub fn ls_remote_commit(output: &str) -> Option<String> {
    output
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .find(|c| is_commit(c))
        .map(str::to_owned)
}

fn is_local(url: &str) -> bool {
    is_local_path(url) || url.starts_with("file://")
}

/// The fetched tip, as a revision.
pub fn tip(cfg: &DeployConfig) -> String {
    format!("refs/remotes/{}/{}^{{commit}}", cfg.remote, cfg.branch)
}

/// The commit id, then its subject line: what the history and the announcements show.
pub fn describe(rev: &str) -> Vec<String> {
    git(&["log", "-1", "--format=%H%n%s", rev, "--"])
}

pub fn checkout(commit: &str) -> Vec<String> {
    git(&["checkout", "--force", "--detach", commit])
}

/// The supervisor's own binary, for the steps it runs itself (the release copy, the wait and
/// the download of a prebuilt release): its path, as the kernel names it, read once (see
/// [`self_exe`]).
static SELF_EXE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The path of the supervisor's own binary; `/proc/self/exe` (the running image) when that
/// file is gone (replaced by an upgrade). The path rather than `/proc/self/exe` first: under
/// qemu-user (an ARM image emulated on x86), a child's `execve` of `/proc/self/exe` runs qemu
/// itself, not the supervisor. The daemon reads it at start, before its actor runs.
pub fn self_exe() -> &'static str {
    SELF_EXE.get_or_init(|| match std::env::current_exe() {
        Ok(path) if path.is_file() => path.display().to_string(),
        _ => "/proc/self/exe".to_owned(),
    })
}

/// `supervisor release-copy ARTIFACT RELEASES COMMIT KEEP` (see [`super::release`]).
pub fn release_copy(artifact: &Path, releases: &Path, commit: &str, keep: u32) -> Vec<String> {
    vec![
        self_exe().to_owned(),
        "release-copy".to_owned(),
        artifact.display().to_string(),
        releases.display().to_string(),
        commit.to_owned(),
        keep.to_string(),
    ]
}

/// `supervisor release-wait URL` (see [`super::fetch`]).
pub fn release_wait(url: &str, wait: Duration, read_timeout: Duration) -> Vec<String> {
    vec![
        self_exe().to_owned(),
        "release-wait".to_owned(),
        format!("--wait-ms={}", wait.as_millis()),
        format!("--read-timeout-ms={}", read_timeout.as_millis()),
        "--".to_owned(),
        url.to_owned(),
    ]
}

/// `supervisor release-fetch URL ...` (see [`super::fetch`]).
pub fn release_fetch(
    url: &str,
    download: &Download,
    commit: &str,
    releases: &Path,
    name: &str,
    keep: u32,
    read_timeout: Duration,
) -> Vec<String> {
    vec![
        self_exe().to_owned(),
        "release-fetch".to_owned(),
        format!("--key={}", download.signing_key),
        format!("--commit={commit}"),
        format!("--releases={}", releases.display()),
        format!("--name={name}"),
        format!("--keep={keep}"),
        format!("--max-size={}", download.max_size),
        format!("--read-timeout-ms={}", read_timeout.as_millis()),
        "--".to_owned(),
        url.to_owned(),
    ]
}

/// (commit, reference) pairs of a reference advertisement: pkt-lines (`0032<id> <ref>\n`,
/// the first with `\0` and capabilities after it, `0000` between sections), or a dumb
/// server's `<id>\t<ref>` lines.
pub fn read_refs(body: &[u8]) -> Result<Vec<(String, String)>, String> {
    let pair = |line: &[u8]| -> Option<(String, String)> {
        let line = line.split(|b| *b == 0).next()?;
        let line = std::str::from_utf8(line).ok()?.trim_end_matches('\n');
        let (id, name) = line.split_once([' ', '\t'])?;
        is_commit(id).then(|| (id.to_owned(), name.to_owned()))
    };
    // A smart server's answer opens with the `# service=` pkt-line; a dumb one's with an id.
    let smart = body.get(4..14) == Some(b"# service=".as_slice());
    if !smart {
        return Ok(body.split(|b| *b == b'\n').filter_map(pair).collect());
    }
    let mut refs = Vec::new();
    let mut rest = body;
    while rest.len() >= 4 {
        let len = std::str::from_utf8(&rest[..4])
            .ok()
            .and_then(|h| usize::from_str_radix(h, 16).ok())
            .ok_or("not a git reference advertisement")?;
        if len == 0 {
            rest = &rest[4..];
            continue;
        }
        if len < 4 || len > rest.len() {
            return Err("a truncated git reference advertisement".to_owned());
        }
        refs.extend(pair(&rest[4..len]));
        rest = &rest[len..];
    }
    Ok(refs)
}

pub fn is_commit(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The first 12 characters of a commit id, as messages show it.
pub fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// `git log -1 --format=%H%n%s` output: the commit (when it is one) and its subject.
pub fn split_commit(output: Option<&str>) -> Option<Commit> {
    let mut lines = output?.lines();
    let id = lines.next().map(str::trim).filter(|c| is_commit(c))?;
    let subject = lines.next().map(str::trim).filter(|s| !s.is_empty());
    Some(Commit {
        id: id.to_owned(),
        subject: subject.map(str::to_owned),
    })
}

/// The environment of every git command and build step (beyond config::environ's base and the
/// deploy's `pass_env`; no secrets). No terminal, no password prompt, no agent: a git that
/// needs credentials fails fast. No system-wide git configuration, and only transports that
/// fetch (never `ext::`, which runs a command). Then what the deploy table sets.
pub fn step_environment(cfg: &DeployConfig) -> Vec<(String, String)> {
    let mut environment: Vec<(String, String)> = [
        ("GIT_TERMINAL_PROMPT", "0"),
        ("GIT_ASKPASS", "true"),
        ("SSH_ASKPASS", "true"),
        ("GIT_SSH_COMMAND", "ssh -o BatchMode=yes"),
        ("GIT_CONFIG_NOSYSTEM", "1"),
        ("GIT_ALLOW_PROTOCOL", "file:git:http:https:ssh"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    environment.extend(cfg.environment.iter().cloned());
    environment
}

/// What a build may compile at once for every 1.5 GiB of available memory: a rustc compiling
/// serenity or poise takes about that much at its peak.
const MEMORY_PER_BUILD_JOB: u64 = 3 << 29;

/// `CARGO_BUILD_JOBS` for a machine with this much available memory and these CPUs: one job
/// per 1.5 GiB, at least one, at most one per CPU. A 1 GB board builds one crate at a time
/// instead of running out of memory with four.
pub fn build_jobs(memory_available: u64, cpus: usize) -> usize {
    let by_memory = usize::try_from(memory_available / MEMORY_PER_BUILD_JOB).unwrap_or(usize::MAX);
    by_memory.clamp(1, cpus.max(1))
}

/// Whether the deploy sets `name` for its steps itself (`environment`, or `pass_env` passes it).
pub fn sets_variable(cfg: &DeployConfig, name: &str) -> bool {
    cfg.environment.iter().any(|(k, _)| k == name)
        || cfg
            .pass_env
            .iter()
            .any(|p| crate::config::environ::matches(p, name))
}

/// An argument as the deploy log shows it: a URL's user information (`https://user:token@`)
/// replaced, so a credential in `url` is never written down.
pub fn redact_url(arg: &str) -> std::borrow::Cow<'_, str> {
    let Some((scheme, rest)) = arg.split_once("://") else {
        return arg.into();
    };
    let host_end = rest.find('/').unwrap_or(rest.len());
    match rest[..host_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]).into(),
        None => arg.into(),
    }
}

/// Whether a git URL is a local path (`/srv/bot.git`, `../bot.git`), not `scheme://...` or
/// scp-like `host:path`.
pub fn is_local_path(url: &str) -> bool {
    !url.contains("://")
        && url
            .split_once(':')
            .is_none_or(|(before, _)| before.contains('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_advertisement_reads_as_pairs() {
        let a = "1111111111111111111111111111111111111111";
        let b = "2222222222222222222222222222222222222222";
        let line = |s: &str| format!("{:04x}{s}", s.len() + 4);
        let smart = format!(
            "{}0000{}{}{}0000",
            line("# service=git-upload-pack\n"),
            line(&format!(
                "{a} HEAD\0multi_ack side-band-64k symref=HEAD:refs/heads/main\n"
            )),
            line(&format!("{a} refs/heads/main\n")),
            line(&format!("{b} refs/tags/v1\n")),
        );
        let refs = read_refs(smart.as_bytes()).unwrap();
        assert_eq!(
            refs,
            [
                (a.to_owned(), "HEAD".to_owned()),
                (a.to_owned(), "refs/heads/main".to_owned()),
                (b.to_owned(), "refs/tags/v1".to_owned())
            ]
        );
        let dumb = format!("{a}\trefs/heads/main\n{b}\trefs/tags/v1\n");
        assert_eq!(read_refs(dumb.as_bytes()).unwrap()[0].1, "refs/heads/main");
        assert!(read_refs(b"00ff# service=git-upload-pack\n").is_err());
    }

    #[test]
    fn builds_compile_as_many_crates_as_memory_allows() {
        const GIB: u64 = 1 << 30;
        assert_eq!(build_jobs(GIB / 2, 4), 1, "a Pi Zero 2 W");
        assert_eq!(build_jobs(3 * GIB, 4), 2, "a 4 GB Pi");
        assert_eq!(build_jobs(7 * GIB, 4), 4, "an 8 GB Pi");
        assert_eq!(build_jobs(u64::MAX, 2), 2);
        assert_eq!(build_jobs(GIB, 0), 1);
    }

    #[test]
    fn credentials_in_urls_are_not_shown() {
        assert_eq!(
            redact_url("https://bot:t0ken@gitea.example/me/bot.git"),
            "https://***@gitea.example/me/bot.git"
        );
        assert_eq!(
            redact_url("https://gitea.example/a@b"),
            "https://gitea.example/a@b"
        );
        assert_eq!(redact_url("--no-tags"), "--no-tags");
    }

    #[test]
    fn local_paths_are_told_from_urls() {
        for local in ["/srv/bot.git", "../bot.git", "bot.git", "/a:b/c"] {
            assert!(is_local_path(local), "{local}");
        }
        for remote in [
            "https://gitea/x.git",
            "git@host:x.git",
            "ssh://h/x",
            "file:///x",
        ] {
            assert!(!is_local_path(remote), "{remote}");
        }
    }

    #[test]
    fn outputs_read_as_commits() {
        let id = "6d167a2f612a25ad2c0a456ad65cf3387fbca6c1";
        assert_eq!(
            split_commit(Some(&format!("{id}\nFix the thing\n"))),
            Some(Commit {
                id: id.into(),
                subject: Some("Fix the thing".into())
            })
        );
        assert_eq!(split_commit(Some("fatal: bad revision")), None);
        assert_eq!(
            ls_remote_commit(&format!("{id}\trefs/heads/main\n")).as_deref(),
            Some(id)
        );
        assert_eq!(ls_remote_commit(""), None);
    }
}
