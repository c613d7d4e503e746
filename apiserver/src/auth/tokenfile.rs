//! Static bearer tokens from `--token-auth-file`: a CSV of `token,user,uid,"group1,group2"`,
//! as upstream's token file authenticator reads it.

use std::collections::HashMap;
use std::path::Path;

use super::{TokenAuthenticator, TokenError, User};

#[derive(Debug, Default, Clone)]
pub struct TokenFile(HashMap<String, User>);

impl TokenFile {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut tokens = HashMap::new();
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
        {
            let fields = split_csv(line);
            if fields.len() < 2 || fields[0].is_empty() || fields[1].is_empty() {
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

#[async_trait::async_trait]
impl TokenAuthenticator for TokenFile {
    async fn authenticate_token(&self, token: &str) -> Result<Option<User>, TokenError> {
        Ok(self.lookup(token).cloned())
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
        let t = TokenFile::load(&path).unwrap();
        assert_eq!(t.lookup("abc").unwrap().groups, ["dev", "ops"]);
        assert_eq!(t.lookup("xyz").unwrap().name, "bob");
        assert!(t.lookup("nope").is_none());
        std::fs::write(&path, "abc\n").unwrap();
        assert!(TokenFile::load(&path).unwrap_err().contains(":1:"));
    }
}
