use std::sync::Arc;

use ekube_api::resources;
use serde_json::{Value, json};

use super::*;
use crate::serviceaccount::keys::{Keys, tests::keys};
use crate::storage::Storage;

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

struct Fixture {
    _dirs: Vec<tempfile::TempDir>,
    store: Arc<dyn Storage>,
    sas: ServiceAccounts,
}

async fn put(store: &dyn Storage, plural: &str, obj: Value) {
    let r = resources::find("", "v1", plural).unwrap();
    let ns = obj["metadata"]["namespace"].as_str();
    let key = crate::registry::key(r, ns, obj["metadata"]["name"].as_str().unwrap());
    store
        .create(&key, obj.to_string().into_bytes())
        .await
        .unwrap();
}

async fn fixture() -> Fixture {
    let db = tempfile::tempdir().unwrap();
    let store: Arc<dyn Storage> =
        Arc::new(crate::storage::sled::SledStorage::open(db.path(), 100).unwrap());
    let (pki, keys) = keys();
    put(
        store.as_ref(),
        "serviceaccounts",
        json!({"metadata": {"name": "app", "namespace": "dev", "uid": "sa-1"}}),
    )
    .await;
    put(
        store.as_ref(),
        "pods",
        json!({"metadata": {"name": "web", "namespace": "dev", "uid": "pod-1"}}),
    )
    .await;
    let sas = ServiceAccounts::new(keys, vec![ISSUER.into()], vec![], store.clone());
    Fixture {
        _dirs: vec![db, pki],
        store,
        sas,
    }
}

fn grant(lifetime: i64) -> Grant {
    let now = ekube_api::time::Timestamp::now().as_second();
    Grant {
        namespace: "dev".into(),
        service_account: Some(Ref {
            name: "app".into(),
            uid: "sa-1".into(),
        }),
        audiences: vec![ISSUER.into()],
        issued_at: now - 10,
        expires_at: now + lifetime,
        ..Grant::default()
    }
}

fn refusal(r: Result<Option<User>, Error>) -> String {
    match r {
        Err(Error::Invalid(why)) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_valid_token_is_its_service_account_with_upstreams_claims() {
    let f = fixture().await;
    let mut g = grant(600);
    g.pod = Some(Ref {
        name: "web".into(),
        uid: "pod-1".into(),
    });
    let token = f.sas.issue(&g);
    let claims = crate::serviceaccount::jwt::parse(&token).unwrap().claims;
    assert_eq!(claims["sub"], "system:serviceaccount:dev:app");
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(
        claims["kubernetes.io"]["pod"],
        json!({"name": "web", "uid": "pod-1"})
    );
    assert_eq!(
        claims["kubernetes.io"]["serviceaccount"],
        json!({"name": "app", "uid": "sa-1"})
    );
    let user = f.sas.authenticate(&token).await.unwrap().unwrap();
    assert_eq!(user.name, "system:serviceaccount:dev:app");
    assert_eq!(user.uid, "sa-1");
    assert_eq!(
        user.groups,
        [
            "system:serviceaccounts",
            "system:serviceaccounts:dev",
            "system:authenticated"
        ]
    );
    assert_eq!(user.extra["authentication.kubernetes.io/pod-name"], ["web"]);
    assert_eq!(
        user.extra["authentication.kubernetes.io/pod-uid"],
        ["pod-1"]
    );
    let jti = claims["jti"].as_str().unwrap();
    assert_eq!(
        user.extra["authentication.kubernetes.io/credential-id"],
        [format!("JTI={jti}")]
    );
}

#[tokio::test]
async fn expired_wrong_audience_and_foreign_key_tokens_are_refused() {
    let f = fixture().await;
    assert!(refusal(f.sas.authenticate(&f.sas.issue(&grant(-1))).await).contains("expired"));
    let mut other_aud = grant(600);
    other_aud.audiences = vec!["vault".into()];
    assert!(refusal(f.sas.authenticate(&f.sas.issue(&other_aud)).await).contains("audiences"));
    let (_d, foreign_keys) = keys();
    let foreign = ServiceAccounts::new(foreign_keys, vec![ISSUER.into()], vec![], f.store.clone());
    assert!(
        refusal(f.sas.authenticate(&foreign.issue(&grant(600))).await)
            .contains("not signed by a key")
    );
    // Another issuer's token, or no JWT at all, is for other authenticators.
    let stranger = ServiceAccounts::new(
        Keys::load_or_create(f._dirs[1].path(), None, &[]).unwrap(),
        vec!["https://elsewhere".into()],
        vec![],
        f.store.clone(),
    );
    assert!(
        f.sas
            .authenticate(&stranger.issue(&grant(600)))
            .await
            .unwrap()
            .is_none()
    );
    assert!(f.sas.authenticate("not-a-jwt").await.unwrap().is_none());
}

#[tokio::test]
async fn a_token_dies_with_its_service_account_or_pod() {
    let f = fixture().await;
    let mut bound = grant(600);
    bound.pod = Some(Ref {
        name: "web".into(),
        uid: "pod-0".into(),
    });
    assert!(refusal(f.sas.authenticate(&f.sas.issue(&bound)).await).contains("uid"));
    bound.pod = Some(Ref {
        name: "gone".into(),
        uid: "pod-9".into(),
    });
    assert!(
        refusal(f.sas.authenticate(&f.sas.issue(&bound)).await)
            .contains("pods dev/gone no longer exists")
    );
    let mut other_sa = grant(600);
    other_sa.service_account = Some(Ref {
        name: "app".into(),
        uid: "sa-old".into(),
    });
    assert!(
        refusal(f.sas.authenticate(&f.sas.issue(&other_sa)).await)
            .contains("serviceaccounts dev/app")
    );
}
