//! `BearerLayer` and `RequireLiveSessionLayer` in a plain axum app.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode};
use sessiond_axum::{
    BearerLayer, CurrentUser, Degraded, RequireLiveSessionLayer, RequireRoleLayer, StoreDownPolicy,
};
use sessiond_core::testing::FaultyStore;
use sessiond_core::{ExpiryPolicy, MemoryStore, NewSession, SessionKey, SessionManager};
use sessiond_jwt::{AccessClaims, Algorithm, KeyRing, Rules, TokenVerifier, VerifyError};
use tower::ServiceExt;

struct Local {
    ring: KeyRing,
    rules: Rules,
}

#[async_trait::async_trait]
impl TokenVerifier for Local {
    async fn verify(&self, token: &str) -> Result<AccessClaims, VerifyError> {
        self.ring.key_set().verify(token, &self.rules)
    }
}

struct Fixture {
    store: Arc<FaultyStore<MemoryStore>>,
    sessions: SessionManager,
    verifier: Arc<Local>,
}

fn fixture() -> Fixture {
    let store = Arc::new(FaultyStore::new(Arc::new(MemoryStore::new())));
    let sessions = SessionManager::new(store.clone(), ExpiryPolicy::default());
    let ring = KeyRing::generate(Algorithm::EdDSA, now()).unwrap();
    let verifier = Arc::new(Local {
        ring,
        rules: Rules::new("iss", "aud"),
    });
    Fixture {
        store,
        sessions,
        verifier,
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl Fixture {
    async fn token(&self) -> (String, SessionKey) {
        let (_, session) = self
            .sessions
            .create(NewSession {
                user_id: "alice".into(),
                roles: vec!["user".into()],
                ..Default::default()
            })
            .await
            .unwrap();
        let mut claims = sessiond_jwt::testing::claims("iss", "aud", "alice", now());
        claims.sid = session.key.handle();
        (
            self.verifier.ring.active().sign(&claims).unwrap(),
            session.key,
        )
    }

    fn app(&self, policy: StoreDownPolicy) -> Router {
        Router::new()
            .route(
                "/live",
                get(
                    |user: CurrentUser, degraded: Option<axum::Extension<Degraded>>| async move {
                        format!("{} degraded={}", user.user_id(), degraded.is_some())
                    },
                ),
            )
            .route_layer(
                RequireLiveSessionLayer::new(self.sessions.clone()).with_store_down_policy(policy),
            )
            .route_layer(RequireRoleLayer::authenticated())
            .layer(BearerLayer::new(self.verifier.clone()))
    }
}

async fn call(app: Router, token: &str) -> (StatusCode, String) {
    let r = app
        .oneshot(
            Request::get("/live")
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = r.status();
    let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn a_token_whose_session_was_deleted_is_refused_on_a_live_route() {
    let f = fixture();
    let (token, key) = f.token().await;
    let app = f.app(StoreDownPolicy::default());
    assert_eq!(
        call(app.clone(), &token).await,
        (StatusCode::OK, "alice degraded=false".into())
    );
    f.sessions.delete(&key).await.unwrap();
    let (status, body) = call(app, &token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("invalid_token"), "{body}");
}

#[tokio::test]
async fn with_the_store_down_a_token_is_trusted_on_its_signature_unless_told_to_fail_closed() {
    let f = fixture();
    let (token, _) = f.token().await;
    f.store.set_down(true);
    assert_eq!(
        call(f.app(StoreDownPolicy::TrustSignature), &token).await,
        (StatusCode::OK, "alice degraded=true".into())
    );
    let (status, body) = call(f.app(StoreDownPolicy::FailClosed), &token).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("store_unavailable"), "{body}");
    // A bad token is still a 401 during the outage: no store is needed to say so.
    let (status, _) = call(f.app(StoreDownPolicy::TrustSignature), "a.b.c").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
