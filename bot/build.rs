//! Records the commit the bot is built from, for `/version`: `BOT_BUILD_COMMIT` when the
//! builder sets it (a container build without `.git`), else `git rev-parse HEAD`, else `unknown`.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=BOT_BUILD_COMMIT");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // Rebuild when HEAD moves: a deploy's detached checkout rewrites HEAD; a commit on a branch
    // rewrites the branch's ref, loose or packed. Only paths that exist are named: Cargo treats
    // a missing one as always changed, and would rerun this (and relink the bot) every build.
    let git_dir = repo.join(".git");
    let watch = |path: &Path| {
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    };
    watch(&git_dir.join("HEAD"));
    watch(&git_dir.join("packed-refs"));
    let head = std::fs::read_to_string(git_dir.join("HEAD")).unwrap_or_default();
    if let Some(branch) = head.trim().strip_prefix("ref: ") {
        let loose = git_dir.join(branch);
        if loose.exists() {
            watch(&loose);
        } else if let Some(folder) = loose.parent() {
            // Packed now; a commit writes it loose again, into this folder.
            watch(folder);
        }
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
