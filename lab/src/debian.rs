//! Root file systems made of Debian packages, as a Dockerfile's `apt-get install` would leave
//! them but without running anything: the dependency closure of some packages is resolved with
//! `apt-cache` (first alternative of each `Depends`, virtual packages through their first
//! provider), downloaded with `apt-get download` into a cache shared by every build, and
//! unpacked with `dpkg-deb -x`. Maintainer scripts do not run; what they would have done for
//! an image is done by the image's own recipe.
//!
//! Packages that serve only package installation (`debconf`, `dpkg`, …) are left out: nothing
//! in a container runs them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::{Error, Result, io_err};

/// Packages only installation uses: never part of an image.
const INSTALL_ONLY: &[&str] = &["debconf", "cdebconf", "dpkg", "install-info"];

/// A package at the version apt would install.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Package {
    pub name: String,
    pub version: String,
}

fn run(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| Error::Command {
        command: shown.clone(),
        stderr: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(Error::Command {
            command: shown,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The dependencies `apt-cache depends` lists for each of `packages`: per package, one name per
/// `Depends`/`PreDepends` (the first alternative; a virtual package's first provider).
fn direct_depends(packages: &[String]) -> Result<BTreeMap<String, Vec<String>>> {
    let text = run(Command::new("apt-cache")
        .args([
            "depends",
            "--no-recommends",
            "--no-suggests",
            "--no-conflicts",
            "--no-breaks",
            "--no-replaces",
            "--no-enhances",
        ])
        .args(packages))?;
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    // A line starting `|` is an alternative to the next; the first member of a group is taken.
    let mut group_chosen = false;
    // The chosen member was virtual: its first provider (listed beneath it) is taken.
    let mut want_provider = false;
    for line in text.lines() {
        if !line.starts_with(' ') {
            let name = line.trim().to_owned();
            out.entry(name.clone()).or_default();
            current = Some(name);
            (group_chosen, want_provider) = (false, false);
            continue;
        }
        let Some(deps) = current.as_ref().and_then(|c| out.get_mut(c)) else {
            continue;
        };
        let trimmed = line.trim();
        match trimmed.split_once(": ") {
            Some((kind, name)) => {
                want_provider = false;
                let alternative = kind.starts_with('|');
                let relevant = matches!(kind.trim_start_matches('|'), "Depends" | "PreDepends");
                if relevant && !group_chosen {
                    if name.starts_with('<') {
                        want_provider = true;
                    } else {
                        deps.push(name.to_owned());
                    }
                    group_chosen = true;
                }
                if !alternative {
                    group_chosen = false;
                }
            }
            None if want_provider => {
                deps.push(trimmed.to_owned());
                want_provider = false;
            }
            None => {}
        }
    }
    Ok(out)
}

/// The closure of `roots` under `Depends`, with the versions apt would install.
pub fn closure(roots: &[&str]) -> Result<Vec<Package>> {
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut next: Vec<String> = roots.iter().map(|r| (*r).to_owned()).collect();
    while !next.is_empty() {
        next.retain(|p| !INSTALL_ONLY.contains(&p.as_str()) && seen.insert(p.clone()));
        if next.is_empty() {
            break;
        }
        let depends = direct_depends(&next)?;
        next = depends.into_values().flatten().collect();
        next.sort();
        next.dedup();
    }
    let names: Vec<String> = seen.into_iter().collect();
    let text = run(Command::new("apt-cache")
        .args(["show", "--no-all-versions"])
        .args(&names))?;
    let mut packages = Vec::new();
    let mut name = None;
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("Package: ") {
            name = Some(n.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("Version: ")
            && let Some(n) = name.take()
        {
            packages.push(Package {
                name: n,
                version: v.trim().to_owned(),
            });
        }
    }
    packages.sort();
    packages.dedup_by(|a, b| a.name == b.name);
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !packages.iter().any(|p| &p.name == *n))
        .collect();
    if !missing.is_empty() {
        return Err(Error::Image {
            image: roots.join(" "),
            reason: format!("apt knows no version of {missing:?} (run apt-get update?)"),
        });
    }
    Ok(packages)
}

/// Where apt keeps its package lists: they change when, and only when, `apt-get update` ran.
const APT_LISTS: &str = "/var/lib/apt/lists";

/// [`closure`], remembered in `cache` for as long as apt's package lists stay the same (asking
/// apt takes seconds; a lab start should not).
pub fn closure_cached(roots: &[&str], cache: &Path) -> Result<Vec<Package>> {
    let stamp = std::fs::metadata(APT_LISTS)
        .and_then(|m| m.modified())
        .map(|t| format!("{t:?}"))
        .unwrap_or_default();
    let mut h = Sha256::new();
    h.update(format!("{roots:?} {stamp}"));
    let file = cache.join(format!("closure-{:x}", h.finalize()));
    let parse = |text: &str| -> Option<Vec<Package>> {
        text.lines()
            .map(|l| {
                let (name, version) = l.split_once('=')?;
                Some(Package {
                    name: name.to_owned(),
                    version: version.to_owned(),
                })
            })
            .collect()
    };
    if let Some(packages) = std::fs::read_to_string(&file)
        .ok()
        .as_deref()
        .and_then(parse)
        && !packages.is_empty()
    {
        return Ok(packages);
    }
    let packages = closure(roots)?;
    std::fs::create_dir_all(cache).map_err(io_err("creating", cache))?;
    let text: String = packages
        .iter()
        .map(|p| format!("{}={}\n", p.name, p.version))
        .collect();
    std::fs::write(&file, text).map_err(io_err("writing", &file))?;
    Ok(packages)
}

/// A short digest of the exact package set: images built from the same set are the same.
pub fn key(packages: &[Package]) -> String {
    let mut h = Sha256::new();
    for p in packages {
        h.update(format!("{}={}\n", p.name, p.version));
    }
    format!("{:x}", h.finalize())[..16].to_owned()
}

/// The `.deb` files of `packages`, downloaded into `cache` unless there already.
pub fn fetch(packages: &[Package], cache: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(cache).map_err(io_err("creating", cache))?;
    let file_of = |p: &Package| {
        // apt names files `<name>_<version with ':' as %3a>_<arch>.deb`.
        let prefix = format!("{}_{}_", p.name, p.version.replace(':', "%3a"));
        std::fs::read_dir(cache)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|f| {
                f.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
            })
    };
    let wanted: Vec<String> = packages
        .iter()
        .filter(|p| file_of(p).is_none())
        .map(|p| format!("{}={}", p.name, p.version))
        .collect();
    if !wanted.is_empty() {
        tracing::info!(count = wanted.len(), cache = %cache.display(), "downloading Debian packages");
        run(Command::new("apt-get")
            .arg("download")
            .args(&wanted)
            .current_dir(cache))?;
    }
    packages
        .iter()
        .map(|p| {
            file_of(p).ok_or_else(|| Error::Image {
                image: p.name.clone(),
                reason: format!("apt-get download left no .deb in {}", cache.display()),
            })
        })
        .collect()
}

/// Unpacks `debs` into `root` (created; its previous content removed).
pub fn unpack(debs: &[PathBuf], root: &Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(root);
    std::fs::create_dir_all(root).map_err(io_err("creating", root))?;
    for deb in debs {
        run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(root))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closure_follows_depends_and_skips_installers() {
        let packages = closure(&["nginx"]).unwrap();
        let names: Vec<&str> = packages.iter().map(|p| p.name.as_str()).collect();
        for needed in [
            "nginx",
            "nginx-common",
            "libc6",
            "libssl3",
            "libpcre2-8-0",
            "zlib1g",
        ] {
            assert!(names.contains(&needed), "{needed} missing from {names:?}");
        }
        for skipped in INSTALL_ONLY {
            assert!(!names.contains(skipped), "{skipped} in {names:?}");
        }
        assert!(packages.iter().all(|p| !p.version.is_empty()));
        assert_eq!(key(&packages), key(&closure(&["nginx"]).unwrap()));
        assert_ne!(key(&packages), key(&packages[1..]));
    }
}
