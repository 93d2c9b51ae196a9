//! Prebuilt releases (`artifact_url`): waiting for one to appear, downloading it, checking its
//! minisign signature and what the signature says, and unpacking it into `releases/<commit>/`.
//!
//! None of this runs inside the daemon. Like the release copy, the deploy engine runs it as two
//! step processes of the same binary (`supervisor release-wait`, `supervisor release-fetch`),
//! as the deploy's user, in their own process group, killed at their deadline and reaped by the
//! one reaper: a slow forge, a stalled download or a hostile archive costs PID 1 nothing, and
//! its memory does not grow with the release (the download streams to an unlinked file).
//!
//! What is installed is exactly what the key signed for this deploy: the signature must verify
//! with the configured key, and its trusted comment (signed with it) must name the commit being
//! deployed and the file's name, so that an older, validly signed release (a downgrade, a
//! replay) is refused. The comment's fields are tab-separated `key:value` pairs:
//! `commit:<id>`, `file:<name>`, and optionally `subject:<commit subject>` (what the
//! announcement shows, as no repository is at hand to ask).
//!
//! Unpacking, and what an archive may hold: [`super::unpack`]. Nothing is left in `releases/`
//! by a refused or interrupted release.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::release::{self, ReleaseError};
use super::unpack::UnpackError;
use super::url::{file_name, signature_url};

/// The longest signature file read.
const SIGNATURE_MAX: usize = 16 << 10;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Between two looks for the release: doubling from the first to the last.
const WAIT_FIRST: Duration = Duration::from_millis(500);
const WAIT_LAST: Duration = Duration::from_secs(20);

/// Why a release was not installed. The first word says which kind of failure it is.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The signature is missing, from another key, does not match, or signs something else.
    #[error("unverified: {0}")]
    Unverified(String),
    /// Too large, or an archive holding what a release may not.
    #[error("refused: {0}")]
    Refused(String),
    /// The server, the network or a deadline.
    #[error("{0}")]
    Http(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> FetchError + '_ {
    move |source| FetchError::Io {
        path: path.to_owned(),
        source,
    }
}

impl From<UnpackError> for FetchError {
    fn from(e: UnpackError) -> Self {
        match e {
            UnpackError::Refused(m) => FetchError::Refused(m),
            UnpackError::Io { path, source } => FetchError::Io { path, source },
        }
    }
}

impl From<ReleaseError> for FetchError {
    fn from(e: ReleaseError) -> Self {
        match e {
            ReleaseError::Io { path, source } => FetchError::Io { path, source },
            other => FetchError::Refused(other.to_string()),
        }
    }
}

/// One HTTP client per step: deadlines to connect and between two reads, at most 5 redirects
/// (a forge's package registry may send the file from elsewhere; the signature is what is
/// trusted, not the server), and the CA certificates in `SSL_CERT_FILE` beside the built-in ones.
fn client(read_timeout: Duration) -> Result<reqwest::Client, FetchError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(read_timeout)
        .redirect(reqwest::redirect::Policy::limited(5))
        .user_agent(concat!("supervisor/", env!("CARGO_PKG_VERSION")));
    if let Some(file) = std::env::var_os("SSL_CERT_FILE") {
        let path = PathBuf::from(file);
        let pem = fs::read(&path).map_err(io_at(&path))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| FetchError::Http(format!("{}: {e}", path.display())))?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| FetchError::Http(format!("cannot make an HTTP client: {e}")))
}

fn runtime() -> Result<tokio::runtime::Runtime, FetchError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| FetchError::Http(format!("cannot start: {e}")))
}

/// What a failed request says: a deadline by its name, else reqwest's chain of causes.
fn http_error(url: &str, e: &reqwest::Error, read_timeout: Duration) -> String {
    if e.is_timeout() {
        let d = crate::config::units::format_duration(read_timeout);
        return format!("{url}: no answer for {d}");
    }
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message = format!("{message}: {s}");
        source = s.source();
    }
    format!("{url}: {message}")
}

