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
//! Unpacking: a tar archive (plain, gzip or zstd) holds the release folder's contents; anything
//! else is a single file, saved as the program's name with mode 0755. An archive may hold
//! regular files, folders, hard links to its own files and symbolic links that stay inside the
//! release. An absolute path, a `..`, a link leaving the release or pointing at nothing, a
//! setuid or setgid bit, a device, FIFO or socket refuses the whole release, naming the entry.
//! Nothing is left in `releases/` by a refused or interrupted release.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use super::release::{self, ReleaseError};

/// The `{...}` an `artifact_url` may hold.
pub const PLACEHOLDERS: &[&str] = &["commit", "short", "branch", "arch", "debian_arch"];

/// The longest signature file read.
const SIGNATURE_MAX: usize = 16 << 10;
/// What an archive may unpack to, as a multiple of `artifact_max_size`.
const UNPACKED_FACTOR: u64 = 4;
/// The most entries an archive may hold.
const ENTRIES_MAX: usize = 100_000;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Between two looks for the release: doubling from the first to the last.
const WAIT_FIRST: Duration = Duration::from_millis(500);
const WAIT_LAST: Duration = Duration::from_secs(20);

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
    let advertised = read_refs(&body).map_err(|e| FetchError::Http(format!("{shown}: {e}")))?;
    advertised
        .into_iter()
        .find(|(_, name)| name == reference)
        .map(|(id, _)| id)
        .ok_or_else(|| FetchError::Http(format!("{shown}: the remote has no {reference}")))
}

/// The largest reference advertisement read (a repository with many tags).
const REFS_MAX: usize = 8 << 20;

/// (commit, reference) pairs of a reference advertisement: pkt-lines (`0032<id> <ref>\n`,
/// the first with `\0` and capabilities after it, `0000` between sections), or a dumb
/// server's `<id>\t<ref>` lines.
pub fn read_refs(body: &[u8]) -> Result<Vec<(String, String)>, String> {
    let pair = |line: &[u8]| -> Option<(String, String)> {
        let line = line.split(|b| *b == 0).next()?;
        let line = std::str::from_utf8(line).ok()?.trim_end_matches('\n');
        let (id, name) = line.split_once([' ', '\t'])?;
        super::git::is_commit(id).then(|| (id.to_owned(), name.to_owned()))
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
                super::machine::short(c),
                super::machine::short(&fetch.commit)
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
    let limit = fetch.max_size.saturating_mul(UNPACKED_FACTOR);
    if let Err(e) = unpack(file, &partial, &fetch.name, limit) {
        let _ = release::remove_any(&partial);
        return Err(e);
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

/// Stops a decompressor at `limit` bytes with an error that says so.
struct Capped<R> {
    inner: R,
    left: u64,
    limit: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            return Err(io::Error::other(TooLarge(self.limit)));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A release that unpacks to more than its limit.
#[derive(Debug, thiserror::Error)]
#[error("it unpacks to more than {0} bytes ({UNPACKED_FACTOR} × artifact_max_size)")]
struct TooLarge(u64);

/// The release: a tar archive (plain, gzip, zstd), or a single file saved as `name`.
pub fn unpack(mut file: File, dest: &Path, name: &str, limit: u64) -> Result<(), FetchError> {
    let mut magic = [0u8; 4];
    let n = file.read(&mut magic).map_err(io_at(dest))?;
    file.rewind().map_err(io_at(dest))?;
    let decoded: Box<dyn Read> = match &magic[..n] {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::GzDecoder::new(file)),
        [0x28, 0xb5, 0x2f, 0xfd] => Box::new(
            ruzstd::decoding::StreamingDecoder::new(file)
                .map_err(|e| FetchError::Refused(format!("not a readable zstd file: {e}")))?,
        ),
        _ => Box::new(file),
    };
    let mut stream = Capped {
        inner: decoded,
        left: limit,
        limit,
    };
    let mut head = Vec::with_capacity(512);
    (&mut stream)
        .take(512)
        .read_to_end(&mut head)
        .map_err(|e| FetchError::Refused(format!("cannot read the release: {e}")))?;
    let rest = io::Cursor::new(head.clone()).chain(stream);
    if head.get(257..262) == Some(b"ustar") {
        untar(rest, dest)
    } else {
        let path = dest.join(name);
        let mut out = create_file(&path, 0o755)?;
        let mut rest = rest;
        io::copy(&mut rest, &mut out).map_err(|e| unpack_error(&path, e))?;
        Ok(())
    }
}

fn unpack_error(path: &Path, e: io::Error) -> FetchError {
    // tar may wrap the reader's error in one of its own, with the text kept.
    let too_large = e.get_ref().is_some_and(|i| i.is::<TooLarge>())
        || e.to_string().contains("unpacks to more than");
    if too_large {
        FetchError::Refused(e.to_string())
    } else {
        FetchError::Io {
            path: path.to_owned(),
            source: e,
        }
    }
}

fn create_file(path: &Path, mode: u32) -> Result<File, FetchError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => {
                FetchError::Refused(format!("{} appears twice in the archive", path.display()))
            }
            _ => FetchError::Io {
                path: path.to_owned(),
                source: e,
            },
        })
}

