//! Authentication: who is asking. X.509 client certificates signed by the cluster CA (user =
//! CN, groups = O) and static bearer tokens. Anonymous requests are allowed only to the health
//! and version endpoints.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use rustls::pki_types::CertificateDer;

/// An authenticated user, as `authentication.k8s.io/v1` UserInfo describes one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    pub name: String,
    /// Unique across time (a ServiceAccount's or token's uid); empty when unknown.
    pub uid: String,
    pub groups: Vec<String>,
    /// Further attributes (e.g. `authentication.kubernetes.io/pod-name` of a bound token).
    pub extra: BTreeMap<String, Vec<String>>,
}

impl User {
    pub fn from_certificate(cert: &CertificateDer<'_>) -> Option<Self> {
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
        let subject = parsed.subject();
        let name = subject
            .iter_common_name()
            .next()?
            .as_str()
            .ok()?
            .to_string();
        let groups = subject
            .iter_organization()
            .filter_map(|o| o.as_str().ok().map(str::to_string))
            .collect();
        Some(Self {
            name,
            groups,
            ..Self::default()
        })
    }
}

/// Static bearer tokens from `--token-auth-file`.
#[derive(Debug, Default, Clone)]
pub struct Tokens(HashMap<String, User>);

impl Tokens {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut tokens = HashMap::new();
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
        {
            let fields = split_csv(line);
            if fields.len() < 2 {
                return Err(format!(
                    "{}:{}: expected token,user[,uid[,\"groups\"]]",
                    path.display(),
                    i + 1
                ));
            }
            let groups = fields
                .get(3)
                .map(|g| {
                    g.split(',')
                        .map(str::to_string)
                        .filter(|g| !g.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            tokens.insert(
                fields[0].clone(),
                User {
                    name: fields[1].clone(),
                    uid: fields.get(2).cloned().unwrap_or_default(),
                    groups,
                    ..User::default()
                },
            );
        }
        Ok(Self(tokens))
    }

    pub fn insert(&mut self, token: String, user: User) {
        self.0.insert(token, user);
    }

    pub fn lookup(&self, token: &str) -> Option<&User> {
        self.0.get(token)
    }
}

fn split_csv(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(String::new()),
            c => out.last_mut().expect("non-empty").push(c),
        }
    }
    out.into_iter().map(|s| s.trim().to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.csv");
        std::fs::write(&path, "abc,alice,1,\"dev,ops\"\nxyz,bob,2\n").unwrap();
        let t = Tokens::load(&path).unwrap();
        assert_eq!(t.lookup("abc").unwrap().groups, ["dev", "ops"]);
        assert_eq!(t.lookup("xyz").unwrap().name, "bob");
        assert!(t.lookup("nope").is_none());
    }
}
