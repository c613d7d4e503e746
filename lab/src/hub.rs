//! Look-alikes of the Docker Hub images tutorials use, made of Debian packages ([`debian`]) so
//! that they behave as the real ones do, pushed to the lab registry under their Docker Hub
//! names (`library/nginx:alpine`, …); every node's `registries.yaml` makes that registry the
//! `docker.io` mirror, so `image: nginx:alpine` works in the lab.
//!
//! - `library/busybox:latest`: Debian's `busybox` with a link per applet, on glibc. Debian
//!   builds busybox without wget's `-T` (given it, wget crashes), so every image has a small
//!   `wget` in `/usr/local/bin` that honours `-T` with the `timeout` applet. The dynamic
//!   `busybox` and not `busybox-static`: the static build's shell runs its own applets before
//!   looking at `PATH`, so no `wget` of the image could stand in for the broken one.
//! - `library/nginx:alpine` and `library/nginx:latest` (one image): Debian's nginx with its
//!   default site and welcome page on port 80, logs to stdout/stderr, in the foreground.
//! - `library/mysql:5.7`: Debian's MariaDB server and client (`mariadb-server-core`,
//!   `mariadb-client-core`), data in `/var/lib/mysql`, with an entrypoint that initialises an
//!   empty data directory from `MYSQL_ROOT_PASSWORD` (or `MYSQL_ALLOW_EMPTY_PASSWORD`),
//!   `MYSQL_DATABASE`, `MYSQL_USER` and `MYSQL_PASSWORD` as the official image's does.
//! - `lab/python-kubernetes:latest` (no Docker Hub original): Python 3 with the official
//!   Kubernetes client (Debian's `python3-kubernetes`), for pods that talk to the API the way
//!   in-cluster clients do (`config.load_incluster_config()`).
//!
//! Each image is one layer. Builds are cached in their own OCI layout, keyed by the exact
//! package versions (and [`RECIPES_VERSION`]): a later run with the same packages reuses it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Instant;

use serde_json::{Value, json};

use crate::debian::{self, Package};
use crate::images::{self, BuiltImage, LAYER_TYPE, Layer, PATH_ENV};
use crate::{Error, Result, io_err};

/// Default location of the OCI layout holding these images.
pub const DEFAULT_LAYOUT: &str = "/var/lib/ekube-lab/images/hub";
/// Changed whenever a recipe changes, so that cached images are rebuilt.
pub const RECIPES_VERSION: &str = "3";
/// Index annotation carrying the cache key an image was built under.
const KEY_ANNOTATION: &str = "org.ekube.lab.key";

/// How one image is made.
struct Recipe {
    /// Repository in the registry, e.g. `library/nginx`.
    name: &'static str,
    tags: &'static [&'static str],
    /// Debian packages whose closure makes the root file system.
    packages: &'static [&'static str],
    /// What the packages' maintainer scripts would have done, and the image's own files.
    finish: fn(&Path) -> std::io::Result<()>,
    entrypoint: &'static [&'static str],
    cmd: &'static [&'static str],
    ports: &'static [&'static str],
}

fn recipes() -> [Recipe; 4] {
    [
        Recipe {
            name: "library/busybox",
            tags: &["latest"],
            packages: &["busybox"],
            finish: |_| Ok(()),
            entrypoint: &[],
            cmd: &["sh"],
            ports: &[],
        },
        Recipe {
            name: "library/nginx",
            tags: &["alpine", "latest"],
            packages: &["nginx", "busybox"],
            finish: finish_nginx,
            entrypoint: &[],
            cmd: &["nginx", "-g", "daemon off;"],
            ports: &["80/tcp"],
        },
        Recipe {
            name: "library/mysql",
            tags: &["5.7"],
            packages: &["mariadb-server-core", "mariadb-client-core", "busybox"],
            finish: finish_mysql,
            entrypoint: &["docker-entrypoint.sh"],
            cmd: &["mysqld"],
            ports: &["3306/tcp"],
        },
        Recipe {
            name: "lab/python-kubernetes",
            tags: &["latest"],
            packages: &["python3-kubernetes", "busybox"],
            finish: |_| Ok(()),
            entrypoint: &[],
            cmd: &["python3"],
            ports: &[],
        },
    ]
}

