//! Deploys (DESIGN.md decision 3): fetch the branch, check out exactly the fetched tip, build,
//! switch releases, restart the program, hold it to a health gate, and put the previous version
//! back if it fails.
//!
//! # Layout
//! - [`machine`]: a deploy as a pure state machine (phase + input → phase + effects), table
//!   tested, as [`crate::lifecycle`] is for programs.
//! - [`git`]: the commands a deploy runs (argument lists, environment), how their output
//!   reads, and commit ids.
//! - [`release`]: artifact mode's file work: the copy into `releases/<commit>/` (run as a step
//!   process, `supervisor release-copy`, never in the daemon) and the `current` switch.
//! - [`fetch`]: `artifact_url`'s prebuilt releases: the wait for one to appear, the download,
//!   the minisign check and the unpacking (run as step processes, `supervisor release-wait`
//!   and `release-fetch`, never in the daemon); [`unpack`]: what a release archive may hold,
//!   and its unpacking; [`url`]: a release's address (placeholders, this machine's
//!   architecture, the signature's URL).
//! - [`history`]: the history, deploy logs, the in-flight marker and the quarantine on disk.
//!
//! The daemon (`daemon/deploy.rs`) performs the machine's effects: it spawns the steps as
//! children (each as the deploy's user, in its own process group, killed at `step_timeout`,
//! reaped by the one reaper), stops and starts the program through its lifecycle, and feeds
//! back what happened.
//!
//! Three ways to release: with `artifact_url`, a prebuilt release signed by the forge's CI is
//! downloaded, verified and unpacked into `releases/<commit>/` (nothing is fetched with git or
//! built here); with `artifact`, the build output is copied into `releases/<commit>/`
//! and `releases/current` is switched atomically (a build never touches the running version);
//! without it, the working tree itself is what the program runs, and the checkout is the
//! switch (restored if a step fails).

pub mod fetch;
pub mod git;
pub mod history;
pub mod machine;
pub mod release;
pub mod unpack;
pub mod url;
