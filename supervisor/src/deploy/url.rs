//! A prebuilt release's address: `artifact_url`'s placeholders filled in for this machine and
//! commit, and where its signature is.

/// The `{...}` an `artifact_url` may hold.
pub const PLACEHOLDERS: &[&str] = &["commit", "short", "branch", "arch", "debian_arch"];

/// This machine's architecture as Rust names it (`x86_64`, `aarch64`, `armv7`, ...).
pub fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "arm" => "armv7",
        a => a,
    }
}

/// This machine's architecture as Debian (and Docker) name it (`amd64`, `arm64`, `armhf`).
pub fn debian_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "armhf",
        "x86" => "i386",
        "powerpc64" => "ppc64el",
        a => a,
    }
}

/// `artifact_url` with its placeholders filled in.
pub fn expand(template: &str, commit: &str, branch: &str) -> String {
    let short = commit.get(..7).unwrap_or(commit);
    let mut url = template.to_owned();
    for (name, value) in [
        ("commit", commit),
        ("short", short),
        ("branch", branch),
        ("arch", arch()),
        ("debian_arch", debian_arch()),
    ] {
        url = url.replace(&format!("{{{name}}}"), value);
    }
    url
}

/// Where a release's signature is: the same URL with `.minisig` appended to its path.
pub fn signature_url(url: &str) -> String {
    match url.split_once('?') {
        Some((path, query)) => format!("{path}.minisig?{query}"),
        None => format!("{url}.minisig"),
    }
}

/// The last segment of the URL's path: the name the signature must name.
pub fn file_name(url: &str) -> &str {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    path.rsplit('/').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_in() {
        let c = "0123456789abcdef0123456789abcdef01234567";
        let url = expand(
            "https://f/{branch}/{commit}/{short}/bot-{arch}.tar.zst",
            c,
            "main",
        );
        assert_eq!(
            url,
            format!("https://f/main/{c}/0123456/bot-{}.tar.zst", arch())
        );
        assert_eq!(file_name(&url), format!("bot-{}.tar.zst", arch()));
        assert_eq!(
            signature_url("https://f/a.tar?x=1"),
            "https://f/a.tar.minisig?x=1"
        );
    }
}