/// An entry's path inside the release: relative, without `..`; `.` parts dropped.
fn inside(raw: &Path) -> Result<PathBuf, String> {
    let mut clean = PathBuf::new();
    for part in raw.components() {
        match part {
            Component::Normal(p) => clean.push(p),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("{}: an absolute path", raw.display()));
            }
            Component::ParentDir => return Err(format!("{}: a path with ..", raw.display())),
        }
    }
    Ok(clean)
}

/// Where a symbolic link at `at` (inside the release) points, worked out on its path alone;
/// `None` when that leaves the release.
fn link_target(at: &Path, target: &Path) -> Option<PathBuf> {
    if target.is_absolute() {
        return None;
    }
    let mut parts: Vec<_> = at.parent().into_iter().flat_map(Path::components).collect();
    for part in target.components() {
        match part {
            Component::Normal(_) => parts.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.iter().collect())
}

fn untar(stream: impl Read, dest: &Path) -> Result<(), FetchError> {
    let refuse = |m: String| FetchError::Refused(m);
    let mut archive = tar::Archive::new(stream);
    let read_error = |e: io::Error| unpack_error(dest, e);
    // Links are made once every file is written, so that no file is ever written through one.
    let mut symlinks: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut hardlinks: Vec<(PathBuf, PathBuf)> = Vec::new();
    for (count, entry) in archive.entries().map_err(read_error)?.enumerate() {
        if count >= ENTRIES_MAX {
            return Err(refuse(format!("more than {ENTRIES_MAX} entries")));
        }
        let mut entry = entry.map_err(read_error)?;
        let raw = entry.path().map_err(read_error)?.into_owned();
        let rel = inside(&raw).map_err(refuse)?;
        let shown = raw.display().to_string();
        let header = entry.header();
        let mode = header.mode().map_err(read_error)?;
        if mode & 0o6000 != 0 {
            let bit = if mode & 0o4000 != 0 {
                "setuid"
            } else {
                "setgid"
            };
            return Err(refuse(format!(
                "{shown} is {bit}; a release never holds one"
            )));
        }
        let kind = header.entry_type();
        let path = dest.join(&rel);
        if kind.is_dir() {
            if rel.as_os_str().is_empty() {
                continue;
            }
            fs::DirBuilder::new()
                .recursive(true)
                .mode(mode & 0o755 | 0o700)
                .create(&path)
                .map_err(io_at(&path))?;
            continue;
        }
        if rel.as_os_str().is_empty() {
            return Err(refuse(format!("{shown}: not a file name")));
        }
        if let Some(parent) = path.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .map_err(io_at(parent))?;
        }
        if kind.is_file() {
            let mut out = create_file(&path, mode & 0o755 | 0o400)?;
            io::copy(&mut entry, &mut out).map_err(|e| unpack_error(&path, e))?;
        } else if kind.is_symlink() {
            let target = entry
                .link_name()
                .map_err(read_error)?
                .ok_or_else(|| refuse(format!("{shown}: a link without a target")))?
                .into_owned();
            if link_target(&rel, &target).is_none() {
                return Err(refuse(format!(
                    "{shown} is a link to {} which leaves the release",
                    target.display()
                )));
            }
            symlinks.push((rel, target));
        } else if kind.is_hard_link() {
            let target = entry
                .link_name()
                .map_err(read_error)?
                .ok_or_else(|| refuse(format!("{shown}: a link without a target")))?;
            let target = inside(&target).map_err(refuse)?;
            hardlinks.push((rel, target));
        } else if kind.is_pax_global_extensions() {
            continue;
        } else {
            let what = if kind.is_character_special() || kind.is_block_special() {
                "a device"
            } else if kind.is_fifo() {
                "a FIFO"
            } else {
                "an entry of a kind a release does not hold"
            };
            return Err(refuse(format!("{shown} is {what}")));
        }
    }
    let root = fs::canonicalize(dest).map_err(io_at(dest))?;
    // The folder a link is made in must really be inside (an earlier link may lead elsewhere).
    let parent_inside = |path: &Path| -> Result<(), FetchError> {
        let parent = path.parent().unwrap_or(dest);
        match fs::canonicalize(parent) {
            Ok(real) if real.starts_with(&root) => Ok(()),
            _ => Err(refuse(format!(
                "{} would be made outside the release",
                path.strip_prefix(dest).unwrap_or(path).display()
            ))),
        }
    };
    for (rel, target) in &hardlinks {
        let path = dest.join(rel);
        let from = dest.join(target);
        parent_inside(&path)?;
        match fs::symlink_metadata(&from) {
            Ok(m) if m.is_file() => {}
            _ => {
                return Err(refuse(format!(
                    "{} is a hard link to {}, which is not a file of the release",
                    rel.display(),
                    target.display()
                )));
            }
        }
        fs::hard_link(&from, &path).map_err(io_at(&path))?;
    }
    for (rel, target) in &symlinks {
        let path = dest.join(rel);
        parent_inside(&path)?;
        std::os::unix::fs::symlink(target, &path).map_err(io_at(&path))?;
    }
    // Each link, followed through every other: it must end at something inside.
    for (rel, target) in &symlinks {
        match fs::canonicalize(dest.join(rel)) {
            Ok(real) if real.starts_with(&root) => {}
            Ok(_) => {
                return Err(refuse(format!(
                    "{} is a link to {} which leaves the release",
                    rel.display(),
                    target.display()
                )));
            }
            Err(_) => {
                return Err(refuse(format!(
                    "{} is a link to {}, which is nothing in the release",
                    rel.display(),
                    target.display()
                )));
            }
        }
    }
    Ok(())
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
    fn a_trusted_comment_reads_as_fields() {
        let s = read_trusted_comment(
            "timestamp:1\tcommit:abc\tfile:bot.tar.zst\tsubject:Fix: the thing",
        );
        assert_eq!(s.commit.as_deref(), Some("abc"));
        assert_eq!(s.file.as_deref(), Some("bot.tar.zst"));
        assert_eq!(s.subject.as_deref(), Some("Fix: the thing"));
    }

    /// An archive of (path, kind, link target or content) entries, as a file.
    fn archive(entries: &[(&str, tar::EntryType, &str)]) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar");
        let mut builder = tar::Builder::new(File::create(&path).unwrap());
        for (name, kind, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_mode(0o644);
            if kind.is_symlink() || kind.is_hard_link() {
                header.set_size(0);
                builder.append_link(&mut header, name, data).unwrap();
            } else {
                header.set_size(data.len() as u64);
                builder
                    .append_data(&mut header, name, data.as_bytes())
                    .unwrap();
            }
        }
        builder.finish().unwrap();
        drop(builder);
        let file = File::open(&path).unwrap();
        (dir, file)
    }

    fn unpacked(entries: &[(&str, tar::EntryType, &str)]) -> Result<tempfile::TempDir, String> {
        let (_src, file) = archive(entries);
        let dest = tempfile::tempdir().unwrap();
        let out = dest.path().join("r");
        fs::create_dir(&out).unwrap();
        unpack(file, &out, "bot", 1 << 20)
            .map(|()| dest)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn an_archive_keeps_its_own_links_and_nothing_leaves_it() {
        use tar::EntryType::{Fifo, Link, Regular, Symlink};
        let dest = unpacked(&[
            ("bin/bot", Regular, "run"),
            ("bot", Symlink, "bin/bot"),
            ("copy", Link, "bin/bot"),
        ])
        .unwrap();
        let r = dest.path().join("r");
        assert_eq!(fs::read_to_string(r.join("bot")).unwrap(), "run");
        assert_eq!(fs::read_to_string(r.join("copy")).unwrap(), "run");
        // Each link looks fine on its path alone; followed, the second leaves the release.
        let out = unpacked(&[("here", Symlink, "."), ("up", Symlink, "here/..")]);
        assert_eq!(
            out.err().as_deref(),
            Some("refused: up is a link to here/.. which leaves the release")
        );
        let out = unpacked(&[("gone", Symlink, "nothing")]);
        assert_eq!(
            out.err().as_deref(),
            Some("refused: gone is a link to nothing, which is nothing in the release")
        );
        let out = unpacked(&[("p", Fifo, "")]);
        assert_eq!(out.err().as_deref(), Some("refused: p is a FIFO"));
        let out = unpacked(&[("a", Regular, "1"), ("a", Regular, "2")]);
        assert!(
            out.err()
                .unwrap()
                .ends_with("/r/a appears twice in the archive")
        );
        let out = unpacked(&[("h", Link, "bin")]);
        assert_eq!(
            out.err().as_deref(),
            Some("refused: h is a hard link to bin, which is not a file of the release")
        );
    }

    #[test]
    fn a_release_that_unpacks_past_its_limit_is_refused() {
        let big = "x".repeat(5000);
        let (_src, file) = archive(&[("big", tar::EntryType::Regular, &big)]);
        let dest = tempfile::tempdir().unwrap();
        let out = unpack(file, dest.path(), "bot", 4096).map_err(|e| e.to_string());
        assert_eq!(
            out.err().as_deref(),
            Some("refused: it unpacks to more than 4096 bytes (4 × artifact_max_size)")
        );
        // Not an archive: one file, the program's name, executable.
        let dir = tempfile::tempdir().unwrap();
        let single = dir.path().join("bot-x86_64");
        fs::write(&single, "#!/bin/sh\n").unwrap();
        unpack(File::open(&single).unwrap(), dest.path(), "bot", 4096).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(dest.path().join("bot"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
    }

    #[test]
    fn link_targets_are_judged_from_where_the_link_is() {
        let t = |at: &str, to: &str| link_target(Path::new(at), Path::new(to));
        assert_eq!(t("bin/bot", "../lib/bot"), Some(PathBuf::from("lib/bot")));
        assert_eq!(t("bot", "./x"), Some(PathBuf::from("x")));
        assert_eq!(t("bin/bot", "../../etc/passwd"), None);
        assert_eq!(t("bot", "/etc/passwd"), None);
        assert!(inside(Path::new("./a/../b")).is_err());
        assert!(inside(Path::new("/a")).is_err());
        assert_eq!(inside(Path::new("./a/b")), Ok(PathBuf::from("a/b")));
    }
}