/// Debian's busybox lacks wget's `-T`; this honours it with the `timeout` applet.
const WGET_WRAPPER: &[u8] = br#"#!/bin/sh
# Debian builds busybox without wget's -T (given it, busybox wget crashes): take -T here and
# bound the transfer with the timeout applet instead.
secs= want=
for arg do
    shift
    if [ -n "$want" ]; then secs=$arg want=; continue; fi
    case $arg in
        -T) want=1; continue ;;
        -T*) secs=${arg#-T}; continue ;;
        --timeout=*) secs=${arg#--timeout=}; continue ;;
    esac
    set -- "$@" "$arg"
done
if [ -n "$secs" ]; then exec busybox timeout "$secs" busybox wget "$@"; fi
exec busybox wget "$@"
"#;

fn write(root: &Path, rel: &str, mode: u32, data: &[u8]) -> std::io::Result<()> {
    let path = root.join(rel);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, data)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
}

fn symlink(root: &Path, rel: &str, target: &str) -> std::io::Result<()> {
    let path = root.join(rel);
    let _ = std::fs::remove_file(&path);
    std::os::unix::fs::symlink(target, path)
}

/// nginx-common's postinst (default site, welcome page) plus the official image's habits:
/// logs to the container's stdout and stderr.
fn finish_nginx(root: &Path) -> std::io::Result<()> {
    symlink(
        root,
        "etc/nginx/sites-enabled/default",
        "/etc/nginx/sites-available/default",
    )?;
    let welcome = std::fs::read(root.join("usr/share/nginx/html/index.html"))?;
    write(
        root,
        "var/www/html/index.nginx-debian.html",
        0o644,
        &welcome,
    )?;
    std::fs::create_dir_all(root.join("var/log/nginx"))?;
    symlink(root, "var/log/nginx/access.log", "/dev/stdout")?;
    symlink(root, "var/log/nginx/error.log", "/dev/stderr")?;
    std::fs::create_dir_all(root.join("var/lib/nginx"))
}

/// mariadb-common's postinst (`my.cnf`), and the entrypoint.
fn finish_mysql(root: &Path) -> std::io::Result<()> {
    symlink(root, "etc/mysql/my.cnf", "mariadb.cnf")?;
    std::fs::create_dir_all(root.join("var/lib/mysql"))?;
    std::fs::create_dir_all(root.join("run/mysqld"))?;
    write(
        root,
        "usr/local/bin/docker-entrypoint.sh",
        0o755,
        MYSQL_ENTRYPOINT,
    )
}

/// Initialises an empty `/var/lib/mysql` as the official image does, then runs the server.
const MYSQL_ENTRYPOINT: &[u8] = br#"#!/bin/sh
set -e
# Options alone are options of the server.
if [ "${1#-}" != "$1" ]; then set -- mysqld "$@"; fi
if [ "$1" != mysqld ] && [ "$1" != mariadbd ]; then exec "$@"; fi
shift
mkdir -p /var/lib/mysql /run/mysqld
chown -R mysql:mysql /var/lib/mysql /run/mysqld
if [ ! -d /var/lib/mysql/mysql ]; then
    if [ -z "$MYSQL_ROOT_PASSWORD" ] && [ -z "$MYSQL_ALLOW_EMPTY_PASSWORD" ]; then
        echo >&2 "error: database is uninitialized and password option is not specified"
        echo >&2 "  You need to specify one of MYSQL_ROOT_PASSWORD and MYSQL_ALLOW_EMPTY_PASSWORD"
        exit 1
    fi
    echo "initialising the database in /var/lib/mysql"
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql --skip-test-db         --auth-root-authentication-method=normal >/dev/null
    sock=/run/mysqld/init.sock
    mariadbd --user=mysql --datadir=/var/lib/mysql --skip-networking --socket=$sock &
    pid=$!
    tries=0
    until mariadb --socket=$sock -uroot -e 'SELECT 1' >/dev/null 2>&1; do
        tries=$((tries + 1))
        if [ $tries -gt 60 ]; then echo >&2 "error: the server did not start"; exit 1; fi
        sleep 1
    done
    quote() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/''/g")"; }
    pw=$(quote "$MYSQL_ROOT_PASSWORD")
    sql="ALTER USER 'root'@'localhost' IDENTIFIED BY $pw;
