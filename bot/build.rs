//! Records the commit the bot is built from, for `/version`: `BOT_BUILD_COMMIT` when the
//! builder sets it (a container build without `.git`), else `git rev-parse HEAD`, else `unknown`.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=BOT_BUILD_COMMIT");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // Rebuild when HEAD moves: a deploy's detached checkout rewrites HEAD; a commit on a branch
    // rewrites the branch's ref.
    let git_dir = repo.join(".git");
    let head = git_dir.join("HEAD");
    if head.exists() {
        println!("cargo:rerun-if-changed={}", head.display());
        if let Ok(text) = std::fs::read_to_string(&head) {
            if let Some(branch) = text.trim().strip_prefix("ref: ") {
                println!("cargo:rerun-if-changed={}", git_dir.join(branch).display());
            }
        }
        println!(
            "cargo:rerun-if-changed={}",
            git_dir.join("packed-refs").display()
        );
    }
    let commit = std::env::var("BOT_BUILD_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            let out = Command::new("git")
                .args(["rev-parse", "HEAD"])
                .current_dir(&repo)
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=BOT_BUILT_FROM={commit}");
}