/// `supervisor release-wait`: until the signature of `url` is there (it is uploaded last), at
/// most `deadline`. A 404, a 5xx, a refused or failed connection are waited out; any other
/// answer (401, 403, ...) ends the wait at once.
pub fn wait(url: &str, deadline: Duration, read_timeout: Duration) -> Result<(), FetchError> {
    let client = client(read_timeout)?;
    let signature = signature_url(url);
    runtime()?.block_on(async {
        let started = Instant::now();
        let mut delay = WAIT_FIRST;
        let mut last = String::new();
        let mut looks = 0u32;
        loop {
            looks += 1;
            let why = match client.get(&signature).send().await {
                Ok(r) if r.status().is_success() => {
                    if looks > 1 {
                        eprintln!("{signature}: there after {looks} looks");
                    }
                    return Ok(());
                }
                Ok(r) if r.status().as_u16() == 404 || r.status().is_server_error() => {
                    format!("{signature}: {}", r.status())
                }
                Ok(r) => {
                    return Err(FetchError::Http(format!("{signature}: {}", r.status())));
                }
                Err(e) => http_error(&signature, &e, read_timeout),
            };
            if why != last {
                eprintln!("waiting for the release: {why}");
                last = why;
            }
            if started.elapsed() + delay > deadline {
                break;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(WAIT_LAST);
        }
        let waited = crate::config::units::format_duration(deadline);
        // The release without its signature is never installed: say so rather than "missing".
        let there = client
            .head(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        Err(if there {
            FetchError::Unverified(format!(
                "no signature at {signature} after waiting {waited} (the release itself is there)"
            ))
        } else {
            FetchError::Http(format!(
                "the release did not appear within {waited} ({last})"
            ))
        })
    })
}

/// `supervisor ls-remote URL REF`: the commit `REF` names on a git remote served over HTTP(S),
/// asked as `git ls-remote` asks (the smart protocol's reference advertisement,
/// `GET URL/info/refs?service=git-upload-pack`; a dumb server's `info/refs` file works too).
/// For an image without git: a prebuilt release's tip, and polls.
pub fn ls_remote(url: &str, reference: &str, read_timeout: Duration) -> Result<String, FetchError> {
    let client = client(read_timeout)?;
    let refs = format!(
        "{}/info/refs?service=git-upload-pack",
        url.trim_end_matches('/')
    );
    let shown = super::git::redact_url(&refs).into_owned();
    let body = runtime()?.block_on(async {
        let mut r = client
            .get(&refs)
            .send()
            .await
            .map_err(|e| FetchError::Http(http_error(&shown, &e, read_timeout)))?;
        if !r.status().is_success() {
            return Err(FetchError::Http(format!("{shown}: {}", r.status())));
        }
        small_body(&mut r, &shown, REFS_MAX, read_timeout).await
    })?;
    let advertised =
        super::git::read_refs(&body).map_err(|e| FetchError::Http(format!("{shown}: {e}")))?;
    advertised
        .into_iter()
        .find(|(_, name)| name == reference)
        .map(|(id, _)| id)
        .ok_or_else(|| FetchError::Http(format!("{shown}: the remote has no {reference}")))
}

/// The largest reference advertisement read (a repository with many tags).
const REFS_MAX: usize = 8 << 20;

/// What `release-fetch` needs.
#[derive(Clone, Debug)]
pub struct Fetch {
    pub url: String,
    /// The minisign public key's base64 line.
    pub key: String,
    pub commit: String,
    pub releases: PathBuf,
    /// The name a single-file release is saved as (the program's).
    pub name: String,
    pub keep: usize,
    pub max_size: u64,
    pub read_timeout: Duration,
}

/// What the signature's trusted comment says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signed {
    pub commit: Option<String>,
    pub file: Option<String>,
    pub subject: Option<String>,
}

/// Reads the tab-separated `key:value` fields of a trusted comment.
pub fn read_trusted_comment(comment: &str) -> Signed {
    let mut signed = Signed {
        commit: None,
        file: None,
        subject: None,
    };
    for field in comment.split('\t') {
        let Some((key, value)) = field.split_once(':') else {
            continue;
        };
        let value = Some(value.trim().to_owned()).filter(|v| !v.is_empty());
        match key.trim() {
            "commit" => signed.commit = value,
            "file" => signed.file = value,
            "subject" => signed.subject = value,
            _ => {}
        }
    }
    signed
}

/// A minisign key id (bytes 2..10 of the decoded key or signature line), as minisign shows it.
fn key_id(base64_line: &str) -> Option<String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(base64_line.trim())
        .ok()?;
    let id = bytes.get(2..10)?;
    Some(id.iter().rev().map(|b| format!("{b:02X}")).collect())
}