CREATE USER 'root'@'%' IDENTIFIED BY $pw;
GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
    if [ -n "$MYSQL_DATABASE" ]; then
        sql="$sql CREATE DATABASE IF NOT EXISTS \`$MYSQL_DATABASE\`;"
    fi
    if [ -n "$MYSQL_USER" ] && [ -n "$MYSQL_PASSWORD" ]; then
        sql="$sql CREATE USER $(quote "$MYSQL_USER")@'%' IDENTIFIED BY $(quote "$MYSQL_PASSWORD");"
        if [ -n "$MYSQL_DATABASE" ]; then
            sql="$sql GRANT ALL ON \`$MYSQL_DATABASE\`.* TO $(quote "$MYSQL_USER")@'%';"
        fi
    fi
    mariadb --socket=$sock -uroot -e "$sql FLUSH PRIVILEGES;"
    kill "$pid"
    wait "$pid" || true
    echo "database initialised"
fi
exec mariadbd --user=mysql --datadir=/var/lib/mysql --bind-address=0.0.0.0 "$@"
"#;

/// What every image has besides its packages: the usual directories, users and groups, the
/// files the runtime mounts over, a link per busybox applet not provided by a package, and a
/// `wget` that takes `-T`.
fn finish_common(root: &Path) -> std::io::Result<()> {
    write(root, "usr/local/bin/wget", 0o755, WGET_WRAPPER)?;
    for (dir, mode) in [
        ("dev", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("run", 0o755),
        ("root", 0o700),
        ("home", 0o755),
        ("tmp", 0o1777),
        ("var/tmp", 0o1777),
        ("bin", 0o755),
        ("sbin", 0o755),
        ("usr/bin", 0o755),
        ("usr/sbin", 0o755),
    ] {
        std::fs::create_dir_all(root.join(dir))?;
        std::fs::set_permissions(root.join(dir), std::fs::Permissions::from_mode(mode))?;
    }
    write(
        root,
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\n\
          daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
          www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n\
          mysql:x:999:999:MySQL Server:/var/lib/mysql:/bin/false\n\
          nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    )?;
    write(
        root,
        "etc/group",
        0o644,
        b"root:x:0:\ndaemon:x:1:\nwww-data:x:33:\nmysql:x:999:\nnogroup:x:65534:\n",
    )?;
    write(
        root,
        "etc/hosts",
        0o644,
        b"127.0.0.1\tlocalhost\n::1\tlocalhost\n",
    )?;
    write(root, "etc/hostname", 0o644, b"")?;
    write(root, "etc/resolv.conf", 0o644, b"")?;
    write(
        root,
        "etc/nsswitch.conf",
        0o644,
        b"passwd: files\ngroup: files\nhosts: files dns\n",
    )?;
    let busybox = root.join("bin/busybox");
    let list = std::process::Command::new(&busybox)
        .arg("--list-full")
        .output()?;
    if !list.status.success() {
        return Err(std::io::Error::other(format!(
            "{} --list-full failed",
            busybox.display()
        )));
    }
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let rel = applet.trim().trim_start_matches('/');
        if rel.contains('/') && std::fs::symlink_metadata(root.join(rel)).is_err() {
            symlink(root, rel, "/bin/busybox")?;
        }
    }
    Ok(())
}

/// The cache key of `recipe` over `packages`.
fn cache_key(packages: &[Package]) -> String {
    format!("{RECIPES_VERSION}-{}", debian::key(packages))
}

