//! Reading manifests for `-f`: files, directories (their `.yaml`, `.yml` and `.json` files in
//! name order) and `-` for stdin; multi-document YAML and `kind: List` are split into objects.

use std::io::Read as _;
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use serde::Deserialize as _;
use serde_json::Value;

/// One object from a manifest, with the source it came from (for messages).
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub source: String,
    pub object: Value,
}

/// Reads every object named by `-f` arguments.
pub fn read_all(files: &[String], recursive: bool) -> Result<Vec<Manifest>> {
    if files.is_empty() {
        bail!("must specify one of -f and -k");
    }
    let mut out = Vec::new();
    for f in files {
        if f == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading stdin")?;
            out.extend(parse_documents(&text, "STDIN")?);
        } else {
            read_path(Path::new(f), recursive, true, &mut out)?;
        }
    }
    Ok(out)
}

fn read_path(path: &Path, recursive: bool, top: bool, out: &mut Vec<Manifest>) -> Result<()> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("the path \"{}\" does not exist", path.display()))?;
    if meta.is_dir() {
        if !top && !recursive {
            return Ok(());
        }
        let mut entries: Vec<_> = std::fs::read_dir(path)?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .collect();
        entries.sort();
        for e in entries {
            let is_manifest = e
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| matches!(x, "yaml" | "yml" | "json"));
            if e.is_dir() || is_manifest {
                read_path(&e, recursive, false, out)?;
            }
        }
        return Ok(());
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    out.extend(parse_documents(&text, &path.display().to_string())?);
    Ok(())
}

/// Splits a (possibly multi-document) YAML or JSON text into objects; empty documents are
/// skipped and `List`s are flattened.
pub fn parse_documents(text: &str, source: &str) -> Result<Vec<Manifest>> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value = Value::deserialize(doc).with_context(|| format!("error parsing {source}"))?;
        push_object(value, source, &mut out)?;
    }
    Ok(out)
}

fn push_object(value: Value, source: &str, out: &mut Vec<Manifest>) -> Result<()> {
    match value {
        Value::Null => Ok(()),
        Value::Object(ref m) if m.is_empty() => Ok(()),
        Value::Object(ref m)
            if m.get("kind")
                .and_then(Value::as_str)
                .is_some_and(|k| k.ends_with("List"))
                && m.get("items").is_some_and(Value::is_array) =>
        {
            for item in m["items"].as_array().expect("checked").clone() {
                push_object(item, source, out)?;
            }
            Ok(())
        }
        Value::Object(ref m) => {
            if !m.get("apiVersion").is_some_and(Value::is_string)
                || !m.get("kind").is_some_and(Value::is_string)
            {
                bail!("error validating data from {source}: object is missing apiVersion or kind");
            }
            out.push(Manifest {
                source: source.to_string(),
                object: value,
            });
            Ok(())
        }
        _ => bail!("error parsing {source}: a manifest document must be an object"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_yaml() {
        let text = "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n---\n# only a comment\n---\napiVersion: v1\nkind: Service\nmetadata: {name: b}\n...\n";
        let docs = parse_documents(text, "f.yaml").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].object["metadata"]["name"], "a");
        assert_eq!(docs[1].object["kind"], "Service");
        assert_eq!(docs[1].source, "f.yaml");
    }

    #[test]
    fn lists_and_json() {
        let text = r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}},{"apiVersion":"v1","kind":"Secret","metadata":{"name":"y"}}]}"#;
        let docs = parse_documents(text, "l.json").unwrap();
        assert_eq!(
            docs.iter()
                .map(|d| d.object["kind"].as_str().unwrap())
                .collect::<Vec<_>>(),
            ["ConfigMap", "Secret"]
        );
    }

    #[test]
    fn rejects_bad_documents() {
        assert!(parse_documents("metadata: {name: x}\n", "f").is_err());
        assert!(parse_documents("- a\n- b\n", "f").is_err());
        assert!(parse_documents("kind: [\n", "f").is_err());
    }

    #[test]
    fn directories() {
        let dir = std::env::temp_dir().join(format!("ekubectl-manifests-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(
            dir.join("b.yaml"),
            "apiVersion: v1\nkind: Pod\nmetadata: {name: b}\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("a.json"),
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"}}"#,
        )
        .unwrap();
        std::fs::write(dir.join("notes.txt"), "not a manifest").unwrap();
        std::fs::write(
            dir.join("sub/c.yml"),
            "apiVersion: v1\nkind: Pod\nmetadata: {name: c}\n",
        )
        .unwrap();
        let names = |docs: Vec<Manifest>| {
            docs.iter()
                .map(|d| d.object["metadata"]["name"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        let flat = read_all(&[dir.display().to_string()], false).unwrap();
        let deep = read_all(&[dir.display().to_string()], true).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(names(flat), ["a", "b"]);
        assert_eq!(names(deep), ["a", "b", "c"]);
        assert!(read_all(&["/nonexistent/x.yaml".into()], false).is_err());
    }
}