/// Checks what the signature claims before anything is downloaded: the key, the commit, the
/// file. (All three are checked again by the signature itself once the file is read.)
fn check_claims(
    fetch: &Fetch,
    text: &str,
    sig: &minisign_verify::Signature,
) -> Result<Signed, FetchError> {
    let theirs = text.lines().nth(1).and_then(key_id);
    let ours = key_id(&fetch.key);
    if theirs != ours {
        return Err(FetchError::Unverified(format!(
            "signature from another key (key id {}; signing_key is {})",
            theirs.as_deref().unwrap_or("unreadable"),
            ours.as_deref().unwrap_or("unreadable")
        )));
    }
    let signed = read_trusted_comment(sig.trusted_comment());
    let file = file_name(&fetch.url);
    match signed.commit.as_deref() {
        Some(c) if c == fetch.commit => {}
        Some(c) => {
            return Err(FetchError::Unverified(format!(
                "signed for commit {}, not {}: an older or another release is never installed",
                super::git::short(c),
                super::git::short(&fetch.commit)
            )));
        }
        None => {
            return Err(FetchError::Unverified(
                "the signature's trusted comment names no commit (commit:<id>)".to_owned(),
            ));
        }
    }
    match signed.file.as_deref() {
        Some(f) if f == file => Ok(signed),
        Some(f) => Err(FetchError::Unverified(format!(
            "signed for file {f:?}, not {file:?}"
        ))),
        None => Err(FetchError::Unverified(
            "the signature's trusted comment names no file (file:<name>)".to_owned(),
        )),
    }
}

