use super::*;

const SECRET_KEY: &str = "/registry/core/secrets/default/db";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A configuration for secrets with `providers` (YAML list items, already indented).
fn config(providers: &str) -> Encryption {
    let text = format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n{providers}"
    );
    Encryption::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn cipher(kind: &str, name: &str, key: &[u8]) -> String {
    format!(
        "  - {kind}:\n      keys:\n      - name: {name}\n        secret: {}\n",
        b64(key)
    )
}

#[test]
fn every_provider_and_key_size_round_trips_with_upstream_prefix() {
    for (kind, sizes) in [
        ("aescbc", &[16, 24, 32][..]),
        ("aesgcm", &[16, 24, 32][..]),
        ("secretbox", &[32][..]),
    ] {
        for &size in sizes {
            let enc = config(&cipher(kind, "k1", &vec![7u8; size]));
            let plain = br#"{"data":{"password":"hunter2"}}"#;
            let stored = enc.encrypt(SECRET_KEY, plain).unwrap();
            let prefix = format!("k8s:enc:{kind}:v1:k1:");
            assert!(stored.starts_with(prefix.as_bytes()), "{kind}/{size}");
            assert!(
                !stored.windows(7).any(|w| w == b"hunter2"),
                "{kind}/{size} leaks the plaintext"
            );
            assert_eq!(enc.decrypt(SECRET_KEY, &stored).unwrap(), plain);
            // A fresh IV or nonce every time.
            assert_ne!(enc.encrypt(SECRET_KEY, plain).unwrap(), stored);
        }
    }
}

#[test]
fn aescbc_matches_openssl() {
    let key = [0x42u8; 32];
    let enc = config(&cipher("aescbc", "k1", &key));
    let plain = b"exactly sixteen!and a bit more";
    let stored = enc.encrypt(SECRET_KEY, plain).unwrap();
    let body = &stored[b"k8s:enc:aescbc:v1:k1:".len()..];
    let (iv, ciphertext) = body.split_at(16);
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("ct");
    std::fs::write(&input, ciphertext).unwrap();
    let out = std::process::Command::new("openssl")
        .args([
            "enc",
            "-d",
            "-aes-256-cbc",
            "-K",
            &hex(&key),
            "-iv",
            &hex(iv),
            "-in",
        ])
        .arg(&input)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, plain);
}

#[test]
fn tampering_and_moving_values_are_detected() {
    let enc = config(&cipher("aesgcm", "k1", &[1u8; 32]));
    let mut stored = enc.encrypt(SECRET_KEY, b"{}").unwrap();
    // Bound to its key: the same bytes under another name do not decrypt.
    assert!(
        enc.decrypt("/registry/core/secrets/default/other", &stored)
            .is_err()
    );
    *stored.last_mut().unwrap() ^= 1;
    assert!(enc.decrypt(SECRET_KEY, &stored).is_err());
    let sb = config(&cipher("secretbox", "k1", &[1u8; 32]));
    let mut stored = sb.encrypt(SECRET_KEY, b"{}").unwrap();
    *stored.last_mut().unwrap() ^= 1;
    assert!(sb.decrypt(SECRET_KEY, &stored).is_err());
}

#[test]
fn rotation_reads_old_keys_and_plaintext_only_with_identity() {
    let old = config(&cipher("aescbc", "old", &[1u8; 32]));
    let written_old = old.encrypt(SECRET_KEY, b"{\"a\":1}").unwrap();
    let rotated = config(&format!(
        "{}{}  - identity: {{}}\n",
        cipher("secretbox", "new", &[2u8; 32]),
        cipher("aescbc", "old", &[1u8; 32])
    ));
    assert_eq!(
        rotated.decrypt(SECRET_KEY, &written_old).unwrap(),
        b"{\"a\":1}"
    );
    assert_eq!(
        rotated.decrypt(SECRET_KEY, b"{\"b\":2}").unwrap(),
        b"{\"b\":2}"
    );
    assert!(
        rotated
            .encrypt(SECRET_KEY, b"{}")
            .unwrap()
            .starts_with(b"k8s:enc:secretbox:v1:new:")
    );
    // Without identity, plaintext is refused; without the old key, so is the old value.
    let strict = config(&cipher("secretbox", "new", &[2u8; 32]));
    let err = strict.decrypt(SECRET_KEY, b"{}").unwrap_err().to_string();
    assert!(err.contains("identity"), "{err}");
    let err = strict
        .decrypt(SECRET_KEY, &written_old)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no longer"), "{err}");
}

#[test]
fn only_the_configured_resources_are_encrypted() {
    let enc = config(&cipher("aesgcm", "k1", &[3u8; 16]));
    let cm = "/registry/core/configmaps/default/x";
    assert_eq!(enc.encrypt(cm, b"{}").unwrap(), b"{}");
    let groups = Encryption::parse(&format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: ['*.apps']\n  providers:\n{}",
        cipher("aesgcm", "k1", &[3u8; 16])
    ))
    .unwrap();
    assert!(
        groups
            .encrypt("/registry/apps/deployments/default/d", b"{}")
            .unwrap()
            .starts_with(b"k8s:enc:")
    );
    assert_eq!(groups.encrypt(SECRET_KEY, b"{}").unwrap(), b"{}");
}

#[test]
fn bad_configurations_say_what_is_wrong() {
    let parse = |providers: &str| {
        Encryption::parse(&format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n{providers}"
        ))
        .unwrap_err()
    };
    assert!(parse(&cipher("aescbc", "k", &[0u8; 20])).contains("20 bytes"));
    assert!(parse(&cipher("secretbox", "k", &[0u8; 16])).contains("16 bytes"));
    assert!(parse("  - kms: {name: x}\n").contains("kms"));
    let two = format!(
        "  - identity: {{}}\n    secretbox: {{keys: [{{name: k, secret: {}}}]}}\n",
        b64(&[0u8; 32])
    );
    assert!(parse(&two).contains("exactly one"), "{}", parse(&two));
    assert!(parse(&cipher("aesgcm", "a:b", &[0u8; 16])).contains("':'"));
    let wrong_kind = Encryption::parse("apiVersion: v1\nkind: ConfigMap\n").unwrap_err();
    assert!(wrong_kind.contains("EncryptionConfiguration"));
}
