//! Build information for `graphfront --version` and the `graphfront_build_info` metric: the git
//! commit (when built from a checkout), the target and the profile. A few lines of `git` beat a
//! build-info crate here: the ones that read git do it through libgit2, a C build of its own.

use std::process::Command;

fn main() {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let target = std::env::var("TARGET").unwrap_or_default();
    let profile = std::env::var("PROFILE").unwrap_or_default();
    println!("cargo:rustc-env=GRAPHFRONT_COMMIT={commit}");
    println!("cargo:rustc-env=GRAPHFRONT_BUILD={commit} {target} {profile}");
    // Only paths that exist: cargo reruns a script on every build while one it names is missing.
    let mut watch = Vec::new();
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        watch.push(format!("{dir}/HEAD"));
    }
    if let Some(dir) = git(&["rev-parse", "--git-common-dir"]) {
        watch.push(format!("{dir}/refs/heads"));
        watch.push(format!("{dir}/packed-refs"));
    }
    watch.push("src/build.rs".into());
    for path in watch {
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