/// Reads a response's body whole, refusing more than `max` bytes.
async fn small_body(
    r: &mut reqwest::Response,
    url: &str,
    max: usize,
    t: Duration,
) -> Result<Vec<u8>, FetchError> {
    let mut body = Vec::new();
    while let Some(chunk) = r
        .chunk()
        .await
        .map_err(|e| FetchError::Http(http_error(url, &e, t)))?
    {
        if body.len() + chunk.len() > max {
            return Err(FetchError::Refused(format!(
                "{url} is larger than {max} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `supervisor release-fetch`: the signature, then the release streamed into an unlinked file
/// (hashed as it comes), verified, unpacked into `releases/<commit>/`; older releases pruned.
/// Returns what the signature says.
pub fn fetch(fetch: &Fetch) -> Result<Signed, FetchError> {
    let client = client(fetch.read_timeout)?;
    let key = minisign_verify::PublicKey::from_base64(&fetch.key).map_err(|_| {
        FetchError::Unverified("signing_key is not a minisign public key".to_owned())
    })?;
    let t = fetch.read_timeout;
    let releases = &fetch.releases;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(releases)
        .map_err(io_at(releases))?;
    let (signed, mut file) = runtime()?.block_on(async {
        let sig_url = signature_url(&fetch.url);
        let mut r = client
            .get(&sig_url)
            .send()
            .await
            .map_err(|e| FetchError::Http(http_error(&sig_url, &e, t)))?;
        if r.status().as_u16() == 404 {
            return Err(FetchError::Unverified(format!("no signature at {sig_url}")));
        }
        if !r.status().is_success() {
            return Err(FetchError::Http(format!("{sig_url}: {}", r.status())));
        }
        let text = small_body(&mut r, &sig_url, SIGNATURE_MAX, t).await?;
        let text = String::from_utf8_lossy(&text).into_owned();
        let sig = minisign_verify::Signature::decode(&text).map_err(|_| {
            FetchError::Unverified(format!("{sig_url} is not a minisign signature"))
        })?;
        let signed = check_claims(fetch, &text, &sig)?;
        let mut verifier = key.verify_stream(&sig).map_err(|e| {
            FetchError::Unverified(format!("cannot check the signature: {e:?} (a legacy, not prehashed, signature?)"))
        })?;

        let mut r = client
            .get(&fetch.url)
            .send()
            .await
            .map_err(|e| FetchError::Http(http_error(&fetch.url, &e, t)))?;
        if !r.status().is_success() {
            return Err(FetchError::Http(format!("{}: {}", fetch.url, r.status())));
        }
        let too_large = |n: u64| {
            FetchError::Refused(format!(
                "{} is {n} bytes or more, larger than artifact_max_size ({} bytes)",
                fetch.url, fetch.max_size
            ))
        };
        if let Some(n) = r.content_length().filter(|n| *n > fetch.max_size) {
            return Err(too_large(n));
        }
        let mut file = unlinked_file(releases)?;
        let mut got: u64 = 0;
        while let Some(chunk) = r
            .chunk()
            .await
            .map_err(|e| FetchError::Http(http_error(&fetch.url, &e, t)))?
        {
            got += chunk.len() as u64;
            if got > fetch.max_size {
                return Err(too_large(got));
            }
            verifier.update(&chunk);
            file.write_all(&chunk).map_err(io_at(releases))?;
        }
        verifier.finalize().map_err(|_| {
            FetchError::Unverified(format!(
                "the signature does not match {} ({got} bytes): altered, or signed for other content",
                file_name(&fetch.url)
            ))
        })?;
        eprintln!("{}: {got} bytes, signature verified", file_name(&fetch.url));
        Ok((signed, file))
    })?;
    file.rewind().map_err(io_at(releases))?;
    install(file, fetch)?;
    Ok(signed)
}

/// A file in `releases/` that has no name: whatever happens to this process, it leaves nothing.
fn unlinked_file(releases: &Path) -> Result<File, FetchError> {
    let path = releases.join(format!(".download-{}", std::process::id()));
    let _ = fs::remove_file(&path);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(io_at(&path))?;
    fs::remove_file(&path).map_err(io_at(&path))?;
    Ok(file)
}

/// Unpacks into `.partial-<commit>`, renames it to `<commit>` (replacing an earlier copy), prunes.
fn install(file: File, fetch: &Fetch) -> Result<(), FetchError> {
    let releases = &fetch.releases;
    let commit = &fetch.commit;
    let partial = releases.join(format!(".partial-{commit}"));
    release::remove_any(&partial)?;
    fs::DirBuilder::new()
        .mode(0o755)
        .create(&partial)
        .map_err(io_at(&partial))?;
    let limit = fetch
        .max_size
        .saturating_mul(super::unpack::UNPACKED_FACTOR);
    if let Err(e) = super::unpack::unpack(file, &partial, &fetch.name, limit) {
        let _ = release::remove_any(&partial);
        return Err(e.into());
    }
    let dest = releases.join(commit);
    let old = releases.join(format!(".old-{commit}"));
    if fs::symlink_metadata(&dest).is_ok() {
        release::remove_any(&old)?;
        fs::rename(&dest, &old).map_err(io_at(&dest))?;
    }
    fs::rename(&partial, &dest).map_err(io_at(&dest))?;
    release::remove_any(&old)?;
    release::prune(releases, commit, fetch.keep)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trusted_comment_reads_as_fields() {
        let s = read_trusted_comment(
            "timestamp:1\tcommit:abc\tfile:bot.tar.zst\tsubject:Fix: the thing",
        );
        assert_eq!(s.commit.as_deref(), Some("abc"));
        assert_eq!(s.file.as_deref(), Some("bot.tar.zst"));
        assert_eq!(s.subject.as_deref(), Some("Fix: the thing"));
    }
}