/// Builds one recipe's image into `layout`; returns its images (one per tag) and index entries.
fn build_one(
    layout: &Path,
    recipe: &Recipe,
    packages: &[Package],
) -> Result<Vec<(BuiltImage, Value)>> {
    let fail = |e: std::io::Error| Error::Image {
        image: recipe.name.to_owned(),
        reason: e.to_string(),
    };
    let cache = layout.with_file_name("debs");
    let debs = debian::fetch(packages, &cache)?;
    let root = layout.with_file_name(format!(
        "rootfs-{}-{}",
        recipe.name.replace('/', "-"),
        std::process::id()
    ));
    debian::unpack(&debs, &root)?;
    finish_common(&root).map_err(fail)?;
    (recipe.finish)(&root).map_err(fail)?;
    let mut layer = Layer::new();
    layer.tree(&root).map_err(fail)?;
    let tar = layer.finish().map_err(fail)?;
    let _ = std::fs::remove_dir_all(&root);
    let gz = images::gzip_with(&tar, flate2::Compression::fast()).map_err(fail)?;
    let layers = [(
        images::digest(&tar),
        images::put_blob(layout, LAYER_TYPE, &gz)?,
    )];
    let ports: serde_json::Map<String, Value> = recipe
        .ports
        .iter()
        .map(|p| ((*p).to_owned(), json!({})))
        .collect();
    let key = cache_key(packages);
    recipe
        .tags
        .iter()
        .map(|tag| {
            let (image, mut desc) = images::assemble(
                layout,
                recipe.name,
                tag,
                &layers,
                json!({
                    "Env": [PATH_ENV],
                    "Entrypoint": recipe.entrypoint,
                    "Cmd": recipe.cmd,
                    "WorkingDir": "/",
                    "ExposedPorts": ports,
                    "Labels": { "org.ekube.lab.packages": packages.iter().map(|p| format!("{}={}", p.name, p.version)).collect::<Vec<_>>().join(" ") },
                }),
            )?;
            desc["annotations"][KEY_ANNOTATION] = json!(key);
            Ok((image, desc))
        })
        .collect()
}

/// Removes the blobs of earlier builds that no image of `entries` uses any more.
fn prune(layout: &Path, entries: &[(BuiltImage, Value)]) {
    let used: std::collections::BTreeSet<String> = entries
        .iter()
        .flat_map(|(image, _)| {
            std::iter::once(image.manifest_digest.clone()).chain(image.blobs.iter().cloned())
        })
        .map(|d| d.trim_start_matches("sha256:").to_owned())
        .collect();
    let dir = layout.join("blobs/sha256");
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !used.contains(&name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The images of `layout`, built (or rebuilt, for recipes whose packages changed) first.
/// Resolving the package closures asks apt, which is quick; building is done once per package
/// set, and its time is printed.
pub fn ensure(layout: &Path) -> Result<Vec<BuiltImage>> {
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(io_err("creating", &blobs))?;
    let index = images::read_index(layout).unwrap_or(json!({ "manifests": [] }));
    let mut entries: Vec<(BuiltImage, Value)> = Vec::new();
    let mut rebuilt = Vec::new();
    let started = Instant::now();
    for recipe in recipes() {
        let packages = debian::closure_cached(recipe.packages, &layout.with_file_name("debs"))?;
        let key = cache_key(&packages);
        let cached: Option<Vec<(BuiltImage, Value)>> = recipe
            .tags
            .iter()
            .map(|tag| {
                let desc = index["manifests"].as_array()?.iter().find(|d| {
                    d["annotations"][images::REF_NAME]
                        == format!("{}/{}:{tag}", crate::REGISTRY, recipe.name).as_str()
                })?;
                let image = images::find_image(layout, &index, recipe.name, tag, |d| {
                    d["annotations"][KEY_ANNOTATION] == key.as_str()
                })?;
                Some((image, desc.clone()))
            })
            .collect();
        match cached {
            Some(c) => entries.extend(c),
            None => {
                entries.extend(build_one(layout, &recipe, &packages)?);
                rebuilt.push(recipe.name);
            }
        }
    }
    if !rebuilt.is_empty() {
        images::write_atomic(
            &layout.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )?;
        let manifests: Vec<&Value> = entries.iter().map(|(_, d)| d).collect();
        let index = json!({ "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests });
        images::write_atomic(
            &layout.join("index.json"),
            &serde_json::to_vec_pretty(&index).expect("json"),
        )?;
        prune(layout, &entries);
        let secs = started.elapsed().as_secs_f64();
        tracing::info!(?rebuilt, secs, "built Debian-based images");
        eprintln!(
            "ekube-lab: built {} from Debian packages in {secs:.1}s (cached in {})",
            rebuilt.join(", "),
            layout.display()
        );
    }
    Ok(entries.into_iter().map(|(i, _)| i).collect())
}
